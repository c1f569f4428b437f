"""Rescaling: a fixed `x * scale + offset` (replaces keras.layers.Rescaling)."""

import dataclasses

import tensorflow as tf

from beam_pipeline.features.base import Feature


@dataclasses.dataclass(frozen=True)
class Rescaling(Feature):
    """Multiplies a numeric column by `scale` and adds `offset`, as Keras's Rescaling.

    Options:
      scale: required. offset: default 0.
      impute, fill_value, missing_indicator: see `features.impute` (default: mean).

    Config example:
        features:
          pixel: {kind: rescaling, scale: 0.00392156862745098}

    Output: `<name>`, float32.
    """

    scale: float = None
    offset: float = 0.0

    KIND = "rescaling"
    COLUMN_TYPES = ("float", "int")
    DEFAULT_IMPUTE = "mean"

    def validate(self) -> None:
        for option in ("scale", "offset"):
            value = getattr(self, option)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{option}: expected a number, got {value!r}")

    def transform(self, inputs):
        dense, _, outputs = self.scalar(inputs)
        outputs[self.name] = tf.cast(dense, tf.float32) * self.scale + self.offset
        return outputs
