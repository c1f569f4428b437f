"""Packed analyzers (features.packing) learn exactly what per-feature analyzers learn.

Two checks, each against the same config with `pack=False` (every feature its own
tf.Transform analyzers, the path the Keras parity tests were first written against):

- the shared messy fixtures through the whole job on the default path: every vocabulary
  file byte for byte, and every transformed record (z-scores to float32 rounding);
- a generated 200-feature config (120 normalization, 60 string_lookup, 10
  text_vectorization, 10 hashing, with missing and NaN cells, an all-missing column,
  empty and all-OOV text, mask and OOV tokens) run through tf.Transform in memory:
  vocabularies byte for byte, outputs equal, z-scores against numpy's statistics.

The job's config adds features whose analyzers run beside the packed ones (a lookup
of imputed values, a median imputation, tf_idf's vocabulary with its document
frequencies), so packed and unpacked analyzers run side by side.

The packed graph must also be smaller: its Beam stages must not grow per feature.
"""

import contextlib
import functools
import os

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
import yaml

from tests.conftest import MESSY_FEATURES, run_messy
from tests.reference import read_transformed

WIDE_ROWS = 160
N_NUM, N_CAT, N_TEXT, N_HASH = 120, 60, 10, 10


@contextlib.contextmanager
def unpacked():
    """Within the block, the job builds its preprocessing_fn with `pack=False`."""
    from beam_pipeline.job import preprocessing
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(preprocessing, "preprocessing_fn_for",
                      functools.partial(preprocessing.preprocessing_fn_for, pack=False))
        yield


def _vocabulary_files(out_dir):
    assets = os.path.join(out_dir, "transform_fn", "assets")
    return {name: open(os.path.join(assets, name), "rb").read()
            for name in sorted(os.listdir(assets))}


# --------------------------------------------------------------------------- the job

# The messy default-path features, and analyzers that run beside the packed ones: a
# median imputation (its normalization's moments still pack), a lookup of most_frequent
# imputed values (learns alone) and tf_idf (its vocabulary and document frequencies learn
# alone).
JOB_FEATURES = dict(MESSY_FEATURES, **{
    "f_normal_median": {"kind": "normalization", "column": "f_normal", "impute": "median"},
    "f_uniform": {"kind": "normalization", "impute": "constant", "fill_value": 0.5},
    "cat_small_frequent": {"kind": "string_lookup", "column": "cat_small",
                           "impute": "most_frequent"},
    "text_tf_idf": {"kind": "text_vectorization", "column": "text", "max_tokens": 64,
                    "ngrams": 2, "output_mode": "tf_idf"},
})


@pytest.fixture(scope="module")
def packed_messy_run(messy_csv_dir, tmp_path_factory):
    return run_messy(messy_csv_dir, tmp_path_factory.mktemp("messy_packed"),
                     features=JOB_FEATURES)


@pytest.fixture(scope="module")
def unpacked_messy_run(messy_csv_dir, tmp_path_factory):
    with unpacked():
        return run_messy(messy_csv_dir, tmp_path_factory.mktemp("messy_unpacked"),
                         features=JOB_FEATURES)


def test_job_vocabularies_are_byte_identical(packed_messy_run, unpacked_messy_run):
    packed = _vocabulary_files(packed_messy_run[0].output.dir)
    alone = _vocabulary_files(unpacked_messy_run[0].output.dir)
    assert set(packed) == set(alone) and len(packed) >= 7
    for name in alone:
        assert packed[name] == alone[name], name


@pytest.mark.parametrize("split", ["train", "eval"])
def test_job_transformed_records_are_equal(packed_messy_run, unpacked_messy_run, split):
    packed = read_transformed(packed_messy_run[0].output.dir, split)
    alone = read_transformed(unpacked_messy_run[0].output.dir, split)
    assert packed.keys() == alone.keys()
    order_p, order_a = np.argsort(packed["id"], kind="stable"), np.argsort(alone["id"], kind="stable")
    assert len(order_a) > 0
    np.testing.assert_array_equal(packed["id"][order_p], alone["id"][order_a])
    for name, value in alone.items():
        if value.dtype.kind == "f":
            np.testing.assert_allclose(packed[name][order_p], value[order_a], rtol=1e-5,
                                       atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(packed[name][order_p], value[order_a], err_msg=name)


# --------------------------------------------------------------------------- 200 features

def _wide_columns_and_features():
    columns = [{"name": f"num_{i}", "type": "float"} for i in range(N_NUM)]
    columns += [{"name": f"cat_{i}", "type": "string"} for i in range(N_CAT)]
    columns += [{"name": f"text_{i}", "type": "string"} for i in range(N_TEXT)]
    columns += [{"name": f"hash_{i}", "type": "string"} for i in range(N_HASH)]
    features = {}
    for i in range(N_NUM):
        features[f"num_{i}"] = {"kind": "normalization"}
    features["num_2"].update(impute="constant", fill_value=-3.5)
    features["num_3"]["missing_indicator"] = True
    for i in range(N_CAT):
        features[f"cat_{i}"] = {"kind": "string_lookup"}
    features["cat_1"].update(max_tokens=8, min_frequency=2)
    features["cat_3"].update(max_tokens=30, num_oov_indices=3, output_mode="multi_hot")
    features["cat_4"].update(mask_token="m0", oov_token="[UNK]")
    for i in range(N_TEXT):
        features[f"text_{i}"] = {"kind": "text_vectorization", "max_tokens": 40,
                                 "output_sequence_length": 6}
    features["text_1"].update(ngrams=2, min_frequency=2)
    features["text_2"].update(output_mode="multi_hot", sparse=True)
    for i in range(N_HASH):
        features[f"hash_{i}"] = {"kind": "hashing", "num_bins": 16}
    return columns, features


def _wide_rows(seed=5):
    """Instance dicts (a VarLen value list per column, [] for a missing cell)."""
    rng = np.random.default_rng(seed)
    words = ["ka", "lo", "mi", "caf\u00e9", "\u4e2d", "", "a b", "m0", "[UNK]", "zz"]
    rows = []
    for r in range(WIDE_ROWS):
        row = {}
        for i in range(N_NUM):
            roll = rng.random()
            if i == 0 or roll < 0.1:  # num_0 is missing everywhere
                row[f"num_{i}"] = []
            elif roll < 0.15:
                row[f"num_{i}"] = [float("nan")]
            else:
                row[f"num_{i}"] = [float(rng.normal(i, 1 + i % 7))]
        for i in range(N_CAT):
            roll = rng.random()
            value = words[min(int(rng.zipf(1.3)), len(words)) - 1] + str(i % 3)
            row[f"cat_{i}"] = [] if roll < 0.1 else [value.encode()]
        for i in range(N_TEXT):
            n = 0 if r % 9 == 0 else int(rng.integers(1, 8))
            text = " ".join(words[min(int(rng.zipf(1.2)), 8) - 1] for _ in range(n))
            row[f"text_{i}"] = [] if r % 13 == 0 else [text.encode()]
        for i in range(N_HASH):
            row[f"hash_{i}"] = [f"h{int(rng.integers(0, 50))}".encode()]
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """The 200-feature config analyzed both ways in memory; (config, rows, outputs by mode)."""
    from beam_pipeline.config import load_config
    from beam_pipeline.job import preprocessing, schema
    root = tmp_path_factory.mktemp("wide")
    columns, features = _wide_columns_and_features()
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump({
        "input": {"file_pattern": str(root / "unused-*.csv")}, "columns": columns,
        "features": features, "output": {"dir": str(root / "out")}}))
    config = load_config(str(path))
    rows = _wide_rows()
    metadata = schema.raw_metadata(config.columns)
    outputs, transforms = {}, {}
    for pack in (True, False):
        out = str(root / f"pack_{pack}")
        p = beam.Pipeline()
        with tft_beam.Context(temp_dir=str(root / f"tmp_{pack}")):
            transform_fn = ((p | beam.Create(rows, reshuffle=False), metadata)
                            | tft_beam.AnalyzeDataset(
                                preprocessing.preprocessing_fn_for(config, pack=pack)))
            _ = transform_fn | tft_beam.WriteTransformFn(out)
            transforms[pack] = len(p.to_runner_api().components.transforms)
            p.run().wait_until_finish()
        outputs[pack] = out
    return config, rows, outputs, transforms


def _transformed(config, out, rows):
    """The transform graph applied to every row, as {output: numpy array}."""
    from beam_pipeline.job import schema
    tft_output = tft.TFTransformOutput(out)
    raw = {}
    for name, spec in schema.raw_feature_spec(config.columns).items():
        values = [row[name] for row in rows]
        indices = [[r, 0] for r, v in enumerate(values) if v]
        flat = [v[0] for v in values if v]
        raw[name] = tf.SparseTensor(
            tf.constant(indices, tf.int64, shape=[len(indices), 2]),
            tf.constant(flat, spec.dtype, shape=[len(flat)]), [len(rows), 1])
    result = tft_output.transform_raw_features(raw)
    return {k: tf.sparse.to_dense(v).numpy() if isinstance(v, tf.SparseTensor) else v.numpy()
            for k, v in result.items()}


def test_wide_vocabularies_are_byte_identical(wide):
    _, _, outputs, _ = wide
    packed, alone = _vocabulary_files(outputs[True]), _vocabulary_files(outputs[False])
    assert set(packed) == set(alone)
    assert len(alone) == N_CAT + N_TEXT
    for name in alone:
        assert packed[name] == alone[name], name


def test_wide_outputs_are_equal_and_statistics_are_numpys(wide):
    config, rows, outputs, _ = wide
    packed = _transformed(config, outputs[True], rows)
    alone = _transformed(config, outputs[False], rows)
    assert packed.keys() == alone.keys()
    for name, value in alone.items():
        if value.dtype.kind == "f":
            np.testing.assert_allclose(packed[name], value, rtol=1e-5, atol=1e-5,
                                       err_msg=name)
        else:
            np.testing.assert_array_equal(packed[name], value, err_msg=name)
    # The z-scores themselves, against numpy's mean and population variance.
    for i in (3, 4, 57, N_NUM - 1):
        values = np.array([row[f"num_{i}"][0] if row[f"num_{i}"] else np.nan
                           for row in rows], np.float64)
        present = values[~np.isnan(values)]
        expected = (values - present.mean()) / max(present.std(), 1e-7)
        expected[np.isnan(values)] = 0.0  # missing cells get the mean
        np.testing.assert_allclose(packed[f"num_{i}"], expected, rtol=1e-4, atol=1e-4)
    # num_0 has no value at all: whatever it becomes, both paths agree (checked above),
    # and constant imputation keeps its fill out of the statistics.
    values = np.array([row["num_2"][0] if row["num_2"] else -3.5 for row in rows])
    present = np.array([row["num_2"][0] for row in rows if row["num_2"]])
    present = present[~np.isnan(present)]
    filled = np.where(np.isnan(values), -3.5, values)
    np.testing.assert_allclose(packed["num_2"], (filled - present.mean()) / present.std(),
                               rtol=1e-4, atol=1e-4)


def test_packed_graph_does_not_grow_per_feature(wide):
    """Packed, the 200 features' analyzers are a handful of Beam stages; alone, thousands."""
    transforms = wide[3]
    assert transforms[True] * 10 < transforms[False], transforms
    assert transforms[True] < 1000, transforms


# --------------------------------------------------------------------------- tracing

# Ops that only a feature's input handling makes (densify, split, n-grams, escaping).
INPUT_OPS = ("SparseToDense", "StringSplitV2", "StringNGrams", "StaticRegexReplace")


def _traced_ops(config, pack):
    """{op type: count} of the ops outside the packed analyzers' scopes, and every op
    name, of the config's preprocessing_fn traced as a TF1 graph."""
    from tensorflow_transform import impl_helper
    from beam_pipeline.job import preprocessing, schema
    graph, _, _ = impl_helper.trace_preprocessing_function(
        preprocessing.preprocessing_fn_for(config, pack=pack),
        schema.raw_feature_spec(config.columns), use_tf_compat_v1=True)
    ops = graph.get_operations()
    counts = {}
    for op in ops:
        if not op.name.startswith("packed_"):
            counts[op.type] = counts.get(op.type, 0) + 1
    return counts, {op.name for op in ops}


@pytest.fixture(scope="module")
def small_config(tmp_path_factory):
    """Every packable kind once, and a normalization for each impute option."""
    from beam_pipeline.config import load_config
    root = tmp_path_factory.mktemp("small")
    features = {
        "n_default": {"kind": "normalization", "column": "num"},
        "n_median": {"kind": "normalization", "column": "num", "impute": "median"},
        "n_mean": {"kind": "normalization", "column": "num", "impute": "mean",
                   "missing_indicator": True},
        "n_frequent": {"kind": "normalization", "column": "num", "impute": "most_frequent"},
        "n_constant": {"kind": "normalization", "column": "num", "impute": "constant",
                       "fill_value": 2.0},
        "cat": {"kind": "string_lookup", "max_tokens": 10, "mask_token": "m"},
        "cat_frequent": {"kind": "string_lookup", "column": "cat", "impute": "most_frequent"},
        "text": {"kind": "text_vectorization", "ngrams": 2, "max_tokens": 20,
                 "output_sequence_length": 4},
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump({
        "input": {"file_pattern": str(root / "unused-*.csv")},
        "columns": [{"name": "num", "type": "float"}, {"name": "cat", "type": "string"},
                    {"name": "text", "type": "string"}],
        "features": features, "output": {"dir": str(root / "out")}}))
    return load_config(str(path))


def test_each_feature_traces_its_inputs_once(small_config):
    """Plan and transform share the tensors the plan computed (`Pack.keep`): the packed
    graph has no more input-handling ops than the unpacked one, which traces each
    feature once."""
    packed, _ = _traced_ops(small_config, pack=True)
    alone, _ = _traced_ops(small_config, pack=False)
    for op_type in INPUT_OPS:
        assert alone.get(op_type, 0) > 0, op_type
        assert packed.get(op_type, 0) == alone[op_type], (op_type, packed.get(op_type),
                                                          alone[op_type])


def test_every_scalar_normalization_packs_whatever_its_impute(small_config):
    """Moments are of the present values, so a learned imputation does not keep a
    normalization out of the packed moments; a lookup that counts imputed values stays out."""
    _, names = _traced_ops(small_config, pack=True)
    for name in ("n_default", "n_median", "n_mean", "n_frequent", "n_constant"):
        assert f"{name}_packed_mean" in names, name
        assert not any(n.startswith(f"{name}_mean/") for n in names), name
    packed_vocabularies = [n for n in names if n.startswith("packed_vocabularies")]
    assert packed_vocabularies
    assert any(n.startswith("cat_frequent_vocabulary/") for n in names)
