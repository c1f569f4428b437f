"""The label: passed through as a number, or a string/int class looked up to a class id."""

from __future__ import annotations

import dataclasses

from beam_pipeline.features import lazy, vocabulary
from beam_pipeline.features.base import Feature, densify

tf = lazy.module("tensorflow")


@dataclasses.dataclass(frozen=True)
class Label(Feature):
    """The label column, written under its own name.

    kind "passthrough": an int column stays int64, a float column float32.
    kind "string_lookup": classes get ids 0..C-1 in count-descending order (ties:
    bytes descending), as `keras.layers.StringLookup(num_oov_indices=0)` would give.

    A row without a label never gets here: the readers set it aside as `missing_label`,
    unless the config gives `label.fill_value`, which then stands in for it (and, for
    string_lookup, counts as a class). An eval row whose class no train row has is set
    aside as `unseen_label` before the transform (see `sources.label_classes`), so every
    written class id is in 0..C-1.
    """

    kind: str = "passthrough"

    def transform(self, inputs):
        raw = inputs[self.column]
        if self.kind == "passthrough":
            dtype = tf.float32 if self.column_type == "float" else tf.int64
            fill = 0 if self.fill_value is None else self.fill_value
            return {self.name: densify(tf.cast(raw, dtype), tf.constant(fill, dtype))}
        if self.fill_value is None:
            vocab = vocabulary.learn(raw, self.name, top_k=None, min_frequency=None)
            missing = "" if raw.dtype == tf.string else -1
            return {self.name: vocabulary.apply(densify(raw, missing), vocab, self.name)}
        dense = densify(raw, self.fill_value)
        vocab = vocabulary.learn(dense, self.name, top_k=None, min_frequency=None)
        return {self.name: vocabulary.apply(dense, vocab, self.name)}

    def learns(self):
        return ("classes",) if self.kind == "string_lookup" else ()

    def vocabulary_names(self):
        return (self.name,) if self.kind == "string_lookup" else ()
