"""Hashing: values to a fixed number of bins (replaces keras.layers.Hashing)."""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence, Union

from beam_pipeline.features import encoding, lazy
from beam_pipeline.features.base import Feature, check_choice, check_positive

tf = lazy.module("tensorflow")


def hash_values(values: tf.Tensor, num_bins: int, salt=None, mask_value=None) -> tf.Tensor:
    """Keras's Hashing on flat values: ints hash as decimal text, floats truncate to ints.

    FarmHash64 mod n, or SipHash keyed by `salt` (an int s means the key [s, s]); with a
    `mask_value`, that value is bin 0 and the others `1 + h mod (n - 1)`.
    """
    text = values
    if values.dtype.is_floating:
        text = tf.cast(values, tf.int64)
    if text.dtype != tf.string:
        text = tf.strings.as_string(text)
    bins = num_bins - 1 if mask_value is not None else num_bins
    if salt is None:
        hashed = tf.strings.to_hash_bucket_fast(text, bins)
    else:
        key = [salt, salt] if isinstance(salt, int) else list(salt)
        hashed = tf.strings.to_hash_bucket_strong(text, bins, key)
    if mask_value is None:
        return hashed
    return tf.where(tf.equal(values, tf.cast(mask_value, values.dtype)),
                    tf.constant(0, tf.int64), hashed + 1)


@dataclasses.dataclass(frozen=True)
class Hashing(Feature):
    """Hashes a string, int or float column into `num_bins` bins, as Keras's Hashing.

    Options:
      num_bins: number of bins (mask bin included).
      salt: an int or two ints: SipHash with that key instead of FarmHash64.
      mask_value: a value that goes to bin 0; the others to `1 + h mod (num_bins - 1)`.
      output_mode: "int", "one_hot" (scalar column), "multi_hot", "count".
      output_sequence_length: a multivalent column in int mode: bins per row, padded
        with the mask bin 0 (so a mask_value is needed).
      sparse: write the vector modes as sparse features (indices and values of the
        nonzero columns; Keras's `sparse=True`); `Output.dataset` and the served model
        still give the dense vectors.
      impute, fill_value, missing_indicator: see `features.impute`; without impute a
        missing scalar hashes as "" (strings) or 0 (numbers).

    Config example:
        features:
          user_bucket: {kind: hashing, column: user_id, num_bins: 1024}

    Output: `<name>`: int64 bin, or float32 `[num_bins]` in the vector modes.
    """

    num_bins: int = None
    salt: Optional[Union[int, Sequence[int]]] = None
    mask_value: Optional[Union[str, int, float]] = None
    output_mode: str = "int"
    output_sequence_length: Optional[int] = None
    sparse: bool = False

    KIND = "hashing"
    COLUMN_TYPES = ("string", "int", "float")
    MULTIVALENT = True

    def validate(self) -> None:
        check_positive(self.num_bins, "num_bins", allow_none=False)
        check_positive(self.output_sequence_length, "output_sequence_length")
        check_choice(self.output_mode, "output_mode", encoding.MODES)
        encoding.check_sparse(self.sparse, self.output_mode)
        if self.mask_value is not None and self.num_bins < 2:
            raise ValueError("num_bins: needs at least 2 with a mask_value")
        salt = [self.salt] if isinstance(self.salt, int) else self.salt
        if salt is not None and (not isinstance(salt, (list, tuple)) or len(salt) not in (1, 2)
                                 or not all(isinstance(s, int) for s in salt)):
            raise ValueError(f"salt: expected an int or two ints, got {self.salt!r}")
        encoding.check_mode(self.output_mode, self.multivalent, self.output_sequence_length,
                            self.mask_value, "mask_value")

    def transform(self, inputs):
        extra = {}
        if self.multivalent:
            values = self.values(inputs)
        else:
            dense, _, extra = self.scalar(inputs, default="" if self.dtype == tf.string else 0)
            values = tf.RaggedTensor.from_tensor(dense[:, tf.newaxis])
        bins = values.with_flat_values(
            hash_values(values.flat_values, self.num_bins, self.salt, self.mask_value))
        extra[self.name] = encoding.encode(
            bins, self.output_mode, depth=self.num_bins,
            sequence_length=self.output_sequence_length if self.multivalent else None,
            sparse=self.sparse)
        return extra

    def id_space(self, vocabulary_size):
        return self.num_bins if self.output_mode == "int" else None
