"""MinMax: linear scaling from the train split's range (Keras Rescaling with learned scale)."""

from __future__ import annotations

import dataclasses

from beam_pipeline.features import lazy, moments
from beam_pipeline.features.base import Feature

tf = lazy.module("tensorflow")
tft = lazy.module("tensorflow_transform")


@dataclasses.dataclass(frozen=True)
class MinMax(Feature):
    """Scales a numeric column linearly so the train split's range maps to a target range.

    `x * scale + offset` with `scale = (output_max - output_min) / (max - min)` and
    `offset = output_min - min * scale`: keras.layers.Rescaling(scale, offset) with the
    scale learned. A constant train column maps every value to the range's midpoint.

    Options:
      output_min, output_max: the target range (default [0, 1]).
      clip: clip the result to the target range (default true), for values outside
        the train range.
      log1p: scale `log1p(x)` instead of `x` (its min and max are learned).
      impute, fill_value, missing_indicator: see `features.impute` (default: mean).

    Config example:
        features:
          income: {kind: min_max, log1p: true}

    Output: `<name>`, float32 (`[length]` for a vector column, scaled by one min and max
    over all its positions; absent positions get the mean).
    """

    output_min: float = 0.0
    output_max: float = 1.0
    clip: bool = True
    log1p: bool = False

    KIND = "min_max"
    COLUMN_TYPES = ("float", "int")
    DEFAULT_IMPUTE = "mean"
    MULTIVALENT = True  # a fixed-length vector: one min and max over all positions

    def validate(self) -> None:
        for option in ("output_min", "output_max"):
            value = getattr(self, option)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{option}: expected a number, got {value!r}")
        self.check_vector()
        if self.output_min >= self.output_max:
            raise ValueError(f"output_min ({self.output_min}) must be below "
                             f"output_max ({self.output_max})")
        for option in ("clip", "log1p"):
            if not isinstance(getattr(self, option), bool):
                raise ValueError(f"{option}: expected true or false")

    def learns(self):
        return ("min and max",) + super().learns()

    def transform(self, inputs):
        x, missing, outputs = self.numbers(inputs)
        if self.log1p:
            x = tf.math.log1p(x)
        present = tf.boolean_mask(x, tf.logical_not(missing))
        low = tft.min(present, name=f"{self.name}_min")
        high = tft.max(present, name=f"{self.name}_max")
        if self.multivalent:  # a vector's gaps: the mean of every present position
            x = tf.where(missing, moments.mean(present, name=f"{self.name}_gap_mean"), x)
        width = self.output_max - self.output_min
        constant = tf.less_equal(high, low)
        scale = tf.where(constant, 0.0, width / tf.where(constant, 1.0, high - low))
        offset = tf.where(constant, self.output_min + width / 2, self.output_min - low * scale)
        scaled = x * scale + offset
        if self.clip:
            scaled = tf.clip_by_value(scaled, float(self.output_min), float(self.output_max))
        outputs[self.name] = scaled
        return outputs
