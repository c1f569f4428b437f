"""The vocabulary every lookup kind shares: learned with counts, applied with Keras's layout.

Vocabularies are text files of "<count> <token>" lines (tft's `store_frequency=True`),
so the counts feed the run summary. The lookup splits each line at its spaces, and tft's
text files drop the empty token and tokens with a line break, so those are stored as
low control characters and mapped back when the file is read: "\\n" as U+001D, "\\r" as
U+001E, space as U+001F, and the empty token as U+0000. Each keeps its byte order against
every printable character, so count ties still break as Keras breaks them. (The
gzipped-TFRecord format would keep them, but a lookup table built from it cannot be
re-exported inside the serving SavedModel.) A data value holding one of those four
control characters is read back as the character it stands for.
Order is count descending, ties broken by token bytes descending: tft's order, and
Keras's for strings. Integers are stored as sortable text ("1" + 19 digits for x >= 0,
"0" + 19 digits of x + 2**63 below), so the same byte order breaks their ties
numerically, descending, as Keras's IntegerLookup does.
"""

from __future__ import annotations

from typing import Optional

from beam_pipeline.features import lazy, packing, tables

tf = lazy.module("tensorflow")
schema_inference = lazy.module("tensorflow_transform.schema_inference")
tf_utils = lazy.module("tensorflow_transform.tf_utils")
# Its analyzer's Beam stages subclass Beam and tf.Transform classes: imported on first use.
vocabulary_counts = lazy.module("beam_pipeline.features.vocabulary_counts")

FILE_FORMAT = "text"
# What tft writes when a vocabulary has no entries (tensorflow_transform/analyzers.py).
EMPTY_VOCABULARY_DUMMY = "49d0cd50-04bb-48c0-bc6f-5b575dce351a"
ESCAPES = ((" ", "\x1f"), ("\n", "\x1d"), ("\r", "\x1e"))
EMPTY_ESCAPE = "\x00"

INT64_MAX = 2**63 - 1


def _to_keys(values: tf.Tensor) -> tf.Tensor:
    """Flat values -> the strings stored in the vocabulary file."""
    if values.dtype == tf.string:
        keys = values
        for char, picture in ESCAPES:
            keys = tf.strings.regex_replace(keys, char, picture)
        return tf.where(tf.equal(values, ""), EMPTY_ESCAPE, keys)
    values = tf.cast(values, tf.int64)
    # For x < 0, x + INT64_MAX cannot overflow; the other branch's overflow is discarded.
    shifted = tf.where(values >= 0, values, values + INT64_MAX + 1)
    digits = tf.strings.as_string(shifted, width=19, fill="0")
    return tf.where(values >= 0, "1" + digits, "0" + digits)


def _escape(x):
    """Any tensor kind with its values turned into vocabulary keys."""
    if isinstance(x, tf.RaggedTensor):
        return x.with_flat_values(_to_keys(x.flat_values))
    if isinstance(x, tf.SparseTensor):
        return tf.SparseTensor(x.indices, _to_keys(x.values), x.dense_shape)
    return _to_keys(x)


def unescape(token: str, integer: bool = False):
    """A key as read from a vocabulary file -> the value as it was in the data."""
    if integer:
        return int(token[1:]) if token[0] == "1" else int(token[1:]) - 2**63
    if token == EMPTY_ESCAPE:
        return ""
    for char, picture in ESCAPES:
        token = token.replace(picture, char)
    return token


def decode_integer_key(key: tf.Tensor) -> tf.Tensor:
    """In the graph: integer keys as stored in the file -> int64 values (anything else -> 0)."""
    # tft runs the graph once with a placeholder file before the vocabulary exists; a
    # key that is not one of ours must decode to something rather than fail.
    key = tf.where(tf.strings.regex_full_match(key, "[01][0-9]{19}"), key, "1" + "0" * 19)
    magnitude = tf.strings.to_number(tf.strings.substr(key, 1, 19), tf.int64)
    return tf.where(tf.equal(tf.strings.substr(key, 0, 1), "1"), magnitude,
                    magnitude + tf.constant(-2**63, tf.int64))


def first_entry(vocabulary_path, name: str) -> tf.Tensor:
    """In the graph: the key on the vocabulary file's first line, "" when the file is empty."""

    # tft's helper (under tables.lookup) ties the table to the analyzer that writes the
    # file, so that the lookup waits for the real vocabulary instead of a placeholder.
    line, _ = tables.lookup(
        lambda path: tf.lookup.TextFileInitializer(
            path, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER,
            tf.string, tf.lookup.TextFileIndex.WHOLE_LINE),
        vocabulary_path, tf.zeros([1], tf.int64), default_value="",
        name=f"{name}_first_entry")
    # "<count> <key>": the key is everything after the first space.
    key = tf.strings.regex_replace(line[0], r"^\S+ ", "")
    return tf.where(tf.equal(key, EMPTY_VOCABULARY_DUMMY), "", key)


def keys(x) -> tf.Tensor:
    """The flat 1-D vocabulary keys of `x` (any tensor kind), as `learn` counts them."""
    escaped = _escape(x)
    if isinstance(escaped, tf.RaggedTensor):
        escaped = escaped.flat_values
    elif isinstance(escaped, tf.SparseTensor):
        escaped = escaped.values
    return tf.reshape(escaped, [-1])


def plan(pack, x, name: str, top_k: Optional[int], min_frequency: Optional[int]) -> None:
    """Registers with `pack` (a `packing.Pack`) the vocabulary `learn` would learn."""
    pack.add_vocabulary(name, keys(x), top_k, min_frequency)


def learn(x, name: str, top_k: Optional[int], min_frequency: Optional[int]):
    """Full-pass vocabulary of `x` (any tensor kind), stored under `name` with counts.

    Exact, and the same file `tft.vocabulary(..., store_frequency=True)` writes; counted on
    Arrow tables (see vocabulary_counts). When the active `packing.Pack` counted `name`
    (the feature's `plan` registered it), that packed vocabulary is used. Returns the
    deferred path that `apply` takes.
    """
    pack = packing.active()
    packed = pack.vocabulary_path(name) if pack is not None else None
    if packed is not None:
        return packed
    return vocabulary_counts.vocabulary(keys(x), top_k=top_k, frequency_threshold=min_frequency,
                                        vocab_filename=name, name=f"{name}_vocabulary")


def learn_with_document_frequencies(x: tf.RaggedTensor, name: str, top_k: Optional[int],
                                    min_frequency: Optional[int]):
    """`learn` for a `[batch, (values)]` ragged tensor, never packed, and in the same pass
    the number of rows holding each learned value.

    Returns:
      (the deferred vocabulary path that `apply` takes, the deferred path of its document
      frequencies that `document_frequencies` reads).
    """
    return vocabulary_counts.vocabulary_with_document_frequencies(
        keys(x), x.value_rowids(), top_k=top_k, frequency_threshold=min_frequency,
        vocab_filename=name, name=f"{name}_vocabulary")


def document_frequencies(df_path, size: int, name: str) -> tf.Tensor:
    """In the graph: int64 `[size]`, the document frequency of vocabulary entry i (0 past
    the vocabulary's end), read once per session from `learn_with_document_frequencies`'
    file through a line-number table."""

    lines, _ = tables.lookup(
        lambda path: tf.lookup.TextFileInitializer(
            path, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER,
            tf.string, tf.lookup.TextFileIndex.WHOLE_LINE),
        df_path, tf.range(size, dtype=tf.int64), default_value="0",
        name=f"{name}_document_frequencies")
    # tft traces the graph with a placeholder file first; anything not a count reads as 0.
    lines = tf.where(tf.strings.regex_full_match(lines, "[0-9]+"), lines, "0")
    return tf.strings.to_number(lines, tf.int64)


def apply(x, vocabulary_path, name: str):
    """Maps each value of `x` (a Tensor, SparseTensor or RaggedTensor of strings or ints)
    to its 0-based position in the vocabulary, -1 when absent; returns the same kind.

    As tft's `apply_vocabulary` for files that store frequencies (which only its
    `compute_and_apply_vocabulary` reads), with the table built by `tables.lookup`."""
    keys = _escape(x)
    with tf.name_scope(f"{name}_apply"):
        # "<count> <key>" lines: the key is the second field, its line number the value.
        index, size = tables.lookup(
            lambda path: tf.lookup.TextFileInitializer(
                path, tf.string, 1, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER,
                delimiter=" "),
            vocabulary_path, tf_utils.get_values(keys), default_value=-1,
            name=f"{name}_vocabulary_table")
        # The transformed schema's int domain, as tft's apply_vocabulary declares it.
        schema_inference.set_tensor_schema_override(
            index, tf.constant(-1, tf.int64), tf.maximum(size - 1, -1))
    if isinstance(keys, tf.RaggedTensor):
        return keys.with_flat_values(index)
    if isinstance(keys, tf.SparseTensor):
        return tf.SparseTensor(keys.indices, index, keys.dense_shape)
    return index


def oov_first(index: tf.Tensor, raw: tf.Tensor, num_oov_indices: int) -> tf.Tensor:
    """Keras's index layout: OOV buckets 0..n-1 first, then the vocabulary.

    `index` is `apply`'s result (-1 for OOV) and `raw` the values it looked up. Several
    OOV buckets are chosen as Keras does: FarmHash64 of a string, `x mod n` of an int.
    """
    if num_oov_indices == 1:
        bucket = tf.zeros_like(index)
    elif raw.dtype == tf.string:
        bucket = tf.strings.to_hash_bucket_fast(raw, num_oov_indices)
    else:
        bucket = tf.math.floormod(tf.cast(raw, tf.int64), num_oov_indices)
    return tf.where(index < 0, bucket, index + num_oov_indices)
