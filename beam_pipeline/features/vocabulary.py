"""The vocabulary every lookup kind shares: learned with counts, applied with Keras's layout.

Vocabularies are written as gzipped TFRecord files of "<count> <token>" entries
(tft's `store_frequency=True, file_format="tfrecord_gzip"`): unlike tft's text format
this keeps tokens that contain spaces or are empty, and the counts feed the run summary.
Order is tft's: count descending, ties broken by token bytes descending, which is also
Keras's order for strings.
"""

from typing import Optional

import tensorflow as tf
import tensorflow_transform as tft
from tensorflow_transform import mappers

FILE_FORMAT = "tfrecord_gzip"


def learn(x, name: str, top_k: Optional[int], min_frequency: Optional[int]):
    """Full-pass vocabulary of `x` (any tensor kind), stored under `name` with counts.

    Returns the deferred vocabulary path that `apply` takes.
    """
    return tft.vocabulary(
        x, top_k=top_k, frequency_threshold=min_frequency, vocab_filename=name,
        store_frequency=True, file_format=FILE_FORMAT, name=f"{name}_vocabulary")


def apply(x, vocabulary_path, name: str):
    """Maps each value of `x` to its 0-based position in the vocabulary, -1 when absent."""
    # tft's public apply_vocabulary cannot read files that store frequencies;
    # compute_and_apply_vocabulary reads them through this same internal function.
    return mappers._apply_vocabulary_internal(  # pylint: disable=protected-access
        x, vocabulary_path, default_value=-1, num_oov_buckets=0, lookup_fn=None,
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
