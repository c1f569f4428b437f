"""Exact per-column statistics of the train split, combined over Arrow record batches.

Computed in the same pass that feeds tf.Transform's analysis (no second read, no sample):
- every raw float/int column: count, missing, mean, population variance, min, max, and
  a log-linear histogram sketch (buckets about 3% wide in relative terms) from which the
  report draws histograms and quantiles;
- every column a lookup reads: how many rows have a value (the vocabulary coverage's
  denominator);
- every text column: tokens per row after the feature's own standardize and split
  (the token-length distribution, and the total token count);
- every column a feature learns from: how many rows hold a value (a non-empty string, a
  number that is not NaN), and the split's row count: a statistic learned from no value
  fails the run (`job.learned`).
Accumulators are bounded (a few floats per column, a few thousand histogram buckets), so
the combine lifts on any runner.
"""

import math
from typing import Dict, List, Mapping, Sequence, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from beam_pipeline.features.text_vectorization import KERAS_STRIP_REGEX

# count, mean, M2 (sum of squared deviations), min, max, missing rows
_EMPTY = (0, 0.0, 0.0, math.inf, -math.inf, 0)
# Mantissa steps per power of two in the histogram sketch: 32 gives buckets ~3% wide.
SKETCH_STEPS = 32
MAX_TOKENS_PER_ROW = 10_000  # longer rows share the last length bucket


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


def sketch_keys(values: np.ndarray) -> np.ndarray:
    """Log-linear bucket ids of finite values: sign * (exponent, top mantissa bits); 0 for 0."""
    mantissa, exponent = np.frexp(np.abs(values))
    steps = np.floor((mantissa - 0.5) * 2 * SKETCH_STEPS).astype(np.int64)
    keys = (exponent.astype(np.int64) + 1100) * SKETCH_STEPS + steps + 1
    return np.where(values == 0, 0, np.sign(values).astype(np.int64) * keys)


def sketch_bounds(key: int):
    """The [low, high) value range of a sketch bucket id."""
    if key == 0:
        return 0.0, 0.0
    sign, key = (1 if key > 0 else -1), abs(key) - 1
    exponent, step = divmod(key, SKETCH_STEPS)
    exponent -= 1100
    low = math.ldexp(0.5 + step / (2 * SKETCH_STEPS), exponent)
    high = math.ldexp(0.5 + (step + 1) / (2 * SKETCH_STEPS), exponent)
    return (low, high) if sign > 0 else (-high, -low)


def _add_counts(into: Dict, keys: np.ndarray) -> None:
    unique, counts = np.unique(keys, return_counts=True)
    for key, count in zip(unique.tolist(), counts.tolist()):
        into[key] = into.get(key, 0) + count


def standardize_text(values: pa.Array, mode: str) -> pa.Array:
    """Keras's standardize in pyarrow (ASCII lower-casing, the same RE2 punctuation regex)."""
    if mode in ("lower", "lower_and_strip_punctuation"):
        values = pc.ascii_lower(values)
    if mode in ("strip_punctuation", "lower_and_strip_punctuation"):
        values = pc.replace_substring_regex(values, KERAS_STRIP_REGEX, "")
    return values


def rows_with_a_value(column: pa.Array) -> int:
    """Rows of a list column with at least one value a feature can learn from: not null,
    not NaN (a number), not "" (a string: a missing image or text, an empty multivalent
    cell, and tf.Transform's vocabulary files leave "" out)."""
    values = pc.list_flatten(column)
    if len(values) == 0:
        return 0
    usable = pc.is_valid(values)
    if pa.types.is_floating(values.type):
        usable = pc.and_(usable, pc.invert(pc.is_nan(values)))
    elif pa.types.is_string(values.type) or pa.types.is_binary(values.type) or \
            pa.types.is_large_string(values.type) or pa.types.is_large_binary(values.type):
        usable = pc.and_(usable, pc.greater(pc.binary_length(values), 0))
    usable = pc.fill_null(usable, False).to_numpy(zero_copy_only=False)
    rows = pc.list_parent_indices(column).to_numpy(zero_copy_only=False)[usable]
    return int(np.unique(rows).size)


class TrainStatistics(beam.CombineFn):
    """Combines record batches into `{"numeric": ..., "categorical": ..., "text": ...}`.

    Args:
      numeric: columns to describe with moments and a histogram sketch.
      categorical: columns whose rows-with-a-value count a vocabulary coverage needs.
      text: `{feature: (column, standardize mode)}` for token-length distributions.
      present: columns whose rows with a value are counted (those features learn from).
    """

    def __init__(self, numeric: List[str], categorical: List[str],
                 text: Mapping[str, Tuple[str, str]], present: Sequence[str] = ()):
        self._numeric = list(numeric)
        self._categorical = list(categorical)
        self._text = dict(text)
        self._present = list(present)

    def create_accumulator(self):
        return {
            "numeric": {n: (_EMPTY, {}) for n in self._numeric},
            "categorical": {n: [0, 0] for n in self._categorical},
            # per text column: [tokens in all, {tokens per row (capped): rows}]
            "text": {n: [0, {}] for n in self._text},
            "present": {n: 0 for n in self._present},
            "rows": 0,
        }

    def add_input(self, accumulator, batch: pa.RecordBatch):
        accumulator["rows"] += batch.num_rows
        for name in accumulator["present"]:
            accumulator["present"][name] += rows_with_a_value(
                batch.column(batch.schema.get_field_index(name)))
        for name, (moments, sketch) in accumulator["numeric"].items():
            column = batch.column(batch.schema.get_field_index(name))
            lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False)
            values = pc.list_flatten(column).to_numpy(zero_copy_only=False).astype(np.float64)
            missing = int((lengths == 0).sum())
            if values.size:
                mean = float(values.mean())
                batch_moments = (int(values.size), mean, float(((values - mean) ** 2).sum()),
                                 float(values.min()), float(values.max()), missing)
                _add_counts(sketch, sketch_keys(values[np.isfinite(values)]))
            else:
                batch_moments = _EMPTY[:5] + (missing,)
            accumulator["numeric"][name] = (_merge(moments, batch_moments), sketch)
        for name, counts in accumulator["categorical"].items():
            column = batch.column(batch.schema.get_field_index(name))
            present = int(pc.sum(pc.greater(pc.fill_null(pc.list_value_length(column), 0), 0))
                          .as_py() or 0)
            counts[0] += present
            counts[1] += batch.num_rows - present
        for name, text in accumulator["text"].items():
            column_name, mode = self._text[name]
            column = batch.column(batch.schema.get_field_index(column_name))
            texts = pc.fill_null(pc.list_element(
                pc.if_else(pc.greater(pc.fill_null(pc.list_value_length(column), 0), 0),
                           column, pa.scalar([b""], column.type)), 0), b"")
            texts = standardize_text(pc.cast(texts, pa.large_string()), mode)
            pieces = pc.ascii_split_whitespace(texts)
            # Splitting "" or text ending in a space gives empty pieces, which are no token
            # (tf.strings.split, and so Keras and the vocabulary, drops them).
            words = pc.greater(pc.binary_length(pc.list_flatten(pieces)), 0)
            tokens = np.bincount(
                pc.list_parent_indices(pieces).to_numpy()[words.to_numpy(zero_copy_only=False)],
                minlength=batch.num_rows)
            text[0] += int(tokens.sum())
            # The cap only bounds the histogram's buckets; the total above is exact.
            _add_counts(text[1], np.minimum(tokens, MAX_TOKENS_PER_ROW))
        return accumulator

    def merge_accumulators(self, accumulators):
        merged = self.create_accumulator()
        for accumulator in accumulators:
            merged["rows"] += accumulator["rows"]
            for name, count in accumulator["present"].items():
                merged["present"][name] += count
            for name, (moments, sketch) in accumulator["numeric"].items():
                m_moments, m_sketch = merged["numeric"][name]
                for key, count in sketch.items():
                    m_sketch[key] = m_sketch.get(key, 0) + count
                merged["numeric"][name] = (_merge(m_moments, moments), m_sketch)
            for name, counts in accumulator["categorical"].items():
                merged["categorical"][name][0] += counts[0]
                merged["categorical"][name][1] += counts[1]
            for name, (tokens, lengths) in accumulator["text"].items():
                merged["text"][name][0] += tokens
                for key, count in lengths.items():
                    merged["text"][name][1][key] = merged["text"][name][1].get(key, 0) + count
        return merged

    def extract_output(self, accumulator) -> Dict:
        numeric = {}
        for name, ((n, mean, m2, lo, hi, missing), sketch) in accumulator["numeric"].items():
            numeric[name] = {
                "count": n, "missing": missing,
                "mean": mean if n else None, "variance": m2 / n if n else None,
                "min": lo if n else None, "max": hi if n else None,
                "sketch": [[*sketch_bounds(k), c] for k, c in sorted(sketch.items())],
            }
        text = {}
        for name, (tokens, lengths) in accumulator["text"].items():
            text[name] = {
                "rows": sum(lengths.values()),
                "tokens": tokens,
                "tokens_per_row": [[k, c] for k, c in sorted(lengths.items())],
            }
        return {
            "numeric": numeric,
            "categorical": {n: {"present": c[0], "missing": c[1]}
                            for n, c in accumulator["categorical"].items()},
            "text": text,
            "present": dict(accumulator["present"]),
            "rows": accumulator["rows"],
        }
