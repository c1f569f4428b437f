"""Normalization: z-score with full-pass mean and variance (replaces keras.layers.Normalization)."""

import dataclasses

import tensorflow as tf
import tensorflow_transform as tft

from beam_pipeline.features.base import Feature, densify

# Keras divides by max(sqrt(var), epsilon) so a constant column does not divide by zero.
KERAS_EPSILON = 1e-7


@dataclasses.dataclass(frozen=True)
class Normalization(Feature):
    """Standardizes a numeric column: `(x - mean) / max(sqrt(var), 1e-7)`.

    Mean and population variance are computed over every train row that has a value.
    A missing value is imputed with the mean (so it becomes 0.0); with
    `missing_indicator: true` an extra int64 feature `<name>_missing` is 1 on those rows.

    Config example:
        features:
          fare: {kind: normalization, missing_indicator: true}

    Outputs:
      `<name>`: float32 scalar; `<name>_missing`: int64 scalar when asked for.
    """

    missing_indicator: bool = False

    KIND = "normalization"
    COLUMN_TYPES = ("float", "int")

    def validate(self) -> None:
        if not isinstance(self.missing_indicator, bool):
            raise ValueError(f"missing_indicator: expected true or false, "
                             f"got {self.missing_indicator!r}")

    def transform(self, inputs):
        values = tf.cast(inputs[self.column], tf.float32)
        mean = tft.mean(values, name=f"{self.name}_mean")
        var = tft.var(values, name=f"{self.name}_var")
        dense = densify(values, float("nan"))
        missing = tf.math.is_nan(dense)
        filled = tf.where(missing, mean, dense)
        outputs = {self.name: (filled - mean) / tf.maximum(tf.sqrt(var), KERAS_EPSILON)}
        if self.missing_indicator:
            outputs[f"{self.name}_missing"] = tf.cast(missing, tf.int64)
        return outputs
