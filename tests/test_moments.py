"""Means and variances accumulate in float64 and are rounded to float32 once, where stored.

Values around 1e6 with unit spread (the case where float32 accumulation loses the
variance: tft's float32 `mean_and_var` and the packed combiner were hundreds of ulps
off there) in four CSV shards, so tf.Transform merges several batches. The reference is
numpy float64 over the float32 values the job read (the passthrough copy of the column in
the train split's TFRecords). Both paths are run, packed (features/packing.py) and not
(each feature its own analyzers, see test_packing.unpacked): the stored float32 mean and
variance must be within one float32 ulp of the exact values, the two paths must store
exactly the same constants and write exactly the same z-scores, and the z-scores must be
numpy's `(x - mean) / std` of the stored float32 statistics.
"""

import os

import numpy as np
import pytest

from tests.conftest import write_config
from tests.reference import read_transformed
from tests.test_packing import unpacked

ROWS, SHARDS = 3000, 4
OFFSET = 1e6

COLUMNS = [{"name": "id", "type": "int"}, {"name": "x", "type": "float"},
           {"name": "y", "type": "float"}]
FEATURES = {
    "id": {"kind": "passthrough"},
    "x": {"kind": "normalization"},
    "x_raw": {"kind": "passthrough", "column": "x"},
    # y has missing cells: its normalization imputes them with its mean (z = 0), and a
    # passthrough fills them with the learned mean (impute.statistic), written as is.
    "y": {"kind": "normalization"},
    "y_raw": {"kind": "passthrough", "column": "y", "missing_indicator": True},
    "y_filled": {"kind": "passthrough", "column": "y", "impute": "mean"},
}


def _write_shards(folder):
    rng = np.random.default_rng(32)
    x = (OFFSET + rng.normal(0.0, 1.0, ROWS)).astype(np.float32)
    y = (OFFSET - 3.0 + rng.normal(0.0, 2.0, ROWS)).astype(np.float32)
    y_missing = rng.random(ROWS) < 0.2
    os.makedirs(folder)
    for shard in range(SHARDS):
        with open(os.path.join(folder, f"part-{shard}.csv"), "w") as f:
            f.write("id,x,y\n")
            for i in range(shard, ROWS, SHARDS):
                # repr of the float32 as a Python float: the text parses back to it exactly.
                y_text = "" if y_missing[i] else repr(float(y[i]))
                f.write(f"{i},{float(x[i])!r},{y_text}\n")
    return folder


@pytest.fixture(scope="module")
def offset_csv(tmp_path_factory):
    return _write_shards(str(tmp_path_factory.mktemp("offset") / "csv"))


def _run(csv_dir, root):
    from beam_pipeline.config import load_config
    from beam_pipeline.job import preprocess
    path = write_config(root / "config.yaml", {
        "input": {"file_pattern": os.path.join(csv_dir, "part-*"), "header": True},
        "columns": COLUMNS, "split": {"key": "id", "eval_fraction": 0.25},
        "features": FEATURES, "output": {"dir": str(root / "out")}})
    config = load_config(path)
    preprocess.run(config, preprocess.pipeline_options([]))
    return config


@pytest.fixture(scope="module")
def runs(offset_csv, tmp_path_factory):
    """{"packed": config, "unpacked": config} of the same job run both ways."""
    packed = _run(offset_csv, tmp_path_factory.mktemp("packed"))
    with unpacked():
        alone = _run(offset_csv, tmp_path_factory.mktemp("unpacked"))
    return {"packed": packed, "unpacked": alone}


def stored_moments(config, name):
    """The float32 (mean, var) constants the transform graph of feature `name` uses."""
    from beam_pipeline.serving.keras_layers.kinds import normalization_moments
    from beam_pipeline.serving.keras_layers.state import State
    feature = next(f for f in config.features if f.name == name)
    return normalization_moments(feature, State(config.output.dir))


def exact(values):
    """numpy float64 mean and population variance of the float32 `values`."""
    values = np.asarray(values, np.float32).astype(np.float64)
    return values.mean(), values.var()


def train_values(config, column):
    """The float32 values of `column` the job read for the train split."""
    records = read_transformed(config.output.dir, "train")
    values = records[f"{column}_raw"]
    if f"{column}_raw_missing" in records:
        values = values[records[f"{column}_raw_missing"] == 0]
    return values


def ulps(stored, reference):
    """|stored - reference| in float32 ulps at the reference."""
    return abs(stored - reference) / float(np.spacing(np.float32(reference)))


@pytest.mark.parametrize("path", ["packed", "unpacked"])
@pytest.mark.parametrize("name", ["x", "y"])
def test_stored_moments_are_within_one_float32_ulp(runs, path, name):
    config = runs[path]
    mean, var = stored_moments(config, name)
    exact_mean, exact_var = exact(train_values(config, name))
    assert 0.5 < exact_var < 5 and abs(exact_mean - OFFSET) < 5  # the data is what it says
    assert ulps(mean, exact_mean) <= 1, (mean, exact_mean)
    assert ulps(var, exact_var) <= 1, (var, exact_var, ulps(var, exact_var))


@pytest.mark.parametrize("name", ["x", "y"])
def test_packed_and_unpacked_store_and_write_the_same(runs, name):
    assert stored_moments(runs["packed"], name) == stored_moments(runs["unpacked"], name)
    packed = read_transformed(runs["packed"].output.dir, "train")
    alone = read_transformed(runs["unpacked"].output.dir, "train")
    order_p, order_a = np.argsort(packed["id"]), np.argsort(alone["id"])
    np.testing.assert_array_equal(packed["id"][order_p], alone["id"][order_a])
    np.testing.assert_array_equal(packed[name][order_p], alone[name][order_a])


@pytest.mark.parametrize("path", ["packed", "unpacked"])
@pytest.mark.parametrize("name", ["x", "y"])
def test_z_scores_are_numpys(runs, path, name):
    config = runs[path]
    records = read_transformed(config.output.dir, "train")
    exact_mean, exact_var = exact(train_values(config, name))
    # The graph computes in float32 from the float32 statistics; x - mean is exact there
    # (both near 1e6), so what is left is the rounding of the statistics and of one
    # division: numpy's z-score of the correctly rounded statistics, to ~1e-7 relative.
    mean32 = np.float32(exact_mean)
    std32 = np.sqrt(np.float32(exact_var)).astype(np.float64)
    x = records[f"{name}_raw"].astype(np.float64)
    expected = (x - float(mean32)) / std32
    if f"{name}_raw_missing" in records:
        expected[records[f"{name}_raw_missing"] == 1] = 0.0  # imputed with the mean
    np.testing.assert_allclose(records[name], expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("path", ["packed", "unpacked"])
def test_imputed_mean_is_within_one_float32_ulp(runs, path):
    config = runs[path]
    records = read_transformed(config.output.dir, "train")
    exact_mean, _ = exact(train_values(config, "y"))
    filled = records["y_filled"][records["y_raw_missing"] == 1]
    assert filled.size > 0 and np.all(filled == filled[0])
    assert ulps(float(filled[0]), exact_mean) <= 1, (float(filled[0]), exact_mean)


def test_train_statistics_are_float64_exact(runs):
    """statistics/train.json (job/statistics.py) describes the same values in float64."""
    from beam_pipeline.job import pipeline
    from beam_pipeline.outputs import layout
    config = runs["packed"]
    statistics = pipeline.read_statistics(layout.statistics_path(config.output.dir))
    for name in ("x", "y"):
        exact_mean, exact_var = exact(train_values(config, name))
        numeric = statistics["numeric"][name]
        assert numeric["mean"] == pytest.approx(exact_mean, rel=1e-13, abs=0)
        assert numeric["variance"] == pytest.approx(exact_var, rel=1e-9, abs=0)
