"""Discretization `num_bins`: the boundaries Keras's own `Discretization.adapt()` learns.

The reference is Keras 3 itself: `keras.layers.Discretization(num_bins=..).adapt(array)`
and its numpy helpers (keras/src/layers/preprocessing/discretization.py). Tested:
  * the helpers of `features.keras_quantiles` in float32 against Keras's, bit for bit;
  * the combiner, fed random batches and merged in random trees, against adapt() on the
    whole array (bit for bit up to `PENDING_VALUES` values; within epsilon in rank
    beyond, where it is also compared with adapt() of the whole array);
  * one pipeline run of 24 discretization features over different CSV columns (ties,
    duplicates, fewer distinct values than bins, negatives, missing cells, sizes below
    and above 1/epsilon), boundaries read from the transform graph as the Keras-layer
    export reads them, against adapt() on each column's present train values.
"""

import csv
import os

import numpy as np
import pytest

from beam_pipeline.features import keras_quantiles as kq
from tests.conftest import write_config

keras = pytest.importorskip("keras")
kd = pytest.importorskip("keras.src.layers.preprocessing.discretization")


def keras_adapt(values, num_bins, epsilon=0.01):
    layer = keras.layers.Discretization(num_bins=num_bins, epsilon=epsilon)
    layer.adapt(np.asarray(values, np.float32))
    return np.array(layer.bin_boundaries, np.float32)


def seeded_array(seed):
    """A float32 array of one of several shapes of data, sized below and above 1/epsilon."""
    rng = np.random.default_rng(seed)
    n = int(rng.choice([1, 2, 3, 7, 30, 99, 100, 101, 150, 640, 2500]))
    shape = seed % 6
    if shape == 0:
        x = rng.integers(-5, 5, n)  # ties, negatives
    elif shape == 1:
        x = rng.normal(0, 1000, n)
    elif shape == 2:
        x = np.round(rng.exponential(3, n), 1)  # duplicates
    elif shape == 3:
        x = rng.choice([-2.5, 0.0, 7.0], n)  # fewer distinct values than bins
    elif shape == 4:
        x = rng.normal(0, 1, n) * 10.0 ** rng.integers(-3, 7, n)  # wide range, outliers
    else:
        x = np.full(n, -3.25)  # constant
    return x.astype(np.float32)


SEEDS = range(40)
BINS = (2, 3, 4, 5, 7, 10, 11)


# ---------------------------------------------------------------- helpers vs Keras's own


@pytest.mark.parametrize("seed", range(30))
def test_float32_helpers_are_kerass_bit_for_bit(seed):
    rng = np.random.default_rng(seed)
    x = seeded_array(seed)
    eps = float(rng.choice([0.01, 0.05, 0.2]))
    f32 = np.float32
    ours, theirs = kq.summarize(x, eps, f32), kd.summarize(x, eps)
    assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs)
    other = kd.summarize(seeded_array(seed + 100), eps)
    merged = kq.merge_summaries(theirs, other, eps, f32)
    np.testing.assert_array_equal(merged, kd.merge_summaries(theirs, other, eps))
    for bins in BINS:
        np.testing.assert_array_equal(kq.get_bin_boundaries(merged, bins, f32),
                                      kd.get_bin_boundaries(merged, bins))


@pytest.mark.parametrize("seed", SEEDS)
def test_adapt_one_array_is_kerass(seed):
    x = seeded_array(seed)
    for bins in BINS:
        np.testing.assert_array_equal(kq.adapt_one_array(x, bins, 0.01), keras_adapt(x, bins),
                                      err_msg=f"n={x.size}, bins={bins}")


def test_float64_helpers_match_kerass_to_float32_rounding():
    """The float64 steps (used to merge summaries across batches) are Keras's: they
    differ from its float32 ones only by float32 rounding."""
    for seed in range(20):
        x = seeded_array(seed)
        span = float(x.max() - x.min()) or 1.0
        s64 = kq.merge_summaries(kq.summarize(x, 0.01), kq.empty_summary(), 0.01)
        s32 = kd.merge_summaries(kd.summarize(x, 0.01), np.zeros([2, 0], np.float32), 0.01)
        assert s64.dtype == np.float64 and s64.shape == s32.shape
        np.testing.assert_allclose(s64, s32, rtol=1e-5, atol=1e-5 * span)


def test_issue_examples():
    """Issue 32's cases: tft's quantiles learned [3, 5] and [0, 1, 1, 5]."""
    np.testing.assert_array_equal(kq.adapt_one_array(np.arange(1, 7), 3, 0.01), [2, 4])
    np.testing.assert_array_equal(keras_adapt(np.arange(1, 7), 3), [2, 4])
    np.testing.assert_array_equal(kq.adapt_one_array(np.array([0, 1, 5]), 5, 0.01), [0, 1])
    np.testing.assert_array_equal(keras_adapt([0, 1, 5], 5), [0, 1])


# ---------------------------------------------------------------- the combiner


def combine(values, num_bins, epsilon=0.01, pending_values=kq.PENDING_VALUES, seed=0):
    """The combiner as a runner would use it: random batches, added into several
    accumulators, compacted (a bundle's end), encoded by the cache coder, then merged in a
    random tree."""
    rng = np.random.default_rng(seed)
    combiner = kq.KerasQuantilesCombiner(num_bins, epsilon, pending_values)
    cuts = np.sort(rng.integers(0, len(values) + 1, rng.integers(0, 12)))
    batches = np.split(np.asarray(values), cuts)
    accumulators = [combiner.create_accumulator() for _ in range(int(rng.integers(1, 5)))]
    for batch in batches:
        i = int(rng.integers(len(accumulators)))
        accumulators[i] = combiner.add_input(accumulators[i], [batch])
    coder = combiner.accumulator_coder
    accumulators = [coder.decode_cache(coder.encode_cache(combiner.compact(a)))
                    for a in accumulators]
    while len(accumulators) > 1:
        k = int(rng.integers(2, len(accumulators) + 1))
        rng.shuffle(accumulators)
        accumulators = [combiner.merge_accumulators(accumulators[:k])] + accumulators[k:]
    (boundaries,) = combiner.extract_output(accumulators[0])
    assert boundaries.dtype == np.float32
    return boundaries


@pytest.mark.parametrize("seed", SEEDS)
def test_combiner_equals_adapt_on_one_array(seed):
    x = seeded_array(seed)
    for bins in BINS:
        np.testing.assert_array_equal(combine(x, bins, seed=seed * 31 + bins),
                                      keras_adapt(x, bins), err_msg=f"n={x.size} bins={bins}")


def test_combiner_of_nothing_has_no_boundaries():
    assert combine(np.zeros([0], np.float32), 4).shape == (0,)


def rank_errors(boundaries, values, num_bins):
    """Per boundary, the distance in rank fraction from the quantile it stands for (0 when
    the quantile's rank falls among the boundary's ties)."""
    v = np.sort(values.astype(np.float64))
    n = len(v)
    out = []
    for i, b in enumerate(boundaries.astype(np.float64), start=1):
        lo, hi = np.searchsorted(v, b, "left"), np.searchsorted(v, b, "right")
        target = i / num_bins * n
        out.append(max(lo - target, target - hi, 0.0) / n)
    return np.array(out)


@pytest.mark.parametrize("seed", range(6))
def test_combiner_beyond_pending_is_within_epsilon(seed):
    """More values than one accumulator keeps raw (a small `pending_values` makes that
    20,000): Keras's algorithm over batches, each boundary within epsilon in rank of the
    exact quantile, as is Keras's adapt() of the whole array, and the two within
    2 epsilon of each other."""
    rng = np.random.default_rng(seed)
    n = 20_000
    x = [rng.lognormal(3, 1, n), rng.normal(-5, 2, n), rng.integers(-50, 50, n),
         rng.uniform(0, 100, n), np.round(rng.exponential(2, n), 1), rng.standard_t(2, n)][seed]
    x = x.astype(np.float32)
    for bins in (2, 4, 10):
        for eps in (0.01, 0.02):
            ours = combine(x, bins, eps, pending_values=2_000, seed=seed)
            theirs = keras_adapt(x, bins, eps)
            assert ours.shape == theirs.shape == (bins - 1,)
            assert rank_errors(ours, x, bins).max() <= eps, (bins, eps, ours)
            assert rank_errors(theirs, x, bins).max() <= eps
            # Each of ours sits within 2 epsilon (in rank, ties as one range) of Keras's
            # one-array value.
            v = np.sort(x.astype(np.float64))
            for a, b in zip(ours.astype(np.float64), theirs.astype(np.float64)):
                a_lo, a_hi = np.searchsorted(v, a, "left"), np.searchsorted(v, a, "right")
                b_lo, b_hi = np.searchsorted(v, b, "left"), np.searchsorted(v, b, "right")
                assert max(a_lo - b_hi, b_lo - a_hi, 0) / n <= 2 * eps, (a, b)


def test_combiner_beyond_pending_is_kerass_over_those_batches(monkeypatch):
    """With merges compressed at Keras's own epsilon (MERGE_RESOLUTION 1) and one
    accumulator fed in order, the result is Keras's adapt() over the batches the
    accumulator summarized (each `pending_values` values), up to float32 rounding: the
    merge rule is Keras's."""
    monkeypatch.setattr(kq, "MERGE_RESOLUTION", 1)
    rng = np.random.default_rng(5)
    x = rng.normal(0, 10, 10_000).astype(np.float32)
    combiner = kq.KerasQuantilesCombiner(5, 0.01, pending_values=1_000)
    acc = combiner.create_accumulator()
    for batch in np.split(x, 10):
        acc = combiner.add_input(acc, [batch])
    (ours,) = combiner.extract_output(acc)
    layer = keras.layers.Discretization(num_bins=5)
    layer.adapt([batch for batch in np.split(x, 10)])
    np.testing.assert_allclose(ours, layer.bin_boundaries, rtol=1e-5)


# ---------------------------------------------------------------- through the pipeline

ROWS = 400
PIPELINE_COLUMNS = 24


def column_values(i):
    """Column i's float32 values over ROWS rows, NaN where the cell is left empty: the
    present count varies (3 .. 400, below and above 1/epsilon)."""
    rng = np.random.default_rng(1000 + i)
    x = seeded_array(i).astype(np.float64)
    x = np.resize(x, ROWS) if x.size < ROWS else x[:ROWS]
    present_count = [3, 10, 50, 99, 100, 101, 250, 400][i % 8]
    x[rng.permutation(ROWS)[present_count:]] = np.nan
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def bins_run(tmp_path_factory):
    """One in-process pipeline run: PIPELINE_COLUMNS discretization features (one per
    column, bins 2..11, one with epsilon 0.05), every row in train."""
    from beam_pipeline.config import load_config  # pylint: disable=import-outside-toplevel
    from beam_pipeline.job import preprocess  # pylint: disable=import-outside-toplevel

    root = tmp_path_factory.mktemp("keras_bins")
    data = root / "data"
    os.makedirs(data)
    columns = {f"c{i}": column_values(i) for i in range(PIPELINE_COLUMNS)}
    with open(data / "part-0.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id"] + list(columns))
        for r in range(ROWS):
            # repr of a float32's float64 value reads back as the same float32.
            w.writerow([r] + ["" if np.isnan(v[r]) else repr(float(v[r]))
                              for v in columns.values()])
    features = {"id": {"kind": "passthrough"}}
    specs = {}
    for i, name in enumerate(columns):
        spec = {"kind": "discretization", "column": name, "num_bins": BINS[i % len(BINS)]}
        if i == 5:
            spec["epsilon"] = 0.05
        features[f"{name}_bins"] = spec
        specs[f"{name}_bins"] = (columns[name], spec)
    # tf.Transform's sketch stays available as an explicit option.
    features["c6_tft"] = {"kind": "discretization", "column": "c6", "num_bins": 4,
                          "method": "tft_quantiles"}
    config = {
        "input": {"format": "csv", "file_pattern": str(data / "part-*"), "header": True},
        "columns": [{"name": "id", "type": "int"}] +
                   [{"name": n, "type": "float"} for n in columns],
        "split": {"eval_fraction": 0.0, "key": "id"},
        "features": features,
        "output": {"dir": str(root / "out"), "num_shards": 1},
    }
    path = write_config(root / "config.yaml", config)
    preprocess.run(load_config(path), preprocess.pipeline_options([]))
    return str(root / "out"), specs


def test_pipeline_tft_quantiles_option(bins_run):
    """`method: tft_quantiles` learns tf.Transform's quantiles: always num_bins - 1
    boundaries, each within epsilon * rows ranks."""
    from beam_pipeline.config import load_config  # pylint: disable=import-outside-toplevel
    from beam_pipeline.serving.keras_layers import state as state_lib  # noqa

    out, specs = bins_run
    state = state_lib.State(out)
    config = load_config(os.path.join(os.path.dirname(out), "config.yaml"))
    feature = next(f for f in config.features if f.name == "c6_tft")
    assert feature.method == "tft_quantiles"
    caps, _ = state_lib.kind_captures(state, feature)
    learned = np.ravel(caps[-1].value)
    values = specs["c6_bins"][0]
    values = values[~np.isnan(values)]
    assert learned.shape == (3,)
    assert rank_errors(learned, values, 4).max() <= 0.01 + 1 / values.size


def test_method_option_is_checked():
    from beam_pipeline.features import KINDS  # pylint: disable=import-outside-toplevel
    make = KINDS["discretization"].from_options
    assert make("b", "x", "float", {"num_bins": 3}).method == "keras"
    with pytest.raises(ValueError, match="method"):
        make("b", "x", "float", {"num_bins": 3, "method": "exact"})
    with pytest.raises(ValueError, match="method"):
        make("b", "x", "float", {"bin_boundaries": [1.0], "method": "tft_quantiles"})


def test_pipeline_boundaries_equal_keras_adapt(bins_run):
    """Every feature's learned boundaries, read from the transform graph as the Keras-layer
    export reads them (`serving.keras_layers.state`), equal adapt() on the column's present
    values, bit for bit."""
    from beam_pipeline.config import load_config  # pylint: disable=import-outside-toplevel
    from beam_pipeline.serving.keras_layers import state as state_lib  # noqa

    out, specs = bins_run
    state = state_lib.State(out)
    config = load_config(os.path.join(os.path.dirname(out), "config.yaml"))
    by_name = {f.name: f for f in config.features}
    checked = 0
    for name, (values, spec) in specs.items():
        caps, _ = state_lib.kind_captures(state, by_name[name])
        learned = np.ravel(caps[-1].value).astype(np.float32)
        present_values = values[~np.isnan(values)]
        expected = keras_adapt(present_values, spec["num_bins"], spec.get("epsilon", 0.01))
        np.testing.assert_array_equal(learned, expected,
                                      err_msg=f"{name}: {present_values.size} values, {spec}")
        checked += 1
    assert checked == PIPELINE_COLUMNS


def test_pipeline_buckets_equal_keras_layer(bins_run):
    """The transformed data's buckets are the adapted Keras layer's on every present cell,
    and the last bucket for a missing one (Keras's NaN rule)."""
    from tests import reference  # pylint: disable=import-outside-toplevel

    out, specs = bins_run
    data = reference.read_transformed(out, "train")
    order = np.argsort(data["id"])
    for name, (values, spec) in specs.items():
        layer = keras.layers.Discretization(num_bins=spec["num_bins"],
                                            epsilon=spec.get("epsilon", 0.01))
        layer.adapt(values[~np.isnan(values)])
        expected = np.asarray(layer(values[data["id"][order]])).astype(np.int64)
        np.testing.assert_array_equal(np.asarray(data[name])[order].reshape(-1), expected,
                                      err_msg=name)
