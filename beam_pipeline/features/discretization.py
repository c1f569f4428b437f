"""Discretization: numeric values to bucket ids (replaces keras.layers.Discretization)."""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

from beam_pipeline.features import lazy
from beam_pipeline.features.base import Feature, check_choice, check_positive

tf = lazy.module("tensorflow")
tft = lazy.module("tensorflow_transform")
keras_quantiles = lazy.module("beam_pipeline.features.keras_quantiles")

# How `num_bins` boundaries are learned: "keras" is Keras's adapt() (features/keras_quantiles),
# "tft_quantiles" tf.Transform's quantile sketch (the project's rule before Keras parity).
METHODS = ("keras", "tft_quantiles")


@dataclasses.dataclass(frozen=True)
class Discretization(Feature):
    """Buckets a numeric column: bucket i holds `b[i-1] <= x < b[i]`, NaN the last one.

    Either `bin_boundaries` are given, or `num_bins` boundaries are learned from the train
    split's present values. By default (`method: keras`) they are the boundaries Keras's
    `Discretization(num_bins=, epsilon=).adapt()` learns, by Keras's own algorithm run as
    a full-pass analyzer (`features.keras_quantiles`): with at most
    `keras_quantiles.PENDING_VALUES` (65,536) values, bit-identical to adapting one array
    of them; beyond, Keras's algorithm over batches that large, each boundary within
    `epsilon` (in rank) of the exact quantile. As in Keras, data with few distinct summary
    entries gets fewer than `num_bins - 1` boundaries (`[0, 1, 5]` with 5 bins: `[0, 1]`).
    `method: tft_quantiles` learns tf.Transform's quantiles 1/n .. (n-1)/n instead
    (always `num_bins - 1` boundaries, within `epsilon * rows` ranks; not Keras's values).

    Options:
      bin_boundaries: sorted boundaries, or
      num_bins: number of buckets to learn, with epsilon: Keras's `epsilon` (default
        0.01; for `tft_quantiles` the sketch's rank error), and method: "keras"
        (default) or "tft_quantiles".
      impute, fill_value, missing_indicator: see `features.impute`. Without impute a
        missing cell is NaN and lands in the last bucket, Keras's rule for NaN.

    Config example:
        features:
          age_bucket: {kind: discretization, column: age, num_bins: 10}

    Output: `<name>`, int64 in [0, number of boundaries] (Keras gives int32); `[length]`
    for a vector column (absent positions are NaN: the last bucket).
    """

    bin_boundaries: Optional[Sequence[float]] = None
    num_bins: Optional[int] = None
    epsilon: float = 0.01
    method: str = "keras"

    KIND = "discretization"
    COLUMN_TYPES = ("float", "int")
    MULTIVALENT = True  # a fixed-length vector: one set of boundaries for all positions

    def validate(self) -> None:
        self.check_vector()
        if (self.bin_boundaries is None) == (self.num_bins is None):
            raise ValueError("give exactly one of bin_boundaries and num_bins")
        if self.bin_boundaries is not None:
            b = self.bin_boundaries
            if (not isinstance(b, (list, tuple)) or not b
                    or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in b)):
                raise ValueError(f"bin_boundaries: expected a list of numbers, got {b!r}")
            if list(b) != sorted(b):
                raise ValueError(f"bin_boundaries: must be sorted, got {b!r}")
        else:
            check_positive(self.num_bins, "num_bins", allow_none=False)
            if self.num_bins < 2:
                raise ValueError(f"num_bins: expected at least 2, got {self.num_bins}")
        if not isinstance(self.epsilon, (int, float)) or not 0 < self.epsilon < 1:
            raise ValueError(f"epsilon: expected a number in (0, 1), got {self.epsilon!r}")
        check_choice(self.method, "method", METHODS)
        if self.bin_boundaries is not None and self.method != "keras":
            raise ValueError("method: only with num_bins (bin_boundaries are given)")

    def learns(self):
        given = self.bin_boundaries is not None
        return (() if given else ("bin boundaries",)) + super().learns()

    def boundaries(self, x: tf.Tensor, missing: tf.Tensor) -> tf.Tensor:
        """The boundaries (any shape, in order), given or learned from the present values."""
        if self.bin_boundaries is not None:
            return tf.constant([list(self.bin_boundaries)], tf.float32)
        present = tf.boolean_mask(x, tf.logical_not(missing))
        if self.method == "tft_quantiles":
            return tft.quantiles(present, self.num_bins, self.epsilon,
                                 name=f"{self.name}_quantiles")
        return keras_quantiles.bin_boundaries(present, self.num_bins, self.epsilon,
                                              name=f"{self.name}_keras_quantiles")

    def transform(self, inputs):
        x, missing, outputs = self.numbers(inputs)
        if self.impute is None:
            x = tf.where(missing, float("nan"), x)  # an int column's placeholder is not NaN
        boundaries = tf.reshape(self.boundaries(x, missing), [-1])
        # searchsorted "right" is Keras's digitize rule; NaN sorts past every boundary.
        buckets = tf.reshape(tf.searchsorted(boundaries, tf.reshape(x, [-1]), side="right",
                                             out_type=tf.int64), tf.shape(x))
        buckets = tf.where(tf.math.is_nan(x), tf.size(boundaries, out_type=tf.int64), buckets)
        outputs[self.name] = buckets
        return outputs

    def id_space(self, vocabulary_size):
        if self.multivalent:
            return None  # a vector of buckets: the model reads it as numbers
        return (self.num_bins if self.bin_boundaries is None
                else len(self.bin_boundaries) + 1)
