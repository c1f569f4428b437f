"""Passthrough: a numeric column copied unchanged (an id, or a feature already scaled)."""

import dataclasses

import tensorflow as tf

from beam_pipeline.features.base import Feature, densify


@dataclasses.dataclass(frozen=True)
class Passthrough(Feature):
    """Copies an int or float column as is (Keras FeatureSpace's `float`/`integer` identity).

    Options:
      default: the value written where the cell is missing (default 0).

    Config example:
        features:
          id: {kind: passthrough}

    Output: `<name>`, int64 for an int column, float32 for a float column.
    """

    default: float = 0

    KIND = "passthrough"
    COLUMN_TYPES = ("float", "int")

    def validate(self) -> None:
        if isinstance(self.default, bool) or not isinstance(self.default, (int, float)):
            raise ValueError(f"default: expected a number, got {self.default!r}")

    def transform(self, inputs):
        dtype = tf.float32 if self.column_type == "float" else tf.int64
        default = tf.cast(self.default, dtype)
        return {self.name: densify(tf.cast(inputs[self.column], dtype), default)}
