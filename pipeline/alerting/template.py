"""The dashboard link: a str.format template over an event's flat fields, checked at start-up.

Only plain field names are allowed ("{service}", "{started_at:d}"): attribute access and
indexing ("{x.__class__}", "{x[0]}") could reach far beyond the event, so they are refused.
Values are percent-encoded (a service named "a b&c" must not break the query string). A
template that still fails on some event (a format spec that does not fit a value) yields no
link for that event; the caller counts it, the bridge never stops over it.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from urllib.parse import quote

#: The fields a template may use (TEMPLATE_FIELDS in the README).
TEMPLATE_FIELDS = frozenset(
    {
        "episode_id",
        "state",
        "kind",
        "service",
        "region",
        "metric",
        "type",
        "unit",
        "statistic",
        "resolution",
        "severity",
        "direction",
        "detector",
        "series_key",
        "window_start",
        "window_end",
        "started_at",
        "ends_at",
    }
)

_FORMATTER = string.Formatter()


class TemplateError(ValueError):
    """The template cannot be used (bad syntax, unknown or non-plain field)."""


def check_template(template: str) -> None:
    """Raise TemplateError unless every replacement field is a plain name from TEMPLATE_FIELDS."""
    try:
        parsed = list(_FORMATTER.parse(template))
    except ValueError as exc:
        raise TemplateError(f"dashboard template: {exc}") from None
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in TEMPLATE_FIELDS:
            raise TemplateError(
                f"dashboard template: field {{{field}}} is not one of {sorted(TEMPLATE_FIELDS)}"
            )
        if conversion is not None or (spec and "{" in spec):
            raise TemplateError(f"dashboard template: {{{field}}} may only have a format spec")


def render(template: str, fields: Mapping[str, object]) -> str:
    """The template with percent-encoded field values; raises TemplateError if it cannot."""
    values = {
        name: quote(value, safe="") if isinstance(value, str) else value
        for name, value in fields.items()
    }
    try:
        return template.format_map(values)
    except (KeyError, IndexError, ValueError, TypeError, AttributeError) as exc:
        raise TemplateError(f"{type(exc).__name__}: {exc}") from None
