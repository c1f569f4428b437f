"""Well-formed CSV records -> a typed Arrow record batch, and the rows whose values do not fit.

The records of a chunk are parsed by pyarrow's CSV reader as bytes (only the declared
columns, wherever the file's header puts them), then every column is checked and
converted with vectorized Arrow kernels: empty -> missing, ints and floats by
pattern, strings as UTF-8 (already checked per line). A row with a value that does not
fit its column's type is rejected with the column and value named; the others carry on.
The batch has the layout tfx_bsl's CsvTFXIO produces (`large_list<item>` per column), so
tf.Transform reads it with the same TensorAdapterConfig.
"""

import csv
import io
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv as pacsv

from beam_pipeline.sources import batches
from beam_pipeline.sources import csv_records
from beam_pipeline.sources.csv_records import Chunk, Layout
from beam_pipeline.sources.dead_letter import Reject

INT_PATTERN = r"^\s*[+-]?[0-9]+\s*$"
FLOAT_PATTERN = r"^\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*$"
NON_FINITE_PATTERN = r"^\s*[+-]?(?i:nan|inf|infinity)\s*$"
INT64_DIGITS = 18  # up to 18 characters always fit int64; longer ones are checked one by one


ARROW_BLOCK_BYTES = 1 << 20  # pyarrow's default; a longer record needs a larger block


def _requote(record: bytes, delimiter: str) -> bytes:
    """The record with every field quoted, so that a bare \\r in it (a character of the
    value, see `csv_records`) is inside quotes, where pyarrow keeps it too."""
    try:
        fields = csv_records.split_fields(record, delimiter)
    except csv.Error:
        return record  # `_parse` rejects what pyarrow cannot read
    return delimiter.encode().join(b'"' + f.replace(b'"', b'""') + b'"' for f in fields)


def _read(data: bytes, layout: Layout, delimiter: str, multiline: bool, longest: int
          ) -> pa.Table:
    names = [f"f{i}" for i in range(layout.width)]
    read = [names[p] for p in layout.positions]
    return pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(
            column_names=names, use_threads=False,
            block_size=min(max(ARROW_BLOCK_BYTES, longest + 2), 2**31 - 1)),
        parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=multiline),
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.binary() for n in read}, include_columns=read,
            strings_can_be_null=False, quoted_strings_can_be_null=False))


def _parse(chunk: Chunk, file: str, names: Sequence[str], delimiter: str
           ) -> Tuple[pa.Table, Optional[List[int]], List[Reject]]:
    """The chunk's records as a table of binary columns named `names` (no type inference),
    the indices of the records it holds (None: all), and rejects for the others.

    Should pyarrow refuse the chunk, or read another number of rows from it, each record
    is parsed alone and only those it cannot read are rejected.
    """
    layout = chunk.layout or Layout.positional(names)
    records, multiline = chunk.records, chunk.multiline
    data = b"\n".join(records)
    if b"\r" in data:
        records = [_requote(r, delimiter) if b"\r" in r else r for r in records]
        data, multiline = b"\n".join(records), True
    longest = max(map(len, records)) if len(data) > ARROW_BLOCK_BYTES else 0
    try:
        table = _read(data, layout, delimiter, multiline, longest)
        if table.num_rows == len(records):
            return table.rename_columns(list(names)), None, []
    except pa.ArrowException:
        pass
    tables, kept, rejects = [], [], []
    for i, record in enumerate(records):
        try:
            one = _read(record, layout, delimiter, True, len(record))
            problem = None if one.num_rows == 1 else f"it reads as {one.num_rows} rows"
        except pa.ArrowException as e:
            problem = re.sub(r"^CSV parse error: (Row #\d+: )?", "", str(e))[:300]
        if problem is None:
            tables.append(one)
            kept.append(i)
        else:
            rejects.append(Reject(file, chunk.lines[i], "unparsable_record",
                                  f"the CSV parser cannot read this record: {problem}",
                                  chunk.records[i]))
    table = pa.concat_tables(tables) if tables else pa.table(
        {f"f{p}": pa.array([], pa.binary()) for p in layout.positions})
    return table.rename_columns(list(names)), kept, rejects


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
        long = pc.and_(good, pc.greater(pc.binary_length(stripped), INT64_DIGITS))
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
    if column_type == "int":  # Arrow's cast takes "-1" but not "+1"
        safe = pc.replace_substring_regex(safe, r"^\+", "")
    typed = pc.cast(safe, batches.ITEM_TYPES[column_type])
    if column_type == "float" and non_finite == "missing":  # 1e999: inf once a float32
        overflow = ~pc.is_finite(typed).to_numpy(zero_copy_only=False) & ~(bad | missing_np)
        if overflow.any():
            missing_np = missing_np | overflow
            usable = pa.array(~(bad | missing_np))
    return pc.if_else(usable, typed, pa.nulls(len(values), batches.ITEM_TYPES[column_type])), \
        missing_np, bad


def to_record_batch(chunk: Chunk, file: str, columns: Sequence, delimiter: str,
                    non_finite: str = "missing") -> Tuple[pa.RecordBatch, List[Reject]]:
    """Types a chunk of records by the config's columns.

    Args:
      chunk: records from `csv_records.read_records`, each with the right field count
        (a record pyarrow cannot read anyway is an `unparsable_record` reject).
      file: the file they came from, for the rejects.
      columns: the config's `Column`s (name, type, read_type, required).
      non_finite: "missing" (NaN/inf are missing values) or "reject" (they are not
        allowed); with "reject" they are kept for the check below.

    Returns:
      (record batch of the rows that fit, rejects for the others).
    """
    table, kept, unparsable = _parse(chunk, file, [c.name for c in columns], delimiter)
    lines, records = chunk.lines, chunk.records
    if kept is not None:
        lines, records = [lines[i] for i in kept], [records[i] for i in kept]
    rows = len(records)
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
                problems[int(i)] = (reason, batches.describe_missing(column)
                                    if reason == column.missing_reason else
                                    f"column {column.name!r}: {_describe(reason, value)}")
            bad_any |= mask
        typed[column.name] = result
    keep = ~bad_any
    batch = batches.record_batch(columns, typed, keep)
    rejects = unparsable + [Reject(file, lines[i], reason, detail, records[i])
                            for i, (reason, detail) in sorted(problems.items())]
    return batch, rejects


def _describe(reason: str, value: str) -> str:
    if reason == "bad_float" and value.strip():
        return f"{value!r} is not a finite number" if value.strip().lower().lstrip("+-") in (
            "nan", "inf", "infinity") else f"{value!r} is not a number"
    return f"{value!r} is not {'an integer' if reason == 'bad_int' else 'a number'}"
