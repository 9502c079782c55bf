"""The embedded local store: rollups as hive-partitioned Parquet files, queried with DuckDB.

Layout: `<root>/resolution=<res>/date=<YYYY-MM-DD>/<file>.parquet`, the date being the UTC date of
`window_start`. Files are written atomically (temp file, fsync, rename, fsync of the directory);
a rollup may be stored more than once (re-delivery), and the `rollups` view of `query` shows each
rollup key once.
"""

from pathlib import Path

#: Where the store lives when nothing else is configured (relative to the working directory).
DEFAULT_STORE_PATH = Path("metrics-store")
