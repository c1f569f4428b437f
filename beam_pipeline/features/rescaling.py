"""Rescaling: a fixed `x * scale + offset` (replaces keras.layers.Rescaling)."""

from __future__ import annotations

import dataclasses

from beam_pipeline.features import lazy, moments
from beam_pipeline.features.base import Feature

tf = lazy.module("tensorflow")


@dataclasses.dataclass(frozen=True)
class Rescaling(Feature):
    """Multiplies a numeric column by `scale` and adds `offset`, as Keras's Rescaling.

    Options:
      scale: required. offset: default 0.
      impute, fill_value, missing_indicator: see `features.impute` (default: mean).

    Config example:
        features:
          pixel: {kind: rescaling, scale: 0.00392156862745098}

    Output: `<name>`, float32 (`[length]` for a vector column; absent positions get the
    mean of all present ones).
    """

    scale: float = None
    offset: float = 0.0

    KIND = "rescaling"
    COLUMN_TYPES = ("float", "int")
    DEFAULT_IMPUTE = "mean"
    MULTIVALENT = True  # a fixed-length vector is rescaled position by position

    def validate(self) -> None:
        self.check_vector()
        for option in ("scale", "offset"):
            value = getattr(self, option)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{option}: expected a number, got {value!r}")

    def transform(self, inputs):
        x, missing, outputs = self.numbers(inputs)
        if self.multivalent:  # a vector's gaps: the mean of every present position
            x = tf.where(missing, moments.mean(tf.boolean_mask(x, tf.logical_not(missing)),
                                               name=f"{self.name}_gap_mean"), x)
        outputs[self.name] = x * self.scale + self.offset
        return outputs
