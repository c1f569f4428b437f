"""Well-formed CSV records -> a typed Arrow record batch, and the rows whose values do not fit.

The records of a chunk are parsed by pyarrow's CSV reader as bytes, then every column is
checked and converted with vectorized Arrow kernels: empty -> missing, ints and floats by
pattern, strings as UTF-8 (already checked per line). A row with a value that does not
fit its column's type is rejected with the column and value named; the others carry on.
The batch has the layout tfx_bsl's CsvTFXIO produces (`large_list<item>` per column), so
tf.Transform reads it with the same TensorAdapterConfig.
"""

import io
from typing import Dict, List, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv as pacsv

from beam_pipeline.sources import batches
from beam_pipeline.sources.csv_records import Chunk
from beam_pipeline.sources.dead_letter import Reject

INT_PATTERN = r"^\s*[+-]?[0-9]+\s*$"
FLOAT_PATTERN = r"^\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*$"
NON_FINITE_PATTERN = r"^\s*[+-]?(?i:nan|inf|infinity)\s*$"
INT64_DIGITS = 18  # up to 18 digits always fits int64; longer ones are checked one by one


def _parse(chunk: Chunk, names: Sequence[str], delimiter: str) -> pa.Table:
    """The chunk's records as a table of binary columns (no type inference)."""
    return pacsv.read_csv(
        io.BytesIO(b"\n".join(chunk.records)),
        read_options=pacsv.ReadOptions(column_names=list(names), use_threads=False),
        parse_options=pacsv.ParseOptions(delimiter=delimiter,
                                         newlines_in_values=chunk.multiline),
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.binary() for n in names},
            strings_can_be_null=False, quoted_strings_can_be_null=False))


def _fits_int64(text: bytes) -> bool:
    try:
        return -2**63 <= int(text) < 2**63
    except ValueError:
        return False


def _column(values: pa.Array, column_type: str, non_finite: str
            ) -> Tuple[pa.Array, np.ndarray, np.ndarray]:
    """(typed values with nulls for missing, missing mask, bad mask) of one column."""
    if column_type == "string":  # only an empty cell is missing; spaces are text
        missing = pc.equal(pc.binary_length(values), 0)
        nulls = pa.nulls(len(values), pa.large_binary())
        return pc.if_else(missing, nulls, values.cast(pa.large_binary())), \
            missing.to_numpy(zero_copy_only=False), np.zeros(len(values), bool)
    stripped = pc.utf8_trim_whitespace(values.cast(pa.string()))
    missing = pc.equal(pc.binary_length(stripped), 0)
    if column_type == "int":
        good = pc.match_substring_regex(stripped, INT_PATTERN)
        long = pc.and_(good, pc.greater(pc.binary_length(stripped), INT64_DIGITS + 1))
        if pc.any(long).as_py():
            fits = [_fits_int64(v.encode()) if is_long else True
                    for v, is_long in zip(stripped.to_pylist(), long.to_pylist())]
            good = pc.and_(good, pa.array(fits))
    else:
        good = pc.match_substring_regex(stripped, FLOAT_PATTERN)
        non_finite_mask = pc.match_substring_regex(stripped, NON_FINITE_PATTERN)
        if non_finite == "missing":
            missing = pc.or_(missing, non_finite_mask)
        else:
            good = pc.or_(good, non_finite_mask)
    missing_np = missing.to_numpy(zero_copy_only=False)
    bad = ~(good.to_numpy(zero_copy_only=False) | missing_np)
    usable = pa.array(~(bad | missing_np))
    safe = pc.if_else(usable, stripped, pa.scalar("0"))
    typed = pc.cast(safe, batches.ITEM_TYPES[column_type])
    return pc.if_else(usable, typed, pa.nulls(len(values), batches.ITEM_TYPES[column_type])), \
        missing_np, bad


def to_record_batch(chunk: Chunk, file: str, columns: Sequence, delimiter: str,
                    non_finite: str = "missing") -> Tuple[pa.RecordBatch, List[Reject]]:
    """Types a chunk of records by the config's columns.

    Args:
      chunk: records from `csv_records.read_records`, each with the right field count.
      file: the file they came from, for the rejects.
      columns: the config's `Column`s (name, type, read_type, required).
      non_finite: "missing" (NaN/inf are missing values) or "reject" (they are not
        allowed); with "reject" they are kept for the check below.

    Returns:
      (record batch of the rows that fit, rejects for the others).
    """
    table = _parse(chunk, [c.name for c in columns], delimiter)
    if table.num_rows != len(chunk.records):
        raise ValueError(f"{file}: Arrow parsed {table.num_rows} rows from "
                         f"{len(chunk.records)} records")
    rows = len(chunk.records)
    bad_any = np.zeros(rows, bool)
    problems: Dict[int, str] = {}
    typed = {}
    for column in columns:
        values = table.column(column.name).combine_chunks()
        result, missing, bad = _column(values, column.read_type, non_finite)
        if column.read_type == "float" and non_finite == "reject":
            finite = pc.is_finite(pc.fill_null(result, 0.0)).to_numpy(zero_copy_only=False)
            bad = bad | ~finite
        reasons = (("bad_" + column.read_type, bad),)
        if getattr(column, "required", False):
            reasons += ((column.missing_reason, missing & ~bad),)
        for reason, mask in reasons:
            for i in np.flatnonzero(mask & ~bad_any):
                value = values[int(i)].as_py().decode("utf-8", "backslashreplace")
                problems[int(i)] = (reason, f"column {column.name!r}: {_describe(reason, value, column)}")
            bad_any |= mask
        typed[column.name] = result
    keep = ~bad_any
    batch = batches.record_batch(columns, typed, keep)
    rejects = [Reject(file, chunk.lines[i], reason, detail, chunk.records[i])
               for i, (reason, detail) in sorted(problems.items())]
    return batch, rejects


def _describe(reason: str, value: str, column) -> str:
    if reason == "missing_label":
        return "the label is missing (a training row needs one; label.fill_value opts out)"
    if reason == "missing_required":
        return "a required value is missing"
    if reason == "bad_float" and value.strip():
        return f"{value!r} is not a finite number" if value.strip().lower().lstrip("+-") in (
            "nan", "inf", "infinity") else f"{value!r} is not a number"
    return f"{value!r} is not {'an integer' if reason == 'bad_int' else 'a number'}"
