"""Anomaly detection over rollups: baselines (models.py), the partition state machine with
hysteresis and episodes (detector.py), and the event records (events.py)."""
