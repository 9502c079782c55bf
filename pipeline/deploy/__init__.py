"""Deployment artefacts generated from code: the Grafana dashboards and the pipeline's own alert
rules, written into the Helm chart (`python -m pipeline.deploy`; a test checks they are current)."""
