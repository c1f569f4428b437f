"""The learned state of a finished run, read from what the run wrote.

* Vocabularies: the asset files under `transform_fn/assets` (tft's
  `vocabulary_file_by_name`), "<count> <key>" lines decoded by `outputs.summary`.
* Numbers (means, variances, min/max, quantile boundaries, document frequencies): tf.Transform
  bakes each analyzer's result into the transform function as a captured constant. The
  statistics/train.json figures are the project's own (float64, another combine order), so
  they are not used: the constants are read from the graph itself. A constant is found by
  the transformed output it feeds (data edges only) and by the ops that consume it, which
  the kind's transform fixes (e.g. a variance feeds `Sqrt`), or, for statistics packed
  across features (features/packing.py), by the name of the op that picks the feature's
  element (`named_value`); the tests check every kind's
  result against the graph, so a change in a kind's ops that breaks this shows there.
"""

import re
from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from beam_pipeline.outputs import summary


class Capture:
    """One analyzer constant: its value, and the types of the ops that consume it."""

    def __init__(self, index: int, placeholder: tf.Tensor, value):
        self.index = index
        self.placeholder = placeholder
        self.value = value
        self.consumers = {op.type for op in placeholder.consumers()}
        self.consumer_names = [op.name for op in placeholder.consumers()]

    def __repr__(self):
        return f"Capture({self.index}, {self.consumers}, {np.ravel(self.value)[:3]})"


class State:
    def __init__(self, output_dir: str):
        self.output_dir = output_dir
        self.tft_output = tft.TFTransformOutput(output_dir)
        self._loaded = tf.saved_model.load(self.tft_output.transform_savedmodel_dir)
        self._fn = self._loaded.transform_fn
        graph = self._fn.graph
        captured = list(self._fn.captured_inputs)
        placeholders = graph.inputs[len(graph.inputs) - len(captured):]
        self._captures = {}
        for i, (ph, value) in enumerate(zip(placeholders, captured)):
            if value.dtype in (tf.resource, tf.variant):
                continue
            # np.asarray: a scalar string capture (a vocabulary path) is bytes otherwise.
            self._captures[ph.op.name] = Capture(i, ph, np.asarray(value.numpy()))
        self._outputs = tf.nest.pack_sequence_as(self._fn.structured_outputs, self._fn.outputs)
        self._cache: Dict[str, List[Capture]] = {}

    # numbers ---------------------------------------------------------------------------
    def captures(self, output: str) -> List[Capture]:
        """The non-table constants that feed transformed output `output`, in the order the
        transform created them."""
        if output not in self._cache:
            seen, stack, found = set(), [self._outputs[output].op], []
            while stack:
                op = stack.pop()
                if op.name in seen:
                    continue
                seen.add(op.name)
                if op.name in self._captures:
                    found.append(self._captures[op.name])
                stack.extend(t.op for t in op.inputs)
            self._cache[output] = sorted(found, key=lambda c: c.index)
        return self._cache[output]

    def evaluate(self, tensor: tf.Tensor) -> np.ndarray:
        """A graph tensor computed from constants and captures by a few element-wise ops
        (those tf.Transform puts after an analyzer, e.g. `0 - max(-x)` for a min), in the
        tensor's dtype, so with the same IEEE results as the graph."""
        op = tensor.op
        if op.name in self._captures:
            return self._captures[op.name].value
        if op.type == "Const":
            return tf.make_ndarray(op.get_attr("value"))
        args = [self.evaluate(t) for t in op.inputs]
        funcs = {"Sub": np.subtract, "AddV2": np.add, "Mul": np.multiply, "Neg": np.negative,
                 "Identity": lambda a: a, "Greater": np.greater, "ZerosLike": np.zeros_like,
                 "SelectV2": np.where}
        if op.type == "StridedSlice":
            return self._element(op, *args).astype(tensor.dtype.as_numpy_dtype)
        if op.type not in funcs:
            raise LookupError(f"cannot evaluate {op.type} ({op.name}) outside the graph")
        return np.asarray(funcs[op.type](*args)).astype(tensor.dtype.as_numpy_dtype)

    @staticmethod
    def _element(op, value, begin, end, strides) -> np.ndarray:
        """`x[i]` of a 1-D x (what a packed statistic's `mean[i]` traces to); nothing else."""
        if (op.get_attr("shrink_axis_mask") != 1 or value.ndim != 1 or len(begin) != 1
                or int(strides[0]) != 1 or int(end[0]) != int(begin[0]) + 1):
            raise LookupError(f"cannot evaluate the slice {op.name} outside the graph")
        return np.asarray(value[int(begin[0])])

    def named_value(self, name: str) -> Optional[np.ndarray]:
        """The value of the graph op named `name` (in any scope; tf's `_N` suffix allowed),
        computed from its captures, or None when the graph has no such op."""
        pattern = re.compile(rf"(.*/)?{re.escape(name)}(_\d+)?")
        found = [op for op in self._fn.graph.get_operations() if pattern.fullmatch(op.name)]
        if len(found) != 1:
            return None
        return self.evaluate(found[0].outputs[0])

    def op_output(self, capture: Capture, scope: str) -> np.ndarray:
        """The value of the op in name scope `scope` that consumes `capture`."""
        for op in capture.placeholder.consumers():
            if op.name.startswith(scope + "/"):
                return self.evaluate(op.outputs[0])
        raise LookupError(f"no op under {scope} consumes {capture}")

    # vocabularies ------------------------------------------------------------------------
    def vocabulary(self, feature, name: str, integer: bool = False) -> list:
        path = self.tft_output.vocabulary_file_by_name(name)
        return [e["token"] for e in summary.read_vocabulary(path, integer)]

    def document_frequencies(self, name: str) -> List[int]:
        """The "<df>" lines of the document-frequency file registered as `name`."""
        path = self.tft_output.vocabulary_file_by_name(name)
        with tf.io.gfile.GFile(path, "rb") as f:
            return [int(line) for line in f.read().split()]

    def first_entry(self, feature, name: str, integer: bool):
        tokens = self.vocabulary(feature, name, integer)
        if not tokens:
            return 0 if integer else ""
        return tokens[0]


def kind_captures(state: State, feature) -> Tuple[List[Capture], Optional[Capture]]:
    """(the float captures feeding `feature.name`, the impute one or None): the impute
    statistic is created first (`Feature.scalar` runs before the kind's analyzers)."""
    caps = [c for c in state.captures(feature.name) if c.value.dtype.kind == "f"]
    if (feature.impute or feature.DEFAULT_IMPUTE) in ("mean", "median") and \
            not feature.multivalent:
        return caps[1:], caps[0] if caps else None
    return caps, None
