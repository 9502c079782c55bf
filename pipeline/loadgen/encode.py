"""Turn ground-truth columns into Kafka messages, in chunks, fast.

The message layout (which samples go into which message, in which order) is computed up front with
numpy (`plan_messages`); bytes are made chunk by chunk. Per-sample JSON is assembled from a
precomputed identity prefix per (series, instance) plus the `ts` and `value` numbers, which orjson
formats for a whole chunk at once (shortest round-trip repr, so the worker parses back exactly the
ground-truth float64).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import orjson
from numpy.typing import NDArray

from pipeline.loadgen.malformed import BadPlan, bad_message
from pipeline.loadgen.spec import CUMULATIVE, DELTA, Message
from pipeline.loadgen.workload import GroundTruth, flush_group

__all__ = ["MessagePlan", "iter_chunks", "plan_messages"]

# tuple.__new__ straight from C: Message._make costs a Python call per message (~35 % of the time).
_new_message = functools.partial(tuple.__new__, Message)

#: Valid samples serialized per chunk: big enough for numpy/orjson to amortize, small enough that
#: a chunk of messages stays in the young GC generation.
CHUNK_SAMPLES = 8_192


@dataclass(frozen=True, eq=False)
class MessagePlan:
    """Valid messages in production order.

    sample_order: int64 indices into the GroundTruth arrays, message after message.
    bounds: int64, length messages + 1; message i holds sample_order[bounds[i]:bounds[i + 1]].
    timestamp_ms: int64 Kafka timestamp per message, non-decreasing (batches: the newest
        producer time among its samples, i.e. when the producer flushed it).
    key: int32 producer key index per message.
    """

    sample_order: NDArray[np.int64]
    bounds: NDArray[np.int64]
    timestamp_ms: NDArray[np.int64]
    key: NDArray[np.int32]

    def __len__(self) -> int:
        return int(self.timestamp_ms.shape[0])


def plan_messages(truth: GroundTruth) -> MessagePlan:
    """Group samples into messages according to `truth.spec.encoding`."""
    spec, n = truth.spec, len(truth)
    if spec.encoding == "single":
        return MessagePlan(
            np.arange(n, dtype=np.int64),
            np.arange(n + 1, dtype=np.int64),
            truth.now_ms,
            truth.sent_key,
        )
    if spec.encoding == "array":
        # One producer per key: a batch holds whatever was sent with that key in one flush.
        group = flush_group(spec, truth.sent_key.astype(np.int64), truth.now_ms)
    else:
        # One buffer per (series, instance): a columnar message is one series' points of one flush.
        stream = truth.series_key.astype(np.int64) * spec.instances + truth.instance
        group = flush_group(spec, stream, truth.now_ms)
    order = np.argsort(group, kind="stable")  # stable: production order inside each group
    g = group[order]
    new_group = np.ones(n, dtype=np.bool_)
    new_group[1:] = g[1:] != g[:-1]
    group_start = np.flatnonzero(new_group)
    rank = np.arange(n) - group_start[np.cumsum(new_group) - 1]
    new_msg = rank % spec.batch_size == 0  # a full batch is sent at once, the rest at the flush
    start = np.flatnonzero(new_msg)
    end = np.append(start[1:], n)
    msg_ts = truth.now_ms[order[end - 1]] if n else np.zeros(0, dtype=np.int64)
    first = order[start]
    by_time = np.lexsort((first, msg_ts))
    position = np.empty(len(start), dtype=np.int64)
    position[by_time] = np.arange(len(start))
    sample_order = order[np.argsort(position[np.cumsum(new_msg) - 1], kind="stable")]
    sizes = (end - start)[by_time]
    bounds = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    return MessagePlan(
        sample_order.astype(np.int64), bounds, msg_ts[by_time], truth.sent_key[first[by_time]]
    )


def _prefixes(truth: GroundTruth) -> NDArray[np.object_]:
    """JSON identity prefix per (series, instance): `{"service":...,"instance":"...",`."""
    inst = truth.spec.instances
    out = np.empty(len(truth.series) * inst, dtype=object)
    for s, sid in enumerate(truth.series):
        for i in range(inst):
            out[s * inst + i] = orjson.dumps(sid.fields(i))[:-1] + b","
    return out


def _numbers(values: NDArray[np.float64], as_int: NDArray[np.bool_]) -> list[bytes]:
    """JSON number per value: integers for counters (as real clients send), floats otherwise."""
    out: list[bytes] = orjson.dumps(values.tolist())[1:-1].split(b",")
    if as_int.any():
        ints = orjson.dumps(values[as_int].astype(np.int64).tolist())[1:-1].split(b",")
        arr = np.array(out, dtype=object)
        arr[as_int] = ints
        out = arr.tolist()
    return out


def iter_chunks(
    truth: GroundTruth, plan: MessagePlan, bad: BadPlan, chunk_samples: int = CHUNK_SAMPLES
) -> Iterator[list[Message]]:
    """Every message (valid and bad) in production order, as lists of about `chunk_samples`."""
    spec = truth.spec
    prefixes = _prefixes(truth)
    keys = np.array([k.encode() for k in truth.keys], dtype=object)
    stream = truth.series_key.astype(np.int64) * spec.instances + truth.instance
    is_counter = np.isin(truth.kind, (DELTA, CUMULATIVE))
    # Bad message j goes right after the valid messages with timestamp <= its own.
    bad_at = np.searchsorted(plan.timestamp_ms, bad.now_ms, side="right")
    cuts = np.unique(
        np.searchsorted(plan.bounds, np.arange(0, len(truth), chunk_samples), side="left")
    )
    cuts = np.append(cuts[cuts < len(plan)], len(plan))
    next_bad = 0
    for a, b in zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True):
        lo, hi = int(plan.bounds[a]), int(plan.bounds[b])
        idx = plan.sample_order[lo:hi]
        if spec.encoding == "columnar":
            values = _columnar(truth, prefixes, stream, is_counter, plan, idx, a, b)
        else:
            pre = prefixes[stream[idx]].tolist()
            ts = orjson.dumps(truth.ts[idx].tolist())[1:-1].split(b",")
            vals = _numbers(truth.value[idx], is_counter[idx])
            items = [b'%b"ts":%b,"value":%b}' % t for t in zip(pre, ts, vals, strict=True)]
            if spec.encoding == "single":
                values = items
            else:
                rel = (plan.bounds[a : b + 1] - lo).tolist()
                values = [b"[" + b",".join(items[x:y]) + b"]" for x, y in itertools.pairwise(rel)]
        stamps = plan.timestamp_ms[a:b].tolist()
        chunk = list(
            map(_new_message, zip(keys[plan.key[a:b]].tolist(), values, stamps, strict=True))
        )
        stop = int(np.searchsorted(bad_at, b, side="left"))
        # Insert from the back so earlier insertion points stay valid.
        for j in range(stop - 1, next_bad - 1, -1):
            chunk.insert(int(bad_at[j]) - a, bad_message(spec, truth.catalogue, bad, j))
        next_bad = stop
        yield chunk
    if next_bad < len(bad):  # bad messages after the last valid one (or no valid messages at all)
        yield [bad_message(spec, truth.catalogue, bad, j) for j in range(next_bad, len(bad))]


def _columnar(
    truth: GroundTruth,
    prefixes: NDArray[np.object_],
    stream: NDArray[np.int64],
    is_counter: NDArray[np.bool_],
    plan: MessagePlan,
    idx: NDArray[np.int64],
    a: int,
    b: int,
) -> list[bytes]:
    """Columnar messages a..b-1 (`idx` are their samples, back to back)."""
    lo = int(plan.bounds[a])
    rel = (plan.bounds[a : b + 1] - lo).tolist()
    ts, value = truth.ts[idx], truth.value[idx]
    out = []
    for x, y in itertools.pairwise(rel):
        first = int(idx[x])
        vals = value[x:y].astype(np.int64) if is_counter[first] else value[x:y]
        out.append(
            b'%b"ts":%b,"value":%b}'
            % (prefixes[stream[first]], orjson.dumps(ts[x:y].tolist()), orjson.dumps(vals.tolist()))
        )
    return out
