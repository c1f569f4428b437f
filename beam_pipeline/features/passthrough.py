"""Passthrough: a numeric column copied unchanged (an id, or a feature already scaled)."""

from __future__ import annotations

import dataclasses

from beam_pipeline.features import lazy
from beam_pipeline.features.base import Feature

tf = lazy.module("tensorflow")


@dataclasses.dataclass(frozen=True)
class Passthrough(Feature):
    """Copies a column as is (Keras FeatureSpace's `float`/`integer` identity), e.g. an id.

    A string column (a key, a file path) is written for joins and debugging; the model
    leaves string features out.

    Options:
      impute, fill_value, missing_indicator: see `features.impute`; without impute a
        missing cell becomes 0 (numbers) or "" (strings).

    Config example:
        features:
          id: {kind: passthrough}

    Output: `<name>`, int64, float32 or string, as the column.
    """

    KIND = "passthrough"
    COLUMN_TYPES = ("float", "int", "string")

    def transform(self, inputs):
        dense, _, outputs = self.scalar(inputs, default="" if self.dtype == tf.string else 0)
        outputs[self.name] = tf.cast(dense, self.dtype)
        return outputs
