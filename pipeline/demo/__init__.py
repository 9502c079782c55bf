"""`metrics-pipeline demo`: the whole pipeline on one machine, and reading its outputs back.

`run` goes step by step (broker, load, processes, report); `alerts` injects and shows the
incident; `sinks` stores every tier and plots from the store; `summary` reads output topics
back and checks that every sample is accounted for (also used by the benchmarks and tests).
"""

from pipeline.demo.run import DEMO_SPEC, run_demo

__all__ = ["DEMO_SPEC", "run_demo"]
