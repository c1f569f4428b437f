"""The vocabulary every lookup kind shares: learned with counts, applied with Keras's layout.

Vocabularies are text files of "<count> <token>" lines (tft's `store_frequency=True`),
so the counts feed the run summary. The lookup splits each line at its spaces, so a
space inside a string token is stored as U+241F (SYMBOL FOR UNIT SEPARATOR) and mapped
back when the file is read. tft's text files drop the empty token and tokens with a
newline; such values are OOV. (The gzipped-TFRecord format keeps them, but a lookup
table built from it cannot be re-exported inside the serving SavedModel.)
Order is count descending, ties broken by token bytes descending: tft's order, and
Keras's for strings. Integers are stored as sortable text ("1" + 19 digits for x >= 0,
"0" + 19 digits of x + 2**63 below), so the same byte order breaks their ties
numerically, descending, as Keras's IntegerLookup does.
"""

from typing import Optional

import tensorflow as tf
import tensorflow_transform as tft
from tensorflow_transform import mappers

FILE_FORMAT = "text"
SPACE = " "
SPACE_ESCAPE = "\u241f"


INT64_MAX = 2**63 - 1


def _to_keys(values: tf.Tensor) -> tf.Tensor:
    """Flat values -> the strings stored in the vocabulary file."""
    if values.dtype == tf.string:
        return tf.strings.regex_replace(values, SPACE, SPACE_ESCAPE)
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
    return token.replace(SPACE_ESCAPE, SPACE)


def learn(x, name: str, top_k: Optional[int], min_frequency: Optional[int]):
    """Full-pass vocabulary of `x` (any tensor kind), stored under `name` with counts.

    Returns the deferred vocabulary path that `apply` takes.
    """
    return tft.vocabulary(
        _escape(x), top_k=top_k, frequency_threshold=min_frequency, vocab_filename=name,
        store_frequency=True, file_format=FILE_FORMAT, name=f"{name}_vocabulary")


def apply(x, vocabulary_path, name: str):
    """Maps each value of `x` to its 0-based position in the vocabulary, -1 when absent."""
    # tft's public apply_vocabulary cannot read files that store frequencies;
    # compute_and_apply_vocabulary reads them through this same internal function.
    return mappers._apply_vocabulary_internal(  # pylint: disable=protected-access
        _escape(x), vocabulary_path, default_value=-1, num_oov_buckets=0, lookup_fn=None,
        file_format=FILE_FORMAT, store_frequency=True, name=f"{name}_apply")


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
