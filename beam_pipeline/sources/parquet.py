"""Parquet files -> record batches of the config's columns, straight from Parquet's batches.

Only the declared columns are read (column projection), batch by batch, so memory stays
flat. A file that lacks a declared column or holds one of an incompatible type cannot
give rows of this schema: the whole file becomes one dead-letter entry that counts all
its rows, and the other files carry on.
"""

import json
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from beam_pipeline.sources import batches
from beam_pipeline.sources.dead_letter import Reject

BATCH_ROWS = 4096
COMPATIBLE = {  # Arrow types a column of each config type accepts
    "int": (pa.types.is_integer,),
    "float": (pa.types.is_floating, pa.types.is_integer, pa.types.is_decimal),
    "string": (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary,
               pa.types.is_large_binary),
}


def schema_problem(file_schema: pa.Schema, columns: Sequence) -> str:
    """Why the file's schema cannot give the columns, or "" when it can."""
    for column in columns:
        index = file_schema.get_field_index(column.name)
        if index < 0:
            return f"column {column.name!r} is missing (the file has {file_schema.names})"
        arrow_type = file_schema.field(index).type
        if not any(check(arrow_type) for check in COMPATIBLE[column.read_type]):
            return f"column {column.name!r} is {arrow_type}, not a {column.read_type} column"
    return ""


class ParquetReader:
    """A file path -> `(record batch, rejects, row numbers)` of the config's columns."""

    def __init__(self, columns: Sequence):
        self._columns = list(columns)

    def __call__(self, path: str):
        with FileSystems.open(path) as f:
            try:
                parquet = pq.ParquetFile(f)
            except (pa.ArrowException, OSError) as e:
                yield None, [Reject(path, 0, "unreadable_file", f"not a Parquet file: {e}", b"")]
                return
            problem = schema_problem(parquet.schema_arrow, self._columns)
            if problem:
                rows = parquet.metadata.num_rows
                yield None, [Reject(path, 0, "schema_mismatch",
                                    f"{problem}; all {rows} rows of the file are set aside",
                                    str(parquet.schema_arrow).encode(), rows=max(rows, 1))]
                return
            names = [c.name for c in self._columns]
            first_row = 1
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=names):
                values = {c.name: batch.column(batch.schema.get_field_index(c.name))
                          for c in self._columns}
                missing = batches.missing_required(self._columns, values)
                keep = np.ones(batch.num_rows, bool)
                keep[[i for i, _ in missing]] = False
                rejects = [Reject(path, first_row + i, column.missing_reason,
                                  batches.describe_missing(column),
                                  json.dumps(batch.slice(i, 1).to_pylist()[0], default=str,
                                             ensure_ascii=False).encode())
                           for i, column in missing]
                numbers = first_row + np.flatnonzero(keep)
                first_row += batch.num_rows
                yield (batches.record_batch(self._columns, values, None if keep.all() else keep),
                       rejects, numbers)
