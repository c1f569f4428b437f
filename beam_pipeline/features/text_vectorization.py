"""TextVectorization: free text to token ids or token vectors with a learned vocabulary."""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence, Union

from beam_pipeline.features import encoding, lazy, packing, vocabulary
from beam_pipeline.features.base import Feature, check_choice, check_positive, densify

tf = lazy.module("tensorflow")
tft = lazy.module("tensorflow_transform")

# Exactly keras.layers.TextVectorization's DEFAULT_STRIP_REGEX: Python's string.punctuation.
KERAS_STRIP_REGEX = r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']'
STANDARDIZE = ("lower_and_strip_punctuation", "lower", "strip_punctuation", "none")
SPLIT = ("whitespace", "character", "none")
OUTPUT_MODES = ("int", "multi_hot", "count", "tf_idf")
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


def split(text: tf.Tensor, mode: str) -> tf.RaggedTensor:
    """Keras's split step: ASCII whitespace, Unicode code points, or the whole text."""
    if mode == "whitespace":
        return tf.strings.split(text)
    if mode == "character":
        return tf.strings.unicode_split(text, "UTF-8")
    return tf.RaggedTensor.from_tensor(text[:, tf.newaxis])


def ngram_widths(ngrams) -> Optional[Sequence[int]]:
    """Keras's meaning: an int n is widths 1..n, a list or tuple the exact widths."""
    if ngrams is None:
        return None
    if isinstance(ngrams, int):
        return tuple(range(1, ngrams + 1))
    return tuple(ngrams)


def keras_idf(document_frequency: tf.Tensor, documents: tf.Tensor) -> tf.Tensor:
    """`ln(1 + N / (1 + df))` in float64 (as Keras computes it in NumPy), then float32."""
    df = tf.cast(document_frequency, tf.float64)
    return tf.cast(tf.math.log(1.0 + tf.cast(documents, tf.float64) / (1.0 + df)), tf.float32)


@dataclasses.dataclass(frozen=True)
class TextVectorization(Feature):
    """Text to token ids or token vectors (replaces keras.layers.TextVectorization).

    Steps, as Keras: standardize, split, n-grams, look up in a vocabulary of the most
    frequent tokens of the train split (count descending, ties by bytes descending; the
    literal "[UNK]" is never counted), encode. A missing text is empty.

    Options:
      max_tokens: size of the index space with its special entries: padding and OOV in
        `int` mode, OOV in the others. Needed by the vector modes, which give `max_tokens`
        columns (Keras's `pad_to_max_tokens=True`).
      min_frequency: drop tokens seen fewer times than this.
      standardize: "lower_and_strip_punctuation" (default), "lower", "strip_punctuation",
        "none". Lower-casing is ASCII only, and only ASCII punctuation is deleted.
      split: "whitespace" (ASCII whitespace, default), "character" (code points), "none".
      ngrams: an int n (widths 1..n) or a list of exact widths ([1, 3]: widths 1 and 3).
      output_mode: "int" (0 padding, 1 OOV, tokens from 2, `[output_sequence_length]`),
        "multi_hot", "count", "tf_idf" (column 0 OOV, tokens from 1). tf_idf is
        count x `ln(1 + N / (1 + df))` over the train rows; OOV gets the mean idf.
      output_sequence_length: int mode's sequence length (default 32).
      sparse: write the vector modes as sparse features (the nonzero columns' indices and
        values; Keras's `sparse=True`). For a large `max_tokens` the TFRecords shrink by
        about the share of zero columns; `Output.dataset` and the served model give the
        same dense `[max_tokens]` float32 vectors either way.

    Config example:
        features:
          review: {kind: text_vectorization, max_tokens: 20000, output_sequence_length: 64}
          title: {kind: text_vectorization, max_tokens: 5000, ngrams: 2, output_mode: tf_idf}
          body: {kind: text_vectorization, max_tokens: 50000, output_mode: tf_idf, sparse: true}
    """

    max_tokens: Optional[int] = None
    output_sequence_length: int = 32
    standardize: str = "lower_and_strip_punctuation"
    split: str = "whitespace"
    ngrams: Optional[Union[int, Sequence[int]]] = None
    output_mode: str = "int"
    min_frequency: Optional[int] = None
    sparse: bool = False

    KIND = "text_vectorization"
    COLUMN_TYPES = ("string",)

    def validate(self) -> None:
        check_positive(self.max_tokens, "max_tokens")
        check_positive(self.min_frequency, "min_frequency")
        check_positive(self.output_sequence_length, "output_sequence_length", allow_none=False)
        check_choice(self.standardize, "standardize", STANDARDIZE)
        check_choice(self.split, "split", SPLIT)
        check_choice(self.output_mode, "output_mode", OUTPUT_MODES)
        encoding.check_sparse(self.sparse, self.output_mode)
        if self.ngrams is not None:
            widths = [self.ngrams] if isinstance(self.ngrams, int) else self.ngrams
            if not isinstance(widths, (list, tuple)) or not widths:
                raise ValueError(f"ngrams: expected an int or a list of ints, got {self.ngrams!r}")
            for width in widths:
                check_positive(width, "ngrams")
        if self.max_tokens is not None and self.max_tokens <= self._reserved():
            raise ValueError(f"max_tokens: must exceed {self._reserved()} "
                             f"(the special entries), got {self.max_tokens}")
        if self.output_mode != "int" and self.max_tokens is None:
            raise ValueError(f"max_tokens: required with output_mode {self.output_mode!r} "
                             f"(it is the number of output columns)")

    def _reserved(self) -> int:
        return 2 if self.output_mode == "int" else 1

    def tokens(self, inputs) -> tf.RaggedTensor:
        """The `[batch, (tokens)]` strings after standardize, split and n-grams."""
        text = standardize(densify(inputs[self.column], ""), self.standardize)
        tokens = split(text, self.split)
        widths = ngram_widths(self.ngrams)
        if widths:
            tokens = tf.strings.ngrams(tokens, ngram_width=widths, separator=" ")
        return tokens

    def _counted(self, tokens: tf.RaggedTensor):
        """The tokens counted into the vocabulary (all but the OOV token), and top_k."""
        counted = tf.ragged.boolean_mask(tokens, tf.not_equal(tokens, OOV_TOKEN))
        top_k = None if self.max_tokens is None else self.max_tokens - self._reserved()
        return counted, top_k

    def plan(self, inputs, pack):
        tokens = self.tokens(inputs)
        counted, top_k = self._counted(tokens)
        pack.keep(self.name, (tokens, counted, top_k))
        if self.output_mode != "tf_idf":  # its vocabulary counts documents too: learns alone
            vocabulary.plan(pack, counted, self.name, top_k, self.min_frequency)

    def transform(self, inputs):
        kept = packing.kept(self.name)
        if kept is None:
            tokens = self.tokens(inputs)
            kept = (tokens,) + self._counted(tokens)
        tokens, counted, top_k = kept
        if self.output_mode == "tf_idf":
            vocab, df_path = vocabulary.learn_with_document_frequencies(
                counted, self.name, top_k, self.min_frequency)
        else:
            vocab = vocabulary.learn(counted, self.name, top_k, self.min_frequency)
        index = vocabulary.apply(tokens, vocab, self.name)
        # On the flat values: tf.where's ragged dispatch takes ~0.5 s to trace per call,
        # which a 1,000-feature config pays once per feature and tft phase.
        flat = index.flat_values
        if self.output_mode == "int":
            ids = index.with_flat_values(
                tf.where(flat < 0, tf.constant(OOV_ID, tf.int64), flat + 2))
            length = self.output_sequence_length
            return {self.name: ids.to_tensor(default_value=PAD_ID, shape=[None, length])}
        ids = index.with_flat_values(tf.where(flat < 0, tf.constant(0, tf.int64), flat + 1))
        mode = "count" if self.output_mode == "tf_idf" else self.output_mode
        vectors = encoding.encode(ids, mode, depth=self.max_tokens, sparse=self.sparse)
        if self.output_mode != "tf_idf":
            return {self.name: vectors}
        idf = self._idf(df_path, top_k, ids)
        if self.sparse:
            weighted = tf.SparseTensor(vectors.indices, vectors.values * tf.gather(
                idf, vectors.indices[:, 1]), vectors.dense_shape)
            return {self.name: encoding.annotate_sparse(weighted, self.max_tokens)}
        return {self.name: vectors * idf}

    def _idf(self, df_path, top_k: int, ids: tf.RaggedTensor) -> tf.Tensor:
        """Keras's idf weights, `[max_tokens]`, from the document frequencies counted with
        the vocabulary (one analysis phase) and the number of train rows."""
        # Column 0 is OOV, whose frequency is unused (it gets the mean idf).
        df = tf.concat([tf.zeros([1], tf.int64), vocabulary.document_frequencies(
            df_path, top_k, self.name)], axis=0)
        documents = tft.size(ids.row_lengths(), name=f"{self.name}_documents")
        idf = keras_idf(df, documents)
        learned = tf.concat([[False], df[1:] > 0], axis=0)  # every kept token has df >= 1
        mean = tf.math.divide_no_nan(tf.reduce_sum(tf.where(learned, idf, 0.0)),
                                     tf.reduce_sum(tf.cast(learned, tf.float32)))
        # Column 0 (OOV) gets the mean; columns past the vocabulary stay 0 as Keras pads.
        return tf.where(learned, idf, 0.0) + tf.one_hot(0, tf.shape(idf)[0]) * mean

    def learns(self):
        return ("vocabulary",) + super().learns()

    def vocabulary_names(self):
        return (self.name,)

    def id_space(self, vocabulary_size):
        return vocabulary_size + 2 if self.output_mode == "int" else None
