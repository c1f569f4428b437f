"""Keras's output modes for integer ids: `int`, `one_hot`, `multi_hot`, `count`.

Shared by the lookups, hashing, crossing, text and category encoding kinds so that every
kind encodes ids exactly as Keras's CategoryEncoding does (ids outside `[0, depth)` are
dropped).
"""

from __future__ import annotations

from typing import Optional

from beam_pipeline.features import lazy

tf = lazy.module("tensorflow")
tft = lazy.module("tensorflow_transform")

MODES = ("int", "one_hot", "multi_hot", "count")
# Modes that can be written sparse (Keras's `sparse=True`): a vector of `depth` columns.
VECTOR_MODES = ("one_hot", "multi_hot", "count", "tf_idf")


def encode(ids: tf.RaggedTensor, output_mode: str, depth: Optional[int] = None,
           sequence_length: Optional[int] = None, pad_id: int = 0,
           sparse: bool = False) -> tf.Tensor:
    """Ragged `[batch, (ids)]` int64 -> the output tf.Transform writes.

    Args:
      ids: each row's ids, in order.
      output_mode: "int" keeps the ids: one per row as `[batch]` when `sequence_length` is
        None, else `[batch, sequence_length]` truncated at the end and padded with `pad_id`.
        "one_hot"/"multi_hot" give float32 `[batch, depth]` 0/1 columns, "count" the counts.
      depth: number of columns for the vector modes.
      sparse: the vector modes as a `tf.SparseTensor` `[batch, depth]` of the nonzero
        columns (row-major order), annotated so the transformed schema has a
        `SparseFeature` of size `depth`; its dense form is the dense output.
    """
    if output_mode == "int":
        if sequence_length is None:
            return tf.reshape(ids.flat_values, [-1])
        return ids.to_tensor(default_value=tf.cast(pad_id, ids.dtype),
                             shape=[None, sequence_length])
    ids = tf.cast(ids, tf.int64)
    in_range = tf.ragged.boolean_mask(
        ids, tf.logical_and(ids >= 0, ids < depth))
    if sparse:
        return _sparse_counts(in_range, depth, binary=output_mode != "count")
    counts = tf.math.bincount(in_range, minlength=depth, maxlength=depth, axis=-1,
                              binary_output=output_mode != "count", dtype=tf.float32)
    return tf.ensure_shape(counts, [None, depth])


def _sparse_counts(ids: tf.RaggedTensor, depth: int, binary: bool) -> tf.SparseTensor:
    """In-range ragged ids -> a SparseTensor of each row's distinct ids and their counts
    (1.0 when `binary`), without the dense `[batch, depth]` matrix."""
    # Each (row, id) pair as one int64 key: sorting the distinct keys gives row-major order.
    keys = ids.value_rowids() * depth + ids.flat_values
    distinct, _, counts = tf.unique_with_counts(keys, out_idx=tf.int64)
    order = tf.argsort(distinct)
    distinct = tf.gather(distinct, order)
    values = tf.ones_like(distinct, tf.float32) if binary else tf.cast(
        tf.gather(counts, order), tf.float32)
    vectors = tf.SparseTensor(
        tf.stack([distinct // depth, distinct % depth], axis=1), values,
        tf.stack([ids.nrows(out_type=tf.int64), tf.constant(depth, tf.int64)]))
    return annotate_sparse(vectors, depth)


def annotate_sparse(vectors: tf.SparseTensor, depth: int) -> tf.SparseTensor:
    """Records `vectors` (`[batch, depth]`) as a `SparseFeature` of size `depth` in the
    transformed schema (tft would otherwise write a VarLen feature of the values alone)."""
    tft.experimental.annotate_sparse_output_shape(vectors, tf.constant([depth], tf.int64))
    return vectors


def check_sparse(sparse: bool, output_mode: str) -> None:
    """Raises ValueError unless `sparse` is a bool that the output mode can use."""
    if not isinstance(sparse, bool):
        raise ValueError(f"sparse: expected true or false, got {sparse!r}")
    if sparse and output_mode not in VECTOR_MODES:
        raise ValueError(f"sparse: needs a vector output_mode ({', '.join(VECTOR_MODES)}), "
                         f"got {output_mode!r}")


def check_mode(output_mode: str, multivalent: bool, sequence_length: Optional[int] = None,
               pad=None, pad_option: str = "mask_token") -> None:
    """Raises ValueError when the output mode does not fit the column's shape.

    `one_hot` needs one value per row; `int` on a multivalent column needs a sequence
    length and a padding value (`pad`, the option named `pad_option`, whose id is 0).
    """
    if output_mode == "one_hot" and multivalent:
        raise ValueError("output_mode: one_hot needs a scalar column; use multi_hot")
    if output_mode == "int" and multivalent and (sequence_length is None or pad is None):
        raise ValueError(f"a multivalent column in int mode needs output_sequence_length "
                         f"and a {pad_option} (its id 0 pads the rows)")
