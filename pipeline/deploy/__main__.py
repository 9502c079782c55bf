"""`python -m pipeline.deploy`: regenerate the dashboards and alert rules in the chart."""

from pipeline.deploy.generate import write

for path in write():
    print(f"wrote {path}")
