"""Moved to `pipeline.demo.summary`; this name stays only until every importer uses that one."""

from pipeline.demo.summary import OutputSummary, print_summary, print_tiers, read_outputs

__all__ = ["OutputSummary", "print_summary", "print_tiers", "read_outputs"]
