"""The capture store: Hive-partitioned Parquet, local or on S3, readable with pyarrow/DuckDB.

    from monitoring.ingest.store import read_records, read_records_df
    table = read_records("var/store", "resnet50", since="2024-05-01T00:00Z")

Layout, schema and guarantees: docs/monitoring.md.
"""

from monitoring.capture.fields import SCHEMA_VERSION

from .backend import LocalBackend, S3Backend, open_backend
from .reader import list_files, read_records, read_records_df, to_epoch_ms
from .schema import FILE_SCHEMA, PARTITION_COLUMNS, RECORD_SCHEMA, records_to_table
from .writer import StoreWriter, dedupe, partition_dir

__all__ = [
    "FILE_SCHEMA",
    "LocalBackend",
    "PARTITION_COLUMNS",
    "RECORD_SCHEMA",
    "S3Backend",
    "SCHEMA_VERSION",
    "StoreWriter",
    "dedupe",
    "list_files",
    "open_backend",
    "partition_dir",
    "read_records",
    "read_records_df",
    "records_to_table",
    "to_epoch_ms",
]
