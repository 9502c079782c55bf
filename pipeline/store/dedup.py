"""Which stored rows are redundant copies of a rollup — the SQL both `query` and compaction use.

Same key ⇒ same content (rollup contract), so one row per key is kept: the one from the lowest
source position (topic, partition, offset), so results do not depend on file order. Finding the
copies must not cost a window over every full row (that materializes the whole store: 2.9 GB
and 4.5 s for a `SELECT *` over 1M rollups); instead keys are grouped by their 64-bit hash,
which is cheap, and only rows whose hash occurs more than once — the copies, plus the rare hash
collision, which the exact `PARTITION BY key` then tells apart — go through the window.
"""

from __future__ import annotations

SOURCE_ORDER = "source_topic, source_partition, source_offset"
#: Columns that say where a stored row is; read_parquet(filename, file_row_number) renamed.
ROW_ID = ("source_file", "source_row")


def redundant_rows_sql(relation: str) -> str:
    """SELECT source_file, source_row of every copy but the first, of rows in `relation`
    (which must have key, the source columns and ROW_ID)."""
    return (
        "WITH shared AS ("
        f"  SELECT hash(key) AS h FROM {relation} GROUP BY h HAVING count(*) > 1"
        ") "
        f"SELECT {', '.join(ROW_ID)} FROM {relation} SEMI JOIN shared ON hash(key) = shared.h "
        f"QUALIFY row_number() OVER (PARTITION BY key ORDER BY {SOURCE_ORDER}) > 1"
    )


def with_row_ids(scan: str) -> str:
    """A SELECT over a read_parquet(…, filename = true, file_row_number = true) call that
    names the row identity columns ROW_ID."""
    return f"SELECT * RENAME (filename AS {ROW_ID[0]}, file_row_number AS {ROW_ID[1]}) FROM {scan}"
