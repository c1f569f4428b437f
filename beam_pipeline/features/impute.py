"""Imputation of missing scalar cells with a statistic learned on the train split.

Strategies: `mean`, `median` (tf.Transform's quantile sketch, rank error at most
MEDIAN_EPSILON of the rows), `most_frequent` (the top of the value's vocabulary; ties go
to the largest value, the vocabulary order), `constant` (`fill_value`).
"""

from __future__ import annotations

from beam_pipeline.features import lazy, moments, vocabulary

tf = lazy.module("tensorflow")
tft = lazy.module("tensorflow_transform")

STRATEGIES = ("mean", "median", "most_frequent", "constant")
# The strategies whose fill value is learned from the data (an analyzer), not given.
LEARNED = ("mean", "median", "most_frequent")
MEDIAN_EPSILON = 0.001


def check(strategy, fill_value, column_type: str) -> None:
    """Raises ValueError when the strategy does not fit the column."""
    if strategy not in STRATEGIES:
        raise ValueError(f"impute: expected one of {list(STRATEGIES)}, got {strategy!r}")
    if strategy in ("mean", "median") and column_type == "string":
        raise ValueError(f"impute: {strategy!r} needs a numeric column")
    if strategy == "constant":
        if fill_value is None:
            raise ValueError("fill_value: required with impute: constant")
        ok = (isinstance(fill_value, str) if column_type == "string" else
              isinstance(fill_value, (int, float)) and not isinstance(fill_value, bool))
        if not ok or (column_type == "int" and isinstance(fill_value, float)):
            raise ValueError(f"fill_value: {fill_value!r} does not fit a {column_type} column")
    elif fill_value is not None:
        raise ValueError("fill_value: only used with impute: constant")


def placeholder(dtype: tf.DType):
    """What a missing cell holds before imputation: NaN, -1 or ""."""
    if dtype.is_floating:
        return float("nan")
    return "" if dtype == tf.string else -1


def statistic(strategy: str, present: tf.Tensor, fill_value, name: str) -> tf.Tensor:
    """The scalar that fills missing cells, learned from the flat `present` values."""
    if strategy == "constant":
        return tf.constant(fill_value, present.dtype)
    if strategy == "mean":
        # Accumulated in float64, rounded once to the float32 fill (features/moments).
        return moments.mean(tf.cast(present, tf.float32), name=f"{name}_mean")
    if strategy == "median":
        boundaries = tft.quantiles(tf.cast(present, tf.float32), num_buckets=2,
                                   epsilon=MEDIAN_EPSILON, name=f"{name}_median")
        return tf.reshape(boundaries, [-1])[0]
    return _most_frequent(present, name)


def _most_frequent(present: tf.Tensor, name: str) -> tf.Tensor:
    """The most frequent value (ties: the largest), or the dtype's zero when none is seen."""
    keys = present
    if present.dtype.is_floating:
        # The float's bits as an integer key: exact, and decoded back below.
        keys = tf.cast(tf.bitcast(tf.cast(present, tf.float32), tf.int32), tf.int64)
    path = vocabulary.learn(keys, f"{name}_most_frequent", top_k=1, min_frequency=None)
    first = vocabulary.first_entry(path, name)
    if present.dtype == tf.string:
        return first
    value = vocabulary.decode_integer_key(first)
    if present.dtype.is_floating:
        return tf.bitcast(tf.cast(value, tf.int32), tf.float32)
    return value
