"""The remote-write 1.0 protobuf messages, built from a descriptor at import time.

Field numbers and types are those of Prometheus' prompb/remote.proto and prompb/types.proto
(WriteRequest.timeseries = 1, TimeSeries.labels = 1 / samples = 2, Label.name = 1 / value = 2,
Sample.value = 1 (double) / timestamp = 2 (int64, epoch ms); WriteRequest.metadata = 3,
MetricMetadata.type = 1 (enum MetricType) / metric_family_name = 2 / help = 4 / unit = 5).
Building the descriptor here instead of generating code keeps protoc out of the build and
generated files out of the repo; the wire format is pinned by a byte-level unit test and by the
real servers in the tests.
Samples are hand-encoded (wire.py, for speed); these classes build the metadata and decode in
tests. Exemplars and native histograms are not sent.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto
#: MetricMetadata.MetricType, in enum order (UNKNOWN = 0, COUNTER = 1, GAUGE = 2, ...).
METRIC_TYPES = (
    "UNKNOWN", "COUNTER", "GAUGE", "HISTOGRAM", "GAUGEHISTOGRAM", "SUMMARY", "INFO", "STATESET"
)  # fmt: skip


def _file() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(
        name="metrics_pipeline/prometheus_remote_write.proto",
        package="prometheus",
        syntax="proto3",
    )

    def message(name: str, *fields: tuple[str, int, int, str | None, bool]) -> None:
        msg = proto.message_type.add(name=name)
        for field_name, number, kind, type_name, repeated in fields:
            field = msg.field.add(
                name=field_name,
                number=number,
                type=kind,
                label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL,
            )
            if type_name is not None:
                field.type_name = type_name

    message(
        "Label", ("name", 1, _F.TYPE_STRING, None, False), ("value", 2, _F.TYPE_STRING, None, False)
    )
    message(
        "Sample",
        ("value", 1, _F.TYPE_DOUBLE, None, False),
        ("timestamp", 2, _F.TYPE_INT64, None, False),
    )
    message(
        "TimeSeries",
        ("labels", 1, _F.TYPE_MESSAGE, ".prometheus.Label", True),
        ("samples", 2, _F.TYPE_MESSAGE, ".prometheus.Sample", True),
    )
    message(
        "MetricMetadata",
        ("type", 1, _F.TYPE_ENUM, ".prometheus.MetricMetadata.MetricType", False),
        ("metric_family_name", 2, _F.TYPE_STRING, None, False),
        ("help", 4, _F.TYPE_STRING, None, False),
        ("unit", 5, _F.TYPE_STRING, None, False),
    )
    metric_type = proto.message_type[-1].enum_type.add(name="MetricType")
    for number, name in enumerate(METRIC_TYPES):
        metric_type.value.add(name=name, number=number)
    message(
        "WriteRequest",
        ("timeseries", 1, _F.TYPE_MESSAGE, ".prometheus.TimeSeries", True),
        ("metadata", 3, _F.TYPE_MESSAGE, ".prometheus.MetricMetadata", True),
    )
    return proto


# A private pool: another library's "prometheus" package in the default pool cannot clash.
_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())


def _class(name: str) -> Any:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"prometheus.{name}"))


WriteRequest: Any = _class("WriteRequest")
TimeSeries: Any = _class("TimeSeries")
Label: Any = _class("Label")
Sample: Any = _class("Sample")
MetricMetadata: Any = _class("MetricMetadata")
