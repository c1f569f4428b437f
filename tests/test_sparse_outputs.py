"""`sparse: true` vector features: stored as indices and values, read and served dense.

One run of the default-path config over the messy shards (empty and all-OOV text,
Unicode, missing cells) with each vector kind twice, dense and `sparse: true`, on the
same column. The sparse twin must be stored as a `SparseFeature` holding only the
nonzero columns, and give exactly the dense twin's vectors in `Output.dataset` and in the
exported model, which a fresh process loads with TensorFlow alone.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import run_messy

TEXT_TOKENS = 400
PAIRS = {
    "text_tf_idf": {"kind": "text_vectorization", "column": "text", "max_tokens": TEXT_TOKENS,
                    "ngrams": 2, "output_mode": "tf_idf"},
    "text_count": {"kind": "text_vectorization", "column": "text", "max_tokens": TEXT_TOKENS,
                   "output_mode": "count"},
    "cat_big_multi_hot": {"kind": "string_lookup", "column": "cat_big", "max_tokens": 100,
                          "num_oov_indices": 2, "output_mode": "multi_hot"},
    "int_cat_hash_count": {"kind": "hashing", "column": "int_cat", "num_bins": 50,
                           "output_mode": "count"},
}
FEATURES = {"id": {"kind": "passthrough"}}
for _name, _options in PAIRS.items():
    FEATURES[_name] = _options
    FEATURES[f"{_name}_sparse"] = dict(_options, sparse=True)

SERVE = """
import json, sys
import numpy as np, tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
rows = json.loads(sys.argv[2])
specs = model.signatures["serving_raw"].structured_input_signature[1]
raw = {k: tf.constant(v, specs[k].dtype) for k, v in rows.items()}
out = {f"predict_{k}": v.numpy() for k, v in model.signatures["serving_raw"](**raw).items()}
out.update({f"transform_{k}": v.numpy()
            for k, v in model.signatures["transform_raw"](**raw).items()})
assert "tensorflow_transform" not in sys.modules and "beam_pipeline" not in sys.modules
np.savez(sys.argv[3], **out)
"""

SERVED_ROWS = {
    "id": [1, 2, 3, 4, 5],
    "f_normal": [0.0, 1.0, float("nan"), 2.0, -1.0],
    "f_uniform": [0.5, 0.1, 0.2, float("nan"), 0.9],
    "f_missing": [float("nan")] * 5,
    "cat_small": ["a", "", "b", "zz", "a"],
    "cat_mid": ["x", "y", "", "z", "x"],
    "cat_big": ["c1", "", "never seen", "c2", "c1"],
    "int_cat": [3, -2**63, 7, 0, 3],
    "text": ["", "ka lo mi ka", "unseenword only", "caf\u00e9 ka ka ka lo", "[UNK] ta ta"],
}


@pytest.fixture(scope="module")
def run(messy_csv_dir, tmp_path_factory):
    from beam_pipeline import api
    config, summary = run_messy(messy_csv_dir, tmp_path_factory.mktemp("sparse_run"),
                                features=FEATURES)
    return api.Output(config), summary


def test_sparse_twins_are_stored_as_sparse_features(run):
    output, _ = run
    stored = output.tft_output.transformed_feature_spec()
    for name, options in PAIRS.items():
        depth = options.get("max_tokens") or options.get("num_bins")
        assert isinstance(stored[f"{name}_sparse"], tf.io.SparseFeature), stored[name]
        assert list(stored[f"{name}_sparse"].size) == [depth]
        assert isinstance(stored[name], tf.io.FixedLenFeature)
        # What models see is the dense shape either way.
        assert output.features[f"{name}_sparse"].shape == output.features[name].shape
        assert output.feature_spec([name])[name] == output.feature_spec(
            [f"{name}_sparse"])[f"{name}_sparse"]


def test_records_hold_only_the_nonzero_columns(run):
    output, _ = run
    from beam_pipeline.outputs import layout
    stored = output.tft_output.transformed_feature_spec()
    spec = stored["text_tf_idf_sparse"]
    files = tf.io.gfile.glob(layout.data_pattern(output.path, "train"))
    nonzero = values_kept = rows = 0
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        example = tf.train.Example.FromString(record.numpy())
        feature = example.features.feature
        dense = feature["text_tf_idf"].float_list.value
        values = feature[spec.value_key].float_list.value
        indices = feature[spec.index_key[0]].int64_list.value
        assert len(dense) == TEXT_TOKENS
        np.testing.assert_array_equal(np.flatnonzero(dense), indices)
        np.testing.assert_array_equal(np.asarray(dense)[list(indices)], values)
        nonzero, values_kept, rows = nonzero + np.count_nonzero(dense), values_kept + len(values), rows + 1
    assert rows > 100 and values_kept == nonzero and nonzero < rows * TEXT_TOKENS / 10


@pytest.mark.parametrize("split", ["train", "eval"])
def test_dataset_gives_the_dense_twins_vectors(run, split):
    output, _ = run
    got = {name: [] for name in FEATURES}
    for features, _ in output.dataset(split, batch_size=300):
        for name in FEATURES:
            got[name].append(features[name].numpy())
    for name in PAIRS:
        dense, sparse = np.concatenate(got[name]), np.concatenate(got[f"{name}_sparse"])
        assert sparse.dtype == np.float32 and sparse.shape == dense.shape
        np.testing.assert_array_equal(sparse, dense)
        assert np.count_nonzero(dense) > 0, name


def test_served_predictions_equal_the_dense_path(run, tmp_path):
    import keras
    output, _ = run
    inputs = output.transformed_inputs(list(FEATURES))
    heads = {}
    for name in PAIRS:
        # One layer for both twins: equal inputs must give equal predictions.
        layer = keras.layers.Dense(3, name=f"dense_{name}")
        heads[name] = layer(inputs[name])
        heads[f"{name}_sparse"] = layer(inputs[f"{name}_sparse"])
    model = keras.Model(inputs, heads)
    export_dir = output.export(model, str(tmp_path / "serving"))
    result = tmp_path / "served.npz"
    subprocess.run([sys.executable, "-c", SERVE, export_dir, json.dumps(SERVED_ROWS),
                    str(result)], check=True, env=dict(os.environ, PYTHONPATH=""),
                   cwd=str(tmp_path))
    served = np.load(result)
    for name in PAIRS:
        np.testing.assert_array_equal(served[f"transform_{name}_sparse"],
                                      served[f"transform_{name}"])
        np.testing.assert_array_equal(served[f"predict_{name}_sparse"],
                                      served[f"predict_{name}"])
        assert served[f"transform_{name}"].shape[0] == len(SERVED_ROWS["id"])
    # The text rows that have known tokens get nonzero vectors; the empty one none.
    assert not served["transform_text_count_sparse"][0].any()
    assert served["transform_text_count_sparse"][1].any()
