"""Mean and population variance, accumulated in float64 and stored as float32.

tf.Transform's `tft.mean`/`tft.var` accumulate in the input's dtype: on float32 values
each batch's sum, mean and squared deviations are float32 and so is the merge of the
batches' (count, mean, variance), which on values around 1e6 with unit spread puts the
variance hundreds of float32 ulps off (TFX taxi's trip_miles variance: 233.34537 for an
exact 233.34085). Here the values are cast to float64 before the per-batch reduction,
batches merge in float64 with tf.Transform's own `WeightedMeanAndVarCombiner` (per-batch
mean and variance, merged with Chan et al.'s parallel update), and only the combiner's
output is float32: the one rounding, where the statistic becomes a constant of the
transform graph. The graph keeps float32 constants, as with `tft.mean`/`tft.var`.

Example:
    mean, var = moments.mean_and_var(present_values, name="fare_moments")
"""

from __future__ import annotations

from typing import Tuple

from beam_pipeline.features import lazy

tf = lazy.module("tensorflow")
np = lazy.module("numpy")
tft_analyzers = lazy.module("tensorflow_transform.analyzers")
tft_utils = lazy.module("tensorflow_transform.tf_utils")


def mean_and_var(x, reduce_instance_dims: bool = True, name: str = None
                 ) -> Tuple[tf.Tensor, tf.Tensor]:
    """The float32 mean and population variance of `x` over the analyzed dataset.

    Args:
      x: a numeric Tensor, SparseTensor or RaggedTensor. NaN and infinite values are
        left out (tf.Transform's rule).
      reduce_instance_dims: True: one scalar over every value; False: one per position
        of the instance (reduces the batch axis only; a SparseTensor's absent cells are
        left out per position).
      name: the analyzer's name scope (names keep analysis-cache keys stable).

    Returns:
      (mean, variance), float32, each rounded once from its float64 accumulation. With no
      value at all both are 0 (the float64 merge's 0/0 guard is tf.Transform's).
    """
    with tf.compat.v1.name_scope(name, "mean_and_var"):
        # Float64 from the per-batch sums on: a float32 cast here would round before the
        # batch means and squared deviations are formed, where the precision is lost.
        x = tf.cast(x, tf.float64)
        count, mean, variance = tft_utils.reduce_batch_count_mean_and_var(
            x, reduce_instance_dims)
        inputs = tft_analyzers._WeightedMeanAndVarAccumulator(  # pylint: disable=protected-access
            count=count, mean=mean, variance=variance, weight=tf.zeros([], tf.float32))
        shape = ()
        if not reduce_instance_dims:
            # tft's own way to get the per-position output shape (a batch axis added).
            shape = tft_analyzers._get_output_shape_from_input(  # pylint: disable=protected-access
                tf.expand_dims(count, axis=0))
        # The combiner merges the float64 accumulators in numpy float64 and casts only its
        # output to its dtype: float32 here, the dtype of the stored constant.
        combiner = tft_analyzers.WeightedMeanAndVarCombiner(np.float32, shape)
        mean, variance = tft_analyzers._apply_cacheable_combiner(  # pylint: disable=protected-access
            combiner, *inputs)
        return mean, variance


def mean(x, reduce_instance_dims: bool = True, name: str = None) -> tf.Tensor:
    """The float32 mean of `x`, accumulated in float64 (see `mean_and_var`)."""
    return mean_and_var(x, reduce_instance_dims, name)[0]
