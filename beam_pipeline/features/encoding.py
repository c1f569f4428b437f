"""Keras's output modes for integer ids: `int`, `one_hot`, `multi_hot`, `count`.

Shared by the lookups, hashing, crossing, text and category encoding kinds so that every
kind encodes ids exactly as Keras's CategoryEncoding does (ids outside `[0, depth)` are
dropped).
"""

from __future__ import annotations

from typing import Optional

from beam_pipeline.features import lazy

tf = lazy.module("tensorflow")

MODES = ("int", "one_hot", "multi_hot", "count")


def encode(ids: tf.RaggedTensor, output_mode: str, depth: Optional[int] = None,
           sequence_length: Optional[int] = None, pad_id: int = 0) -> tf.Tensor:
    """Ragged `[batch, (ids)]` int64 -> the dense output tf.Transform writes.

    Args:
      ids: each row's ids, in order.
      output_mode: "int" keeps the ids: one per row as `[batch]` when `sequence_length` is
        None, else `[batch, sequence_length]` truncated at the end and padded with `pad_id`.
        "one_hot"/"multi_hot" give float32 `[batch, depth]` 0/1 columns, "count" the counts.
      depth: number of columns for the vector modes.
    """
    if output_mode == "int":
        if sequence_length is None:
            return tf.reshape(ids.flat_values, [-1])
        return ids.to_tensor(default_value=tf.cast(pad_id, ids.dtype),
                             shape=[None, sequence_length])
    ids = tf.cast(ids, tf.int64)
    in_range = tf.ragged.boolean_mask(
        ids, tf.logical_and(ids >= 0, ids < depth))
    counts = tf.math.bincount(in_range, minlength=depth, maxlength=depth, axis=-1,
                              binary_output=output_mode != "count", dtype=tf.float32)
    return tf.ensure_shape(counts, [None, depth])


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
