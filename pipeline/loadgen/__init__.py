"""Deterministic load generator: synthetic metric samples as Kafka messages plus their ground truth.

    spec = WorkloadSpec(seed=1, samples=100_000, late_fraction=0.01,
                        malformed=MalformedCounts.each(3))
    work = generate(spec)          # numpy columns + message layout + manifest; no bytes yet
    for chunk in work.chunks():    # lists of Message(key, value, timestamp_ms), production order
        ...
    work.manifest.to_dict()        # exact counts
    work.truth                     # every valid sample as numpy columns, for expected rollups

Only `produce.py` talks to Kafka; import it explicitly.
"""

from pipeline.loadgen.build import Manifest, Workload, build_manifest, build_messages, generate
from pipeline.loadgen.spec import (
    CUMULATIVE,
    DELTA,
    GAUGE,
    TIMER,
    Encoding,
    MalformedCounts,
    Message,
    MetricKind,
    SeriesId,
    WorkloadSpec,
)
from pipeline.loadgen.workload import GroundTruth, generate_columns

__all__ = [
    "CUMULATIVE",
    "DELTA",
    "GAUGE",
    "TIMER",
    "Encoding",
    "GroundTruth",
    "MalformedCounts",
    "Manifest",
    "Message",
    "MetricKind",
    "SeriesId",
    "Workload",
    "WorkloadSpec",
    "build_manifest",
    "build_messages",
    "generate",
    "generate_columns",
]
