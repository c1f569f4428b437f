"""TextVectorization: free text to padded token-id sequences with a learned vocabulary."""

import dataclasses
from typing import Optional

import tensorflow as tf

from beam_pipeline.features import vocabulary
from beam_pipeline.features.base import Feature, check_positive, densify

# Exactly keras.layers.TextVectorization's DEFAULT_STRIP_REGEX: Python's string.punctuation.
KERAS_STRIP_REGEX = r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']'
STANDARDIZE = ("lower_and_strip_punctuation", "lower", "strip_punctuation", "none")
PAD_ID = 0
OOV_ID = 1
OOV_TOKEN = "[UNK]"


def standardize(text: tf.Tensor, mode: str) -> tf.Tensor:
    """Keras's standardize step: ASCII lower-casing and/or deleting ASCII punctuation."""
    if mode in ("lower", "lower_and_strip_punctuation"):
        text = tf.strings.lower(text)
    if mode in ("strip_punctuation", "lower_and_strip_punctuation"):
        text = tf.strings.regex_replace(text, KERAS_STRIP_REGEX, "")
    return text


@dataclasses.dataclass(frozen=True)
class TextVectorization(Feature):
    """Text to a fixed-length int64 id sequence (replaces keras.layers.TextVectorization, "int" mode).

    Steps, as Keras: standardize, split on ASCII whitespace, look up in a vocabulary of
    the most frequent tokens of the train split. Id 0 is padding, id 1 is OOV, learned
    tokens start at 2. Sequences are truncated at the end or padded with 0 to
    `output_sequence_length`. A missing or empty text is all padding. The literal
    token "[UNK]" is not counted, as in Keras.

    Options:
      max_tokens: size of the index space including padding and OOV (so at most
        `max_tokens - 2` learned tokens). None: no limit.
      output_sequence_length: length of every output sequence (default 32).
      standardize: one of "lower_and_strip_punctuation" (default), "lower",
        "strip_punctuation", "none".
      min_frequency: drop tokens seen fewer times than this.

    Config example:
        features:
          review: {kind: text_vectorization, max_tokens: 20000, output_sequence_length: 64}

    Output: `<name>`, int64 of shape [output_sequence_length].
    """

    max_tokens: Optional[int] = None
    output_sequence_length: int = 32
    standardize: str = "lower_and_strip_punctuation"
    min_frequency: Optional[int] = None

    KIND = "text_vectorization"
    COLUMN_TYPES = ("string",)

    def validate(self) -> None:
        check_positive(self.max_tokens, "max_tokens")
        check_positive(self.min_frequency, "min_frequency")
        check_positive(self.output_sequence_length, "output_sequence_length", allow_none=False)
        if self.max_tokens is not None and self.max_tokens <= 2:
            raise ValueError(f"max_tokens: must exceed 2 (padding and OOV), got {self.max_tokens}")
        if self.standardize not in STANDARDIZE:
            raise ValueError(f"standardize: expected one of {STANDARDIZE}, got {self.standardize!r}")

    def transform(self, inputs):
        text = standardize(densify(inputs[self.column], ""), self.standardize)
        tokens = tf.strings.split(text)
        counted = tf.ragged.boolean_mask(tokens, tf.not_equal(tokens, OOV_TOKEN))
        top_k = None if self.max_tokens is None else self.max_tokens - 2
        vocab = vocabulary.learn(counted, self.name, top_k, self.min_frequency)
        index = vocabulary.apply(tokens, vocab, self.name)
        ids = tf.where(index < 0, tf.cast(OOV_ID, tf.int64), index + 2)
        length = self.output_sequence_length
        return {self.name: ids.to_tensor(default_value=PAD_ID, shape=[None, length])}

    def vocabulary_names(self):
        return (self.name,)
