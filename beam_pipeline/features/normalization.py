"""Normalization: z-score with full-pass mean and variance (replaces keras.layers.Normalization)."""

from __future__ import annotations

import dataclasses
from typing import Optional

from beam_pipeline.features import lazy, moments, packing
from beam_pipeline.features.base import Feature

tf = lazy.module("tensorflow")

# Keras divides by max(sqrt(var), epsilon) so a constant column does not divide by zero.
KERAS_EPSILON = 1e-7


@dataclasses.dataclass(frozen=True)
class Normalization(Feature):
    """Standardizes a numeric column: `(x - mean) / max(sqrt(var), 1e-7)`.

    Mean and population variance are computed over the train split's present values
    (a missing cell or NaN is not a value; Keras would turn its statistics into NaN).
    Missing cells are imputed (default: the mean, so they become 0.0).

    Options:
      axis: for a vector column (`length` set): -1 (default, Keras's) keeps one mean and
        variance per position; null pools every position into one.
      invert: map standardized values back: `mean + x * max(sqrt(var), 1e-7)`.
      impute, fill_value, missing_indicator: see `features.impute`.

    Config example:
        features:
          fare: {kind: normalization, missing_indicator: true}
          embedding: {kind: normalization, axis: -1}   # a column with separator and length

    Outputs: `<name>`: float32 scalar, or `[length]` for a vector column;
    `<name>_missing`: int64, when asked for.
    """

    axis: Optional[int] = -1
    invert: bool = False

    KIND = "normalization"
    COLUMN_TYPES = ("float", "int")
    MULTIVALENT = True

    def validate(self) -> None:
        if self.axis not in (-1, None):
            raise ValueError(f"axis: expected -1 or null, got {self.axis!r}")
        if not isinstance(self.invert, bool):
            raise ValueError(f"invert: expected true or false, got {self.invert!r}")
        if self.multivalent and self.length is None:
            raise ValueError(f"column {self.column!r} needs a `length` to be normalized "
                             f"per position")

    def learns(self):
        return ("mean and variance",) + super().learns()

    def _scale(self, x, mean, var):
        std = tf.maximum(tf.sqrt(var), KERAS_EPSILON)
        return mean + x * std if self.invert else (x - mean) / std

    def plan(self, inputs, pack):
        if self.multivalent:  # a vector learns one mean and variance per position
            return
        # The moments are of the present values, so they need no imputation: the plan
        # reads the values before it, and packs whatever the impute option.
        dense, missing = self.present(inputs)
        pack.keep(self.name, (dense, missing))
        pack.add_moments(self.name, tf.cast(dense, tf.float32), missing)

    def transform(self, inputs):
        if self.multivalent:
            return {self.name: self._vector(inputs)}
        dense, missing, outputs = self.scalar(inputs, present=packing.kept(self.name))
        x = tf.cast(dense, tf.float32)
        pack = packing.active()
        packed = pack.moments(self.name) if pack is not None else None
        if packed is not None:
            mean, var = packed
        else:
            # The float32 values the transform standardizes (as the packed plan's), in
            # float64 from there on (features/moments).
            present = tf.boolean_mask(x, tf.logical_not(missing))
            mean, var = moments.mean_and_var(present, name=f"{self.name}_moments")
        if self.impute is None:  # the default, mean imputation, reuses the mean above
            x = tf.where(missing, mean, x)
        outputs[self.name] = self._scale(x, mean, var)
        return outputs

    def _vector(self, inputs) -> tf.Tensor:
        """`[batch, length]` per position (axis -1) or pooled (axis null); gaps get the mean."""
        dense = tf.cast(self.values(inputs), tf.float32).to_tensor(
            default_value=float("nan"), shape=[None, self.length])
        present = tf.logical_not(tf.math.is_nan(dense))
        if self.axis is None:
            values = tf.boolean_mask(dense, present)
            mean, var = moments.mean_and_var(values, name=f"{self.name}_moments")
        else:
            # One statistic per position: a sparse tensor leaves the gaps out of it.
            sparse = tf.SparseTensor(tf.where(present), tf.boolean_mask(dense, present),
                                     tf.shape(dense, out_type=tf.int64))
            mean, var = moments.mean_and_var(sparse, reduce_instance_dims=False,
                                             name=f"{self.name}_moments")
        filled = tf.where(present, dense, mean + tf.zeros_like(dense))
        return self._scale(filled, mean, var)
