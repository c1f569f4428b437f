"""Deterministic train/eval split of Arrow record batches by a hash of a key or the raw row.

The same row always lands in the same split, on every run and every runner, because
the bucket is FarmHash64 of bytes that come from the row's values alone (the key
column's, or all of them).
"""

from typing import Iterable, Optional

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


SPLITS = ("train", "eval")
HASH_BUCKETS = 10_000
KEY_SEPARATOR = b"\x1f"  # joins a row's values when no split key is set
METRICS_NAMESPACE = "beam_pipeline"


def _first_values_as_text(column: pa.Array) -> pa.Array:
    """The first value of each row of a list column as text; "" where the row is empty."""
    first = pc.list_slice(pc.fill_null(column, pa.scalar([], column.type)), 0, 1)
    values = pc.list_flatten(first)
    if pa.types.is_large_binary(values.type) or pa.types.is_binary(values.type):
        values = pc.cast(values, pa.large_binary())
    else:
        values = pc.cast(pc.cast(values, pa.large_string()), pa.large_binary())
    has_value = pc.equal(pc.list_value_length(first), 1)
    out = np.full(len(column), b"", dtype=object)
    out[has_value.to_numpy(zero_copy_only=False)] = values.to_numpy(zero_copy_only=False)
    return pa.array(out, type=pa.large_binary())


def _key_bytes(batch: pa.RecordBatch, key: Optional[str]) -> np.ndarray:
    """One bytes value per row: the key column's value, or every column's joined by \x1f."""
    names = [key] if key else batch.schema.names
    parts = [_first_values_as_text(batch.column(batch.schema.get_field_index(n)))
             for n in names]
    if len(parts) == 1:
        return parts[0].to_numpy(zero_copy_only=False)
    # The separator must have the parts' type: a plain b"\x1f" is `binary`, which
    # pyarrow's kernel does not match with `large_binary` parts.
    separator = pa.scalar(KEY_SEPARATOR, pa.large_binary())
    return pc.binary_join_element_wise(*parts, separator).to_numpy(zero_copy_only=False)


def eval_mask(batch: pa.RecordBatch, key: Optional[str], eval_fraction: float) -> np.ndarray:
    """Boolean array, True for the rows of `batch` that belong to the eval split."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    buckets = tf.strings.to_hash_bucket_fast(_key_bytes(batch, key), HASH_BUCKETS).numpy()
    return buckets < int(round(eval_fraction * HASH_BUCKETS))


class SplitRecordBatches(beam.DoFn):
    """Routes each row of a record batch to the `train` or `eval` output.

    With `fixed`, every row goes to that split (an input that is all eval data, or a
    folder split as Keras splits it). With `count_rows`, Beam
    counters `rows_valid` and `rows_<split>` record how many valid rows went where.
    """

    def __init__(self, key: Optional[str], eval_fraction: float,
                 emit: Iterable[str] = SPLITS, count_rows: bool = False,
                 fixed: Optional[str] = None):
        self._key = key
        self._eval_fraction = eval_fraction
        self._fixed = fixed
        self._emit = tuple(emit)
        self._count_rows = count_rows
        self._counters = {}

    def setup(self):
        if self._count_rows:
            self._counters = {name: beam.metrics.Metrics.counter(METRICS_NAMESPACE, name)
                              for name in ("rows_valid",) + tuple(f"rows_{s}" for s in SPLITS)}

    def _is_eval(self, batch: pa.RecordBatch) -> np.ndarray:
        """Each row's split as a boolean (True: eval), counted when asked."""
        if self._fixed is None:
            is_eval = eval_mask(batch, self._key, self._eval_fraction)
        else:  # the input decides: every row to its split
            is_eval = np.full(batch.num_rows, self._fixed == "eval")
        if self._count_rows:
            self._counters["rows_valid"].inc(batch.num_rows)
            evals = int(is_eval.sum())
            self._counters["rows_eval"].inc(evals)
            self._counters["rows_train"].inc(batch.num_rows - evals)
        return is_eval

    def process(self, batch: pa.RecordBatch):
        for split, part in _parts(batch, self._is_eval(batch), self._emit):
            yield beam.pvalue.TaggedOutput(split, part)


def _parts(batch: pa.RecordBatch, is_eval: np.ndarray, emit: Iterable[str]):
    """(split, the batch's rows of that split) for each split in `emit` that has rows."""
    for split, mask in (("train", ~is_eval), ("eval", is_eval)):
        if split in emit and mask.any():
            yield split, batch if mask.all() else batch.filter(pa.array(mask))


# The column `TagSplits` adds: each row's split as [0] (train) or [1] (eval), a list
# column as tf.Transform's passthrough columns must be.
SPLIT_COLUMN = "__beam_pipeline_split__"
SPLIT_FIELD = pa.field(SPLIT_COLUMN, pa.large_list(pa.int8()))


class TagSplits(SplitRecordBatches):
    """Appends SPLIT_COLUMN to each record batch instead of routing its rows, so one
    transform serves both splits (the column passes through tf.Transform untouched)."""

    def process(self, batch: pa.RecordBatch):
        is_eval = self._is_eval(batch).astype(np.int8)
        tags = pa.LargeListArray.from_arrays(
            pa.array(np.arange(batch.num_rows + 1, dtype=np.int64)), pa.array(is_eval))
        yield batch.append_column(SPLIT_FIELD, tags)


class RouteSplits(beam.DoFn):
    """Tagged record batches -> `train` / `eval` outputs (those in `emit`), without
    SPLIT_COLUMN.

    Takes plain batches or tf.Transform's `(batch, passthrough)` pairs; yields the same kind.
    """

    def __init__(self, emit: Iterable[str] = SPLITS):
        self._emit = tuple(emit)

    def process(self, element):
        batch, rest = (element, None) if isinstance(element, pa.RecordBatch) else element
        index = batch.schema.get_field_index(SPLIT_COLUMN)
        is_eval = pc.list_flatten(batch.column(index)).to_numpy().astype(bool)
        for split, part in _parts(batch.remove_column(index), is_eval, self._emit):
            yield beam.pvalue.TaggedOutput(split, part if rest is None else (part, rest))
