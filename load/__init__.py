"""Benchmarks of metrics-pipeline: `make bench` runs `python -m load.bench` (see load/bench.py).

Modules: scenarios (workloads, pre-loading, tick samples), limit (bare consumer baseline),
worker_run (the worker as a subprocess, timed through its /metrics), verify (rollups against the
numpy ground truth), memory (RSS per open series-window at the core level), report (tables,
targets, JSON and Markdown).
"""
