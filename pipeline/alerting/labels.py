"""Alertmanager label names: what is valid, and how a series' own labels join the bridge's.

Alertmanager (like Prometheus) accepts label names matching [a-zA-Z_][a-zA-Z0-9_]* and refuses
the whole alert otherwise, so every series label name is sanitized. The result must be the same
on every replay (it is the alert's identity), so collisions are settled deterministically.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_INVALID_CHARS = re.compile(r"[^a-zA-Z0-9_]")
#: Prefix of a series label whose (sanitized) name is already taken by one of ours.
SERIES_PREFIX = "series_"


def sanitize_label_name(name: str) -> str:
    """Invalid characters become "_"; a leading digit (or an empty name) gets a "_" prefix."""
    clean = _INVALID_CHARS.sub("_", name)
    if not clean or clean[0].isdigit():
        clean = "_" + clean
    return clean


def merge_series_labels(ours: Mapping[str, str], series: Mapping[str, str]) -> dict[str, str]:
    """`ours` plus the series' labels, sanitized, never overwriting one of ours.

    A series label whose sanitized name is taken is renamed "series_<name>", and gets "_"
    appended until it is free (series labels are placed in sorted order, so replays agree).
    Empty values are left out: to Prometheus and Alertmanager users an empty label is no label.
    """
    merged = dict(ours)
    for name in sorted(series):
        value = series[name]
        if not value:
            continue
        candidate = sanitize_label_name(name)
        if candidate in merged:
            candidate = SERIES_PREFIX + candidate
        while candidate in merged:
            candidate += "_"
        merged[candidate] = value
    return merged
