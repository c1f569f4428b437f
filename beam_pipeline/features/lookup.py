"""StringLookup and IntegerLookup: a categorical column to integer ids with a learned vocabulary."""

import dataclasses
from typing import Optional

from beam_pipeline.features import vocabulary
from beam_pipeline.features.base import Feature, check_positive, densify


@dataclasses.dataclass(frozen=True)
class StringLookup(Feature):
    """Maps a string column to int64 ids (replaces keras.layers.StringLookup, `output_mode="int"`).

    Ids follow Keras: OOV ids `0 .. num_oov_indices-1` first, then the vocabulary in
    count-descending order (ties: token bytes descending). A missing value is OOV.

    Options:
      max_tokens: size of the whole index space, OOV ids included, as in Keras
        (so at most `max_tokens - num_oov_indices` learned tokens). None: no limit.
      min_frequency: drop tokens seen fewer times than this in the train split.
      num_oov_indices: OOV buckets (>= 1); with several, a value goes to
        FarmHash64(value) mod n, as Keras does.

    Config example:
        features:
          city: {kind: string_lookup, max_tokens: 1000, num_oov_indices: 1}

    Output: `<name>`, int64 scalar in `[0, vocabulary size + num_oov_indices)`.
    """

    max_tokens: Optional[int] = None
    min_frequency: Optional[int] = None
    num_oov_indices: int = 1

    KIND = "string_lookup"
    COLUMN_TYPES = ("string",)
    MISSING = ""

    def validate(self) -> None:
        check_positive(self.max_tokens, "max_tokens")
        check_positive(self.min_frequency, "min_frequency")
        check_positive(self.num_oov_indices, "num_oov_indices", allow_none=False)
        if self.max_tokens is not None and self.max_tokens <= self.num_oov_indices:
            raise ValueError(f"max_tokens ({self.max_tokens}) must exceed "
                             f"num_oov_indices ({self.num_oov_indices})")

    def transform(self, inputs):
        raw = inputs[self.column]
        top_k = None if self.max_tokens is None else self.max_tokens - self.num_oov_indices
        # Learned on present values only: a missing cell is not a token.
        vocab = vocabulary.learn(raw, self.name, top_k, self.min_frequency)
        dense = densify(raw, self.MISSING)
        index = vocabulary.apply(dense, vocab, self.name)
        return {self.name: vocabulary.oov_first(index, dense, self.num_oov_indices)}

    def vocabulary_names(self):
        return (self.name,)


@dataclasses.dataclass(frozen=True)
class IntegerLookup(StringLookup):
    """Maps an integer column to int64 ids (replaces keras.layers.IntegerLookup, `output_mode="int"`).

    Same options and id layout as `string_lookup`. With several OOV indices a value goes
    to `value mod n` (Keras's default `oov_method="floormod"`). Ties in the vocabulary
    order are broken by the values' decimal strings, descending (tf.Transform's rule).

    Config example:
        features:
          store_id: {kind: integer_lookup, max_tokens: 50}
    """

    KIND = "integer_lookup"
    COLUMN_TYPES = ("int",)
    MISSING = -1
