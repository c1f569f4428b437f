"""Passthrough: a numeric column copied unchanged (an id, or a feature already scaled)."""

import dataclasses

import tensorflow as tf

from beam_pipeline.features.base import Feature


@dataclasses.dataclass(frozen=True)
class Passthrough(Feature):
    """Copies an int or float column as is (Keras FeatureSpace's `float`/`integer` identity).

    Options:
      impute, fill_value, missing_indicator: see `features.impute`; without impute a
        missing cell becomes 0.

    Config example:
        features:
          id: {kind: passthrough}

    Output: `<name>`, int64 for an int column, float32 for a float column.
    """

    KIND = "passthrough"
    COLUMN_TYPES = ("float", "int")

    def transform(self, inputs):
        dense, _, outputs = self.scalar(inputs, default=0)
        outputs[self.name] = tf.cast(dense, self.dtype)
        return outputs
