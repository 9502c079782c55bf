"""The local store's writer: file schema, partitioning, names, re-delivery, compaction, crashes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from tdigest import TDigest

from pipeline.sinks.base import SinkRecord
from pipeline.sinks.local import LocalStoreSink
from pipeline.store.compact import compact_store
from pipeline.store.files import data_files, temp_files
from pipeline.store.query import run_query
from pipeline.store.table import SCHEMA

from .rollups import rollup_records

REPO = Path(__file__).resolve().parents[3]


def batches(records: list[SinkRecord], size: int) -> list[list[SinkRecord]]:
    return [records[i : i + size] for i in range(0, len(records), size)]


def stored_keys(root: Path, view: str) -> list[str]:
    return [r[0] for r in run_query(root, f"SELECT key FROM {view} ORDER BY key").rows]


def test_files_hold_the_contract_columns_partitioned_by_resolution_and_utc_date(
    tmp_path: Path,
) -> None:
    records = rollup_records()
    sink = LocalStoreSink(tmp_path, compact_after=0)
    for batch in batches(records, 100):
        assert sink.write(batch) == []

    files = data_files(tmp_path)
    partitions = {f.parent.relative_to(tmp_path).as_posix() for f in files}
    # The hour of windows starts at 23:30 UTC: two UTC dates.
    assert partitions == {"resolution=1m/date=2026-11-25", "resolution=1m/date=2026-11-26"}
    by_key = {r.key.decode(): r.body for r in records}
    seen = 0
    for path in files:
        table = pq.read_table(path)
        assert table.schema.equals(SCHEMA, check_metadata=False)
        day = path.parent.name.removeprefix("date=")
        for row in table.to_pylist():
            body = by_key[row["key"]]
            assert row["window_start"] == datetime.fromtimestamp(
                body["window_start"] / 1000, tz=UTC
            )
            assert row["window_start"].date().isoformat() == day
            assert row["resolution"] == "1m" and row["resolution_ms"] == 60_000
            assert (row["count"], row["sum"], row["min"], row["max"], row["rate"]) == (
                body["count"],
                body["sum"],
                body["min"],
                body["max"],
                body["rate"],
            )
            assert row["service"] == body["series"]["service"]
            assert dict(row["labels"]) == body["series"]["labels"]
            assert dict(row["percentiles"]) == body["percentiles"]
            assert row["p99"] == body["percentiles"].get("p99")
            assert row["p99_9"] == body["percentiles"].get("p99.9")
            if body["digest"] is None:
                assert row["digest"] is None and row["type"] == "counter"
            else:
                # Analysts re-merge from the stored text: it loads into the tdigest package.
                digest = TDigest()
                digest.update_from_dict(json.loads(row["digest"]))
                assert digest.n == body["count"]
            seen += 1
    assert seen == len(records)


def test_the_same_batch_delivered_again_replaces_its_own_file(tmp_path: Path) -> None:
    records = rollup_records()[:50]
    sink = LocalStoreSink(tmp_path, compact_after=0)
    sink.write(records)
    first = data_files(tmp_path)
    sink.write(records)
    assert data_files(tmp_path) == first
    assert len(stored_keys(tmp_path, "rollups_all")) == 50


def test_redelivered_rollups_count_once_in_the_rollups_view(tmp_path: Path) -> None:
    records = rollup_records()
    sink = LocalStoreSink(tmp_path, compact_after=0)
    for batch in batches(records, 50):
        sink.write(batch)
    # A re-delivery with other batch boundaries (the runner restarted mid-stream), plus the
    # same rollups emitted again by a replaying worker, at later offsets.
    for batch in batches(records[35:175], 70):
        sink.write(batch)
    again = [
        SinkRecord(r.topic, r.partition, r.offset + 10_000, r.key, r.raw, r.body)
        for r in records[:40]
    ]
    sink.write(again)

    keys = sorted(r.key.decode() for r in records)
    assert len(stored_keys(tmp_path, "rollups_all")) == len(records) + 140 + 40
    assert stored_keys(tmp_path, "rollups") == keys
    totals = run_query(tmp_path, "SELECT sum(count), count(*) FROM rollups").rows[0]
    assert totals == (sum(r.body["count"] for r in records), len(records))
    # Of the copies, the one from the earliest source position is shown.
    offsets = run_query(
        tmp_path,
        "SELECT max(source_offset) FROM rollups_all a SEMI JOIN rollups r USING (key) "
        "WHERE a.source_offset < 10000",
    ).rows[0][0]
    assert offsets == len(records) - 1


def test_compaction_merges_each_partition_into_one_deduplicated_file(tmp_path: Path) -> None:
    records = rollup_records()
    sink = LocalStoreSink(tmp_path, compact_after=0)
    for batch in [*batches(records, 40), *batches(records[10:200], 60)]:
        sink.write(batch)
    before = run_query(tmp_path, "SELECT * FROM rollups ORDER BY key").rows
    assert len(data_files(tmp_path)) > 2

    done = compact_store(tmp_path)

    files = data_files(tmp_path)
    assert len(files) == 2 == len(done)
    assert all(f.name.startswith("c-") for f in files)
    assert sum(c.rows_in for c in done) == len(records) + 190
    assert sum(c.rows_out for c in done) == len(records)
    assert all(pq.read_schema(f).equals(SCHEMA, check_metadata=False) for f in files)
    assert len(stored_keys(tmp_path, "rollups_all")) == len(records)
    assert run_query(tmp_path, "SELECT * FROM rollups ORDER BY key").rows == before
    assert compact_store(tmp_path) == []  # nothing left to merge


def test_automatic_compaction_bounds_the_number_of_files(tmp_path: Path) -> None:
    records = rollup_records()
    sink = LocalStoreSink(tmp_path, compact_after=4)
    for batch in batches(records, 10):
        sink.write(batch)
    # 24 batches over 2 partitions; without compaction this would be 24+ files.
    per_partition: dict[Path, int] = {}
    for f in data_files(tmp_path):
        per_partition[f.parent] = per_partition.get(f.parent, 0) + 1
    assert per_partition and max(per_partition.values()) < 4 + 4
    assert any(f.name.startswith("c-") for f in data_files(tmp_path))
    assert stored_keys(tmp_path, "rollups_all") == sorted(r.key.decode() for r in records)


def test_records_that_break_the_contract_are_rejected_and_the_rest_stored(
    tmp_path: Path,
) -> None:
    records = rollup_records()[:10]
    broken = dict(records[3].body)
    del broken["window_start"]
    wrong_type = {**records[5].body, "count": "many"}
    batch = list(records)
    batch[3] = SinkRecord("t", 0, 3, records[3].key, b"{}", broken)
    batch[5] = SinkRecord("t", 0, 5, records[5].key, b"{}", wrong_type)

    rejected = LocalStoreSink(tmp_path).write(batch)

    assert [(r.index, r.reason) for r in rejected] == [(3, "not_a_rollup"), (5, "not_a_rollup")]
    assert "window_start" in rejected[0].detail
    expected = sorted(r.key.decode() for i, r in enumerate(records) if i not in (3, 5))
    assert stored_keys(tmp_path, "rollups") == expected


CRASH_WRITER = """
import sys
from pathlib import Path
from pipeline.sinks.base import SinkRecord
from pipeline.sinks.local import LocalStoreSink
from unit.store.rollups import rollup_records

records = rollup_records()
big = [
    SinkRecord(r.topic, r.partition, copy * len(records) + r.offset, r.key, r.raw, r.body)
    for copy in range(100)
    for r in records
    if r.body["window_start"] % 86_400_000 >= 82_800_000  # one partition: 23:xx UTC
]
sink = LocalStoreSink(Path(sys.argv[1]), compact_after=0)
print(len(big), flush=True)
while True:
    for start in range(0, len(big), len(big) // 4):
        sink.write(big[start : start + len(big) // 4])
"""


def test_a_writer_killed_mid_write_leaves_only_whole_files(tmp_path: Path) -> None:
    """kill -9 of a real writer process while a file is being written: what is visible under a
    data file name is always a complete file; the half-written temp file is invisible."""
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'tests'}{os.pathsep}{REPO}"}
    for _attempt in range(5):
        store = tmp_path / f"store{_attempt}"
        store.mkdir()
        proc = subprocess.Popen(
            [sys.executable, "-c", CRASH_WRITER, str(store)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            rows_per_write = int(proc.stdout.readline()) // 4
            deadline = time.monotonic() + 60
            # Wait until at least one file is complete and the next one is half-way.
            while time.monotonic() < deadline:
                if data_files(store) and temp_files(store):
                    break
                time.sleep(0.001)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(10)
        if temp_files(store):
            break
    else:
        pytest.fail("never caught the writer in the middle of a file")

    complete = data_files(store)
    assert complete
    for path in complete:
        assert pq.read_metadata(path).num_rows == rows_per_write
    # The store stays queryable; the temp file is not part of it.
    rows = run_query(store, "SELECT count(*) FROM rollups_all").rows[0][0]
    assert rows == rows_per_write * len(complete)


def test_store_compact_removes_only_stale_temp_files(tmp_path: Path) -> None:
    LocalStoreSink(tmp_path).write(rollup_records()[:10])
    partition = data_files(tmp_path)[0].parent
    stale = partition / ".b-1-2-dead.parquet.4242.abcd1234.tmp"
    young = partition / ".b-3-4-beef.parquet.4243.abcd1234.tmp"
    stale.write_bytes(b"PAR1 half a file")
    young.write_bytes(b"PAR1 still being written")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))

    compact_store(tmp_path)

    assert temp_files(tmp_path) == [young]


def test_file_names_tell_the_source_partition_and_offsets(tmp_path: Path) -> None:
    records = [r for r in rollup_records() if r.body["window_start"] % 86_400_000 < 3_600_000]
    one_partition = records[:5]
    mixed = [*records[5:8], *(SinkRecord(r.topic, 3, r.offset, r.key, r.raw, r.body)
                              for r in records[8:10])]  # fmt: skip
    sink = LocalStoreSink(tmp_path, compact_after=0)
    sink.write(one_partition)
    sink.write(mixed)
    names = sorted(f.name for f in data_files(tmp_path))
    assert names[0].startswith("b-mixed-")
    first, last = one_partition[0].offset, one_partition[-1].offset
    assert names[1].startswith(f"b-p0-{first}-{last}-")
