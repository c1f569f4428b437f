"""Analyzers packed across features, so a wide config adds values, not Beam stages.

tf.Transform gives every analyzer call its own Beam stages: about 18 transforms per
vocabulary and 24 per `tft.mean` + `tft.var` pair, so a 1,000-feature job's pipeline proto
passes Dataflow's request limit (tf.Transform issues #57, #180, #242). Here the config's
`preprocessing_fn` runs in two steps:

1. Plan: each feature that can registers what it would learn (`Feature.plan`): the
   keys of a vocabulary, the values and missing mask of a scalar's mean and variance.
2. Analyze: each vocabulary analysis counts VOCABULARIES_PER_ANALYSIS registered
   vocabularies (`vocabulary_counts.vocabularies`, keyed by request), and one
   mean-and-variance combiner reduces every registered scalar as a column of one
   `[batch, K]` sparse tensor (tft's elementwise mean and variance, accumulated in
   float64 by `features.moments`: missing cells are left out per column).

Then each feature's `transform` runs as it always does, and `vocabulary.learn` and the
normalization's statistics take the packed result when there is one for their name; a
transform also takes the tensors its plan kept (`Pack.keep`) rather than tracing its
input handling again. What a plan cannot compute without another analyzer first (the
vocabulary of values imputed with a learned statistic, a vector column's per-position
moments) is not packed, and learns alone as before.

Example (what `job.preprocessing` does):

    pack = Pack()
    for feature in features:
        feature.plan(inputs, pack)
    with pack.analyze():
        outputs = {k: v for f in features for k, v in f.transform(inputs).items()}
"""

from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterator, List, Optional, Tuple

from beam_pipeline.features import lazy, moments as moments_lib

tf = lazy.module("tensorflow")
tft_analyzers = lazy.module("tensorflow_transform.analyzers")
vocabulary_counts = lazy.module("beam_pipeline.features.vocabulary_counts")

# Vocabularies counted by one analysis. tf.Transform walks the graph back from every
# analyzer output to its inputs (graph_tools.get_analyzers_fingerprint), and each output
# of one analysis reaches every feature of it: one analysis for all of a 1,000-feature
# config's vocabularies made that walk quadratic (minutes). Groups keep it linear, at
# about 18 Beam transforms per group.
VOCABULARIES_PER_ANALYSIS = 32

_ACTIVE: List["Pack"] = []


class Pack:
    """The analyses features registered in their plan, and, once analyzed, the results."""

    def __init__(self):
        self._vocabularies: Dict[str, "vocabulary_counts.Request"] = {}
        self._moments: Dict[str, Tuple[tf.Tensor, tf.Tensor]] = {}
        self._paths: Dict[str, tf.Tensor] = {}
        self._statistics: Dict[str, Tuple[tf.Tensor, tf.Tensor]] = {}
        self._kept: Dict[str, Any] = {}

    def add_vocabulary(self, name: str, keys: tf.Tensor, top_k: Optional[int],
                       min_frequency: Optional[int]) -> None:
        """Registers the vocabulary `vocabulary.learn(keys, name, ...)` would learn.

        `keys` are the escaped, flattened keys (`vocabulary.keys`)."""
        self._vocabularies[name] = vocabulary_counts.Request(keys, top_k, min_frequency, name)

    def add_moments(self, name: str, values: tf.Tensor, missing: tf.Tensor) -> None:
        """Registers the mean and population variance of the float32 `[batch]` `values`
        where `missing` is False."""
        self._moments[name] = (values, missing)

    def keep(self, name: str, tensors: Any) -> None:
        """Keeps what feature `name`'s plan computed from its inputs, for its `transform`:
        each feature then traces its input handling once, not once per step."""
        self._kept[name] = tensors

    def kept(self, name: str) -> Any:
        """What feature `name`'s plan kept, or None."""
        return self._kept.get(name)

    @contextlib.contextmanager
    def analyze(self) -> Iterator["Pack"]:
        """Adds the packed analyzers to the graph; within the block, features read them."""
        names = sorted(self._vocabularies)
        for start in range(0, len(names), VOCABULARIES_PER_ANALYSIS):
            group = names[start:start + VOCABULARIES_PER_ANALYSIS]
            paths = vocabulary_counts.vocabularies(
                [self._vocabularies[n] for n in group], name="packed_vocabularies")
            self._paths.update(zip(group, paths))
        if self._moments:
            names = sorted(self._moments)
            values = tf.stack([self._moments[n][0] for n in names], axis=1)
            present = tf.logical_not(tf.stack([self._moments[n][1] for n in names], axis=1))
            sparse = tf.SparseTensor(tf.where(present), tf.boolean_mask(values, present),
                                     tf.shape(values, out_type=tf.int64))
            with tf.compat.v1.name_scope("packed_moments"):
                # Float64 accumulation and merge, one rounding to float32 (features/moments):
                # float32 here put a variance hundreds of ulps off on values near 1e6.
                mean, var = moments_lib.mean_and_var(sparse, reduce_instance_dims=False)
                # A column with no value at all: tft's elementwise merge divides 0 by 0
                # where its scalar mean and variance are 0; keep the scalar's answer.
                count = tft_analyzers.sum(tf.reduce_sum(tf.cast(present, tf.int64), axis=0,
                                                        keepdims=True),
                                          reduce_instance_dims=False)
                seen = tf.greater(count, 0)
                mean = tf.where(seen, mean, tf.zeros_like(mean))
                var = tf.where(seen, var, tf.zeros_like(var))
            # Named, so the Keras-layer export finds each feature's pair in the saved graph
            # (serving/keras_layers/state.py, `State.named_value`).
            self._statistics = {n: (tf.identity(mean[i], name=f"{n}_packed_mean"),
                                    tf.identity(var[i], name=f"{n}_packed_var"))
                                for i, n in enumerate(names)}
        _ACTIVE.append(self)
        try:
            yield self
        finally:
            _ACTIVE.remove(self)

    def vocabulary_path(self, name: str) -> Optional[tf.Tensor]:
        """The packed vocabulary's deferred path for `name`, or None."""
        return self._paths.get(name)

    def moments(self, name: str) -> Optional[Tuple[tf.Tensor, tf.Tensor]]:
        """The packed (mean, var) scalars for `name`, or None."""
        return self._statistics.get(name)


def active() -> Optional[Pack]:
    """The pack being analyzed (inside `Pack.analyze`), or None."""
    return _ACTIVE[-1] if _ACTIVE else None


def kept(name: str) -> Any:
    """What feature `name`'s plan kept in the active pack (`Pack.keep`), or None."""
    pack = active()
    return pack.kept(name) if pack is not None else None
