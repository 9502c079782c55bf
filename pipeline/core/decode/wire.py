"""Typed JSON decoding of the raw topic's common shapes with msgspec.

msgspec decodes a sample straight into a small struct and checks every field's type in C, which
is about twice as fast as orjson into a dict followed by Python-level checks. Anything it refuses
(a columnar batch, a wrong type, a missing field, malformed JSON) is not an error here: the
decoder then takes its general path, which gives each problem its reason code.

Labels stay JSON text (`msgspec.Raw`) here: labels.py turns each distinct text into the series
lookup's key once, instead of building and sorting a label map for every sample.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from pipeline.core.validate import MAX_TS

# What `labels` holds when a sample has none; shared, so a batch without labels is told apart by
# identity in one C-level count.
NO_LABELS = msgspec.Raw(b"null")


class WireSample(msgspec.Struct, gc=False):
    """One raw sample as it appears on the wire (schemas/sample.schema.json)."""

    service: str
    region: str
    name: str
    type: str
    ts: Annotated[int, msgspec.Meta(ge=0, lt=MAX_TS)]
    value: float
    unit: str | None = None
    temporality: str | None = None
    instance: str | None = None
    labels: msgspec.Raw = NO_LABELS  # any JSON value: labels.py checks it


# A record is one sample or a JSON array of samples.
WIRE_DECODER = msgspec.json.Decoder(WireSample | list[WireSample])
WIRE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError)
