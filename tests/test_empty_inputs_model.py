"""The built-in model on rows whose id sequences are all padding (empty text, an empty
multivalent cell), and `train`'s guard against NaN losses and predictions.

Fast: no pipeline. The model is built by `beam_pipeline.serving.model.build_model` on synthetic
inputs shaped like the transformed features (int64 id sequences padded with 0, a scalar
lookup id, a normalized number).
"""

import os
import subprocess
import sys
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from beam_pipeline.serving import model as model_lib
from beam_pipeline.serving import train as train_lib
from beam_pipeline.config import ModelConfig

STEPS, TAGS = 8, 4
SPEC = {
    "text": tf.io.FixedLenFeature([STEPS], tf.int64),  # text_vectorization, int mode
    "tags": tf.io.FixedLenFeature([TAGS], tf.int64),  # a multivalent lookup
    "cat": tf.io.FixedLenFeature([], tf.int64),  # a lookup id (one-hot: 6 <= one_hot_max)
    "num": tf.io.FixedLenFeature([], tf.float32),  # a normalized number
}
SIZES = {"text": 50, "tags": 12, "cat": 6}
CONFIG = types.SimpleNamespace(features=())  # no image features


def _build(**model_options):
    mc = ModelConfig(hidden_units=(16, 8), epochs=2, batch_size=32, **model_options)
    return model_lib.build_model(CONFIG, mc, SPEC, SIZES, "binary", 1)


def _rows(n, seed, empty_share=0.3):
    """Synthetic transformed rows; the label depends on num and cat, not on the text."""
    rng = np.random.RandomState(seed)
    lengths = rng.randint(1, STEPS + 1, n)
    lengths[rng.random_sample(n) < empty_share] = 0  # empty text: padding only
    text = np.zeros((n, STEPS), np.int64)
    for i, length in enumerate(lengths):
        text[i, :length] = rng.randint(1, SIZES["text"], length)
    tags = np.zeros((n, TAGS), np.int64)
    tags[:, 0] = np.where(rng.random_sample(n) < 0.5, 0, rng.randint(1, SIZES["tags"], n))
    features = {"text": text, "tags": tags, "cat": rng.randint(0, SIZES["cat"], n),
                "num": rng.normal(size=n).astype(np.float32)}
    label = ((features["num"] + (features["cat"] >= 3)) > 0.5).astype(np.int64)
    return features, label


def _empty_rows():
    """Two rows with empty text and no tags that differ in their other features."""
    return {"text": np.zeros((2, STEPS), np.int64), "tags": np.zeros((2, TAGS), np.int64),
            "cat": np.array([0, 5]), "num": np.array([-2.0, 2.0], np.float32)}


def test_masked_mean_equals_numpy_mean_over_the_unmasked_positions():
    rng = np.random.RandomState(0)
    embeddings = rng.normal(size=(6, 5, 3)).astype(np.float32)
    ids = rng.randint(0, 4, size=(6, 5))
    ids[0] = 0  # all padding
    ids[1] = [7, 0, 0, 0, 0]  # one id
    ids[2] = [0, 0, 0, 0, 9]  # padding first
    ids[3] = [1, 2, 3, 4, 5]  # no padding
    got = keras.ops.convert_to_numpy(model_lib.MaskedMean()(embeddings, ids))
    for row in range(len(ids)):
        keep = ids[row] != 0
        expected = embeddings[row][keep].mean(axis=0) if keep.any() else np.zeros(3)
        np.testing.assert_allclose(got[row], expected, rtol=1e-6, atol=1e-6, err_msg=row)
    assert np.all(np.isfinite(got))


def test_an_all_padding_row_is_finite_and_still_depends_on_the_other_features():
    # Freshly initialized weights (non-zero kernels, Glorot) and then two epochs of training
    # on rows of which 30% have empty text: both must see the numeric and categorical inputs.
    model = _build()
    for stage in ("initialized", "trained"):
        out = model.predict(_empty_rows(), verbose=0)[:, 0]
        assert np.all(np.isfinite(out)), (stage, out)
        # Before the fix both were sigmoid(bias): the NaN mean, ReLU'd to 0, zeroed the
        # hidden layer for every row with empty text.
        assert abs(out[0] - out[1]) > 1e-3, (stage, out)
        hidden = keras.Model(model.inputs, model.get_layer("hidden_0").output)
        assert np.any(keras.ops.convert_to_numpy(hidden(_empty_rows())) != 0), stage
        if stage == "initialized":
            features, label = _rows(512, seed=1)
            history = model.fit(features, label, epochs=2, batch_size=32, verbose=0)
            assert np.all(np.isfinite(history.history["loss"]))
    # Trained on num and cat: the row with the high num and cat is the likelier positive.
    assert out[1] > out[0] + 0.1, out
    # The pooled text of an empty row is zeros, of a non-empty row the mean of its ids.
    pooled = keras.Model(model.inputs, model.get_layer("text_pool").output)
    features = _empty_rows()
    features["text"][1, :2] = [3, 7]
    vectors = keras.ops.convert_to_numpy(pooled(features))
    table = keras.ops.convert_to_numpy(model.get_layer("text_embedding").embeddings)
    np.testing.assert_array_equal(vectors[0], 0.0)
    np.testing.assert_allclose(vectors[1], table[[3, 7]].mean(axis=0), rtol=1e-6)


def test_keras_save_and_saved_model_export_serve_empty_rows(tmp_path):
    model = _build()
    features, label = _rows(256, seed=2)
    model.fit(features, label, epochs=1, batch_size=32, verbose=0)
    expected = model.predict(_empty_rows(), verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict(_empty_rows(), verbose=0), expected, rtol=1e-6)
    assert isinstance(loaded.get_layer("text_pool"), model_lib.MaskedMean)
    # The SavedModel served by a process that imports TensorFlow only.
    export_dir = str(tmp_path / "saved_model")
    model.export(export_dir, format="tf_saved_model", verbose=False)
    requests = str(tmp_path / "requests.npz")
    np.savez(requests, **_empty_rows())
    code = ("import sys, numpy as np, tensorflow as tf\n"
            "m = tf.saved_model.load(sys.argv[1])\n"
            "r = np.load(sys.argv[2])\n"
            "out = m.serve({k: tf.constant(r[k]) for k in r.files})\n"
            "assert 'keras' not in sys.modules or 'beam_pipeline' not in sys.modules\n"
            "assert 'beam_pipeline' not in sys.modules\n"
            "print(' '.join(repr(float(v)) for v in np.ravel(out.numpy())))\n")
    proc = subprocess.run([sys.executable, "-c", code, export_dir, requests],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    served = np.array([float(v) for v in proc.stdout.split()[-2:]])
    np.testing.assert_allclose(served, expected[:, 0], rtol=1e-5)
    assert np.all(np.isfinite(served)) and abs(served[0] - served[1]) > 1e-3


def _dataset(features, label, batch=64):
    return tf.data.Dataset.from_tensor_slices((features, label)).batch(batch)


def test_train_guard_raises_on_nan_predictions_and_names_the_feature():
    model = _build()
    features, label = _rows(128, seed=3)
    features["num"][5] = np.nan  # e.g. a number the transform let through as NaN
    ds = _dataset(features, label)
    predictions = model.predict(ds, verbose=0)
    # A ReLU may map the NaN to 0 (whether it does depends on the initial weights and the
    # CPU kernel), so the predictions can look fine: the guard must still fail the run.
    looks_fine = np.where(np.isfinite(predictions), predictions, 0.5).astype(np.float32)
    with pytest.raises(train_lib.NonFiniteError, match=r"feature\(s\) num \(their pred"):
        train_lib.check_finite(model, None, looks_fine, ds, ds)
    looks_fine[7] = np.nan
    with pytest.raises(train_lib.NonFiniteError, match=r"1 of 128 eval predictions.*num"):
        train_lib.check_finite(model, None, looks_fine, ds, ds)
    clean, _ = _rows(128, seed=3)
    clean_ds = _dataset(clean, label)
    train_lib.check_finite(model, None, model.predict(clean_ds, verbose=0), clean_ds, clean_ds)


def test_train_guard_raises_on_a_nan_loss_during_fit():
    model = _build()
    features, label = _rows(256, seed=4)
    features["num"][40] = np.inf
    ds = _dataset(features, label, batch=32)
    guard = train_lib._StopOnNonFinite()  # pylint: disable=protected-access
    history = model.fit(ds, epochs=2, callbacks=[guard], verbose=0)
    assert guard.bad is not None and guard.bad[:2] == (1, 1)  # the second batch of epoch 1
    with pytest.raises(train_lib.NonFiniteError,
                       match=r"training loss was nan at epoch 1, batch 1.*feature\(s\) num"):
        train_lib.check_finite(model, history, None, ds, ds, guard.bad)
    # An epoch loss history alone is enough, too.
    with pytest.raises(train_lib.NonFiniteError, match=r"loss per epoch"):
        train_lib.check_finite(model, history, None, ds, ds)


def test_train_on_a_real_run_gives_empty_text_rows_feature_dependent_predictions(
        pipeline_run, tmp_path):
    """`train` end to end (its NaN guard included) on the shared run: eval rows with their
    text replaced by padding only still get finite predictions that differ by row."""
    import dataclasses
    import shutil

    from tests import reference
    config, _ = pipeline_run
    out = str(tmp_path / "out")
    shutil.copytree(config.output.dir, out)
    config = dataclasses.replace(
        config, output=dataclasses.replace(config.output, dir=out),
        model=ModelConfig(epochs=2, exclude_features=("id",), batch_size=64))
    model, metrics = train_lib.train(config, verbose=0)
    assert np.isfinite(metrics["eval"]["loss"])
    rows = reference.read_transformed(out, "eval")
    rows = {k: v[:64] for k, v in rows.items() if k in model.input}
    rows["text"] = np.zeros_like(rows["text"])
    out_empty = model.predict(rows, verbose=0).reshape(-1)
    assert np.all(np.isfinite(out_empty))
    assert np.unique(np.round(out_empty, 4)).size > 10, out_empty
