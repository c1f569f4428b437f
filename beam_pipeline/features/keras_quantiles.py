"""Keras's `Discretization.adapt()` boundaries, learned in one full pass over the data.

Keras (keras/src/layers/preprocessing/discretization.py, 3.15) adapts a `num_bins` layer
with a small quantile summary: a `[2, m]` array of values and their weights.

* `update_state(batch)`: `summarize` the batch (sort it; with `step = max(n * epsilon, 1)`
  keep `values[int(step) - 1 :: int(step)]`, each weighing `step`; a batch of at most
  1/epsilon values is kept whole, weight 1), then `merge_summaries` it with the running
  summary (concatenate, sort by value, `compress_summary`).
* `compress_summary(s, eps)`: a summary of at least 1/eps entries becomes the values and
  weights interpolated (`np.interp` of the cumulative weight fractions) at `eps, 2eps, .. 1`.
* `finalize_state`: `get_bin_boundaries(s, num_bins) = compress_summary(s, 1/num_bins)[0, :-1]`.
  A summary of fewer than `num_bins` entries is not compressed, so the layer then has
  fewer than `num_bins - 1` boundaries (Keras learns 2 on `[0, 1, 5]` with 5 bins).

Keras's helpers are plain numpy, but `compress_summary` rounds every summary it returns
to float32, and its weights are then summed in float32: past 2**24 rows a weight or a
cumulative weight is no longer exact. The helpers here are the same steps, line for line,
with the dtype as an argument: `np.float32` reproduces Keras's arithmetic bit for bit
(the tests check it against Keras's own functions), `np.float64` is used for everything
Keras has no counterpart for.

`KerasQuantilesCombiner` runs them as a tf.Transform combiner (a Beam CombineFn, cached
per span like tft's own quantiles):

1. Each accumulator holds up to `PENDING_VALUES` raw present values (float32, what Keras
   casts its data to) and a float64 summary. Batches append their values; bundles'
   accumulators concatenate theirs. Once the pending values reach `PENDING_VALUES`
   they are summarized as one Keras batch (Keras's `summarize` at its `epsilon`) and
   merged into the summary by Keras's merge rule in float64, compressed on a grid
   `MERGE_RESOLUTION` times finer than Keras's (see there why).
2. When the whole dataset is still pending at the end (at most `PENDING_VALUES` values,
   however the runner split it), the boundaries are Keras's `adapt()` of that one array,
   computed in Keras's own float32 arithmetic: bit-identical to Keras.
3. Otherwise the boundaries are Keras's `get_bin_boundaries` of the float64 summary:
   Keras's algorithm over batches of at least `PENDING_VALUES` values. Keras's summary is
   biased upward for small batches (its `int(step)` truncation; see the parity notes),
   which large batches make negligible; each boundary is within Keras's own `epsilon`
   (in rank) of the exact quantile.

Missing values are not given to the analyzer (the feature masks them out first).
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import pickle

import numpy as np
import tensorflow as tf
from tensorflow_transform import analyzer_nodes
from tensorflow_transform import analyzers as tft_analyzers

# Raw values an accumulator holds before it summarizes them as one Keras batch: a dataset
# of at most this many values is adapted exactly as Keras adapts one array, and larger
# ones in batches this big, where Keras's small-batch bias (about 1/int(n * epsilon) in
# rank) is under 0.2% at epsilon 0.01. 256 KB of float32 per feature and accumulator.
PENDING_VALUES = 1 << 16

# Summaries merged across batches are compressed at epsilon / MERGE_RESOLUTION (Keras's
# compress rule, on a finer grid): at Keras's own epsilon every merge re-interpolates the
# cumulative weights on a 1/epsilon grid, and over a tree of merges the error added up to
# 1.2 epsilon in rank (20,000 lognormal values in batches of 2,000); at epsilon / 10 a
# summary holds 10x the entries (16 KB in float64) and the error stays well inside epsilon.
MERGE_RESOLUTION = 10

# Part of the combiner's repr, hence of analysis-cache keys: change it when the
# accumulator's layout changes.
CACHE_FORMAT = 1  # with MERGE_RESOLUTION 10


# --------------------------------------------------------------------------- Keras's steps

def summarize(values: np.ndarray, epsilon: float, dtype=np.float64) -> np.ndarray:
    """Keras's `summarize`: the `[2, m]` (values, weights) summary of one batch.

    Sorts the values; a batch of at most 1/epsilon values is kept whole with weight 1,
    a larger one keeps every `int(n * epsilon)`-th value with weight `n * epsilon`.
    With `dtype=np.float32` (Keras casts its data to float32) this is Keras's result.
    """
    values = np.sort(np.reshape(np.asarray(values, dtype), [-1]))
    elements = np.size(values)
    num_buckets = 1.0 / epsilon
    step = max(elements / num_buckets, 1)
    kept = values[int(step - 1)::int(step)]
    # Keras multiplies an array of ones of the values' dtype by the Python float step.
    weights = np.ones_like(kept) * step
    return np.stack([kept, weights])


def compress_summary(summary: np.ndarray, epsilon: float, dtype=np.float64) -> np.ndarray:
    """Keras's `compress_summary`: a summary of at least 1/epsilon entries, interpolated
    at the cumulative weight fractions `epsilon, 2 epsilon, .., 1`; a smaller one as it is.

    Keras sums the weights in the summary's dtype (float32) and rounds the result to
    float32; `dtype` is that dtype here.
    """
    if summary.shape[1] * epsilon < 1:
        return summary
    percents = epsilon + np.arange(0.0, 1.0, epsilon)
    cum_weights = np.asarray(summary[1], dtype).cumsum()
    cum_weight_percents = cum_weights / cum_weights[-1]
    new_bins = np.interp(percents, cum_weight_percents, summary[0])
    cum_weights = np.interp(percents, cum_weight_percents, cum_weights)
    new_weights = cum_weights - np.concatenate((np.array([0]), cum_weights[:-1]))
    return np.stack((new_bins, new_weights)).astype(dtype)


def merge_summaries(prev_summary: np.ndarray, next_summary: np.ndarray, epsilon: float,
                    dtype=np.float64) -> np.ndarray:
    """Keras's `merge_summaries`: both summaries' entries sorted by value, compressed.

    Entries of equal value keep their order (a stable sort; Keras's default argsort
    does not promise one, which only matters for equal values of unequal weights)."""
    merged = np.concatenate((np.asarray(prev_summary, dtype), np.asarray(next_summary, dtype)),
                            axis=1)
    merged = np.take(merged, np.argsort(merged[0], kind="stable"), axis=1)
    return compress_summary(merged, epsilon, dtype)


def get_bin_boundaries(summary: np.ndarray, num_bins: int, dtype=np.float64) -> np.ndarray:
    """Keras's `get_bin_boundaries`: at most `num_bins - 1` boundaries, as float32."""
    return compress_summary(summary, 1.0 / num_bins, dtype)[0, :-1].astype(np.float32)


def empty_summary(dtype=np.float64) -> np.ndarray:
    """The summary of no values (Keras's `reset_state`)."""
    return np.zeros([2, 0], dtype)


def adapt_one_array(values: np.ndarray, num_bins: int, epsilon: float) -> np.ndarray:
    """What `Discretization(num_bins, epsilon).adapt(values)` learns for one array, in
    Keras's float32 arithmetic."""
    f32 = np.float32
    summary = merge_summaries(summarize(values, epsilon, f32), empty_summary(f32), epsilon,
                              f32)
    return get_bin_boundaries(summary, num_bins, f32)


# --------------------------------------------------------------------------- the combiner

class Accumulator:
    """A partial result: raw values not summarized yet (float32) and a float64 summary."""

    __slots__ = ("pending", "summary")

    def __init__(self, pending: Optional[List[np.ndarray]] = None,
                 summary: Optional[np.ndarray] = None):
        self.pending = pending if pending is not None else []
        self.summary = summary if summary is not None else empty_summary()

    def pending_count(self) -> int:
        """How many raw values wait to be summarized."""
        return sum(p.size for p in self.pending)

    def __getstate__(self):
        return (self.pending, self.summary)

    def __setstate__(self, state):
        self.pending, self.summary = state


class KerasQuantilesCombiner(analyzer_nodes.Combiner):
    """A tf.Transform combiner whose output is Keras's adapted `bin_boundaries`."""

    def __init__(self, num_bins: int, epsilon: float, pending_values: int = PENDING_VALUES):
        self._num_bins = int(num_bins)
        self._epsilon = float(epsilon)
        self._pending_values = int(pending_values)
        self._merge_epsilon = self._epsilon / MERGE_RESOLUTION

    def __repr__(self):
        # tf.Transform's analysis-cache key includes the combiner's repr.
        return (f"KerasQuantilesCombiner(num_bins={self._num_bins}, epsilon={self._epsilon!r}, "
                f"pending_values={self._pending_values}, merge_resolution={MERGE_RESOLUTION}, "
                f"format={CACHE_FORMAT})")

    def create_accumulator(self) -> Accumulator:
        """A fresh accumulator: no values."""
        return Accumulator()

    def add_input(self, accumulator: Accumulator, batch_values) -> Accumulator:
        """Adds one batch's present values (`batch_values[0]`, any shape)."""
        values = np.reshape(np.asarray(batch_values[0], np.float32), [-1])
        if values.size:
            accumulator.pending.append(values)
        return self._flush_if_full(accumulator)

    def merge_accumulators(self, accumulators) -> Accumulator:
        """One accumulator for several: pending values joined, summaries merged."""
        merged = None
        for accumulator in accumulators:
            if merged is None:
                merged = Accumulator(list(accumulator.pending), accumulator.summary)
                continue
            merged.pending.extend(accumulator.pending)
            if accumulator.summary.shape[1]:
                merged.summary = merge_summaries(accumulator.summary, merged.summary,
                                                 self._merge_epsilon)
            merged = self._flush_if_full(merged)
        return merged if merged is not None else Accumulator()

    def compact(self, accumulator: Accumulator) -> Accumulator:
        """The pending values as one array (what crosses the shuffle)."""
        if len(accumulator.pending) > 1:
            accumulator.pending = [np.concatenate(accumulator.pending)]
        return accumulator

    def extract_output(self, accumulator: Accumulator) -> List[np.ndarray]:
        """`[boundaries]`: float32, at most `num_bins - 1` of them."""
        if not accumulator.summary.shape[1]:
            # Every value is still pending: Keras's adapt() of that one array.
            values = (np.concatenate(accumulator.pending) if accumulator.pending
                      else np.zeros([0], np.float32))
            return [adapt_one_array(values, self._num_bins, self._epsilon)]
        summary = self._flushed(accumulator).summary
        return [get_bin_boundaries(summary, self._num_bins)]

    def output_tensor_infos(self):
        """One float32 vector whose length is known only once learned."""
        return [analyzer_nodes.TensorInfo(tf.float32, [None], None)]

    @property
    def accumulator_coder(self):
        """Pickles an accumulator for the analysis cache, as tft does for its quantiles."""
        return _PickleCoder()

    def _flush_if_full(self, accumulator: Accumulator) -> Accumulator:
        if accumulator.pending_count() >= self._pending_values:
            return self._flushed(accumulator)
        return accumulator

    def _flushed(self, accumulator: Accumulator) -> Accumulator:
        """The pending values summarized as one Keras batch, merged into the summary."""
        if accumulator.pending:
            batch = summarize(np.concatenate(accumulator.pending), self._epsilon)
            accumulator.summary = merge_summaries(batch, accumulator.summary,
                                                  self._merge_epsilon)
            accumulator.pending = []
        return accumulator


class _PickleCoder(analyzer_nodes.CacheCoder):
    def encode_cache(self, cache):
        return pickle.dumps(cache, protocol=4)

    def decode_cache(self, encoded_cache):
        return pickle.loads(encoded_cache)


def bin_boundaries(values: tf.Tensor, num_bins: int, epsilon: float,
                   name: Optional[str] = None) -> tf.Tensor:
    """In a `preprocessing_fn`: the boundaries Keras's `Discretization(num_bins=num_bins,
    epsilon=epsilon).adapt()` learns from `values` over the whole dataset.

    Args:
      values: a numeric tensor of one batch's present values (missing ones left out).
      num_bins, epsilon: Keras's arguments.
      name: the analyzer's scope (a stable name keeps analysis-cache keys stable).

    Returns:
      A float32 `[k]` tensor, `k <= num_bins - 1` (fewer when the data has fewer than
      `num_bins` summary entries, as in Keras).
    """
    with tf.compat.v1.name_scope(name, "keras_bin_boundaries"):
        flat = tf.reshape(tf.cast(values, tf.float32), [-1])
        (boundaries,) = tft_analyzers._apply_cacheable_combiner(  # pylint: disable=protected-access
            KerasQuantilesCombiner(num_bins, epsilon), flat)
        return boundaries
