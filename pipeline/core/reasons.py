"""Reason codes for dead-lettered input. Each is a label value of the dead-letter counter."""

from enum import StrEnum


class Reason(StrEnum):
    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    INVALID_IDENTIFIER = "invalid_identifier"
    UNKNOWN_METRIC_TYPE = "unknown_metric_type"
    NON_FINITE_VALUE = "non_finite_value"
    # Finite, but |value| > MAX_ABS_VALUE (pipeline/core/contract.py): window sums could overflow.
    VALUE_OUT_OF_RANGE = "value_out_of_range"
    NEGATIVE_DELTA_COUNTER = "negative_delta_counter"
    MISSING_INSTANCE = "missing_instance"
    TS_TOO_OLD = "ts_too_old"
    TS_IN_FUTURE = "ts_in_future"
    OVERSIZE_MESSAGE = "oversize_message"
    TOO_MANY_LABELS = "too_many_labels"
    INVALID_LABEL = "invalid_label"
    LENGTH_MISMATCH = "length_mismatch"
    EMPTY_BATCH = "empty_batch"
    # The decoder itself failed on the record (a defect of ours): counted and dead-lettered so
    # one record can never stop the worker.
    UNDECODABLE = "undecodable"
    LATE = "late"
    # A record in a worker's repartition topic that no worker wrote (producers must not write it).
    UNEXPECTED_RECORD = "unexpected_record"
    INVALID_ROLLUP = "invalid_rollup"
    WRONG_RESOLUTION = "wrong_resolution"
    # Sinks (pipeline/sinks/): the store refused the record for good.
    STORE_REJECTED = "store_rejected"
    # Alert bridge (pipeline/alerting/): an anomaly event it cannot read, an alert Alertmanager
    # refused for good (HTTP 400).
    INVALID_ANOMALY = "invalid_anomaly"
    ALERT_REJECTED = "alert_rejected"
