"""Exact per-column statistics of the raw numeric columns, combined over Arrow record batches.

This is the "numeric" part of the run summary: count, missing, mean, population
variance, min and max of every raw float/int column over the train split, computed in
the same pass that feeds tf.Transform's analysis. Accumulators are a handful of floats
per column, so the combine lifts on any runner.
"""

import math
from typing import Dict, List, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# count, mean, M2 (sum of squared deviations), min, max, missing rows
_EMPTY = (0, 0.0, 0.0, math.inf, -math.inf, 0)


def _merge(a, b):
    """Chan et al.'s parallel merge of two (count, mean, M2, ...) accumulators."""
    n_a, mean_a, m2_a, min_a, max_a, miss_a = a
    n_b, mean_b, m2_b, min_b, max_b, miss_b = b
    n = n_a + n_b
    if n == 0:
        return (0, 0.0, 0.0, math.inf, -math.inf, miss_a + miss_b)
    delta = mean_b - mean_a
    return (n, mean_a + delta * n_b / n, m2_a + m2_b + delta * delta * n_a * n_b / n,
            min(min_a, min_b), max(max_a, max_b), miss_a + miss_b)


def _batch_accumulator(column: pa.Array):
    lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False)
    values = pc.list_flatten(column).to_numpy(zero_copy_only=False).astype(np.float64)
    missing = int((lengths == 0).sum())
    if values.size == 0:
        return _EMPTY[:5] + (missing,)
    mean = float(values.mean())
    return (int(values.size), mean, float(((values - mean) ** 2).sum()),
            float(values.min()), float(values.max()), missing)


class NumericStatistics(beam.CombineFn):
    """Combines record batches into `{column: {count, missing, mean, variance, min, max}}`."""

    def __init__(self, columns: Sequence[str]):
        self._columns = list(columns)

    def create_accumulator(self) -> List[tuple]:
        return [_EMPTY] * len(self._columns)

    def add_input(self, accumulator, batch: pa.RecordBatch):
        return [
            _merge(acc, _batch_accumulator(batch.column(batch.schema.get_field_index(name))))
            for acc, name in zip(accumulator, self._columns)
        ]

    def merge_accumulators(self, accumulators):
        merged = self.create_accumulator()
        for accumulator in accumulators:
            merged = [_merge(a, b) for a, b in zip(merged, accumulator)]
        return merged

    def extract_output(self, accumulator) -> Dict[str, Dict[str, float]]:
        out = {}
        for name, (n, mean, m2, lo, hi, missing) in zip(self._columns, accumulator):
            out[name] = {
                "count": n, "missing": missing,
                "mean": mean if n else None, "variance": m2 / n if n else None,
                "min": lo if n else None, "max": hi if n else None,
            }
        return out
