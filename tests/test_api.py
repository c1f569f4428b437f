"""The Python API (`beam_pipeline.api`): a user's own Keras models, trained on a run's
transformed data and exported with the graph inside, served in a fresh TensorFlow-only
process; id spaces against the vocabulary files and Keras's own layers.

The user models train on `messy_run` (the messy shards through the default config a
README reader writes); the id spaces are checked on `pipeline_run` (every kind)."""

import collections
import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

import beam_pipeline as bp
from beam_pipeline.config import ConfigError
from tests.conftest import COLUMNS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TYPES = {c["name"]: c["type"] for c in COLUMNS}

# Loads a SavedModel with TensorFlow only, serves the requests through serving_default and
# serving_raw, and writes every output; fails if tf.Transform, Beam or beam_pipeline load.
SERVE = """
import json, sys
import numpy as np, tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
r = np.load(sys.argv[2], allow_pickle=True)
out = {}
for k, v in model.signatures["serving_default"](examples=tf.constant(r["examples"])).items():
    out["default_" + k] = v.numpy()
raw = {k[4:]: tf.constant(r[k]) for k in r.files if k.startswith("raw_")}
for k, v in model.signatures["serving_raw"](**raw).items():
    out["raw_" + k] = v.numpy()
for module in ("tensorflow_transform", "apache_beam", "beam_pipeline"):
    assert module not in sys.modules, module + " was imported"
np.savez(sys.argv[3], **out)
"""


@pytest.fixture(scope="module")
def messy_output(messy_run):
    config, _ = messy_run
    return bp.open_output(config.path)


def _eval_rows(output, messy_data):
    """(transformed eval features, labels, raw records) for eval rows with a unique id."""
    batches = list(output.dataset("eval", batch_size=4096))
    features = {k: np.concatenate([b[0][k].numpy() for b in batches]) for k in batches[0][0]}
    labels = np.concatenate([b[1].numpy() for b in batches])
    by_id = collections.defaultdict(list)
    for record in messy_data.kept:
        by_id[record.values["id"]].append(record)
    # int64's minimum is serving_raw's missing int: a real cell of it serves differently.
    keep = [i for i, row_id in enumerate(features["id"].reshape(-1))
            if len(by_id.get(int(row_id), [])) == 1
            and -2 ** 63 not in by_id[int(row_id)][0].values.values()]
    assert len(keep) > 100, "too few eval rows with a unique id to compare"
    features = {k: v[keep] for k, v in features.items()}
    records = [by_id[int(features["id"][i].reshape(-1)[0])][0] for i in range(len(keep))]
    return features, labels[keep], records


def _requests(records, output):
    """Serialized raw tf.Examples (missing cells absent) and serving_raw's named columns
    (missing: NaN, "" or int64's minimum) for the records."""
    examples = []
    columns = {n: [] for n in output.tft_output.raw_feature_spec() if n != output.label}
    for record in records:
        feature = {}
        for name in columns:
            value = record.values[name]
            kind = TYPES[name]
            if value is not None:
                if kind == "int":
                    feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
                elif kind == "float":
                    feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
                else:
                    feature[name] = tf.train.Feature(
                        bytes_list=tf.train.BytesList(value=[value.encode("utf-8")]))
            if kind == "int":
                columns[name].append(-2 ** 63 if value is None else value)
            elif kind == "float":
                columns[name].append(math.nan if value is None else value)
            else:
                columns[name].append("" if value is None else value)
        examples.append(tf.train.Example(
            features=tf.train.Features(feature=feature)).SerializeToString())
    arrays = {"examples": np.array(examples, dtype=object)}
    for name, values in columns.items():
        dtype = {"int": np.int64, "float": np.float32, "string": object}[TYPES[name]]
        arrays["raw_" + name] = np.array(values, dtype=dtype)
    return arrays


def _serve(export_dir, requests, tmp_path):
    path, result = str(tmp_path / "requests.npz"), str(tmp_path / "served.npz")
    np.savez(path, **requests)
    proc = subprocess.run([sys.executable, "-c", SERVE, export_dir, path, result],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(np.load(result))


def _user_functional_model(output):
    """What a user writes: an embedding per categorical id, a 1-D conv over the text
    sequence, the numbers as they are."""
    inputs = output.transformed_inputs(
        ["cat_small", "cat_big", "int_cat", "text", "f_normal", "f_missing", "f_missing_missing"])
    parts = []
    for name in ("cat_small", "cat_big", "int_cat"):
        parts.append(keras.layers.Flatten()(keras.layers.Embedding(
            output.features[name].id_space, 4)(inputs[name])))
    text = keras.layers.Embedding(output.features["text"].id_space, 8)(inputs["text"])
    parts.append(keras.layers.GlobalMaxPooling1D()(
        keras.layers.Conv1D(8, 3, padding="same", activation="relu")(text)))
    parts += [keras.layers.Reshape((1,))(keras.ops.cast(inputs[n], "float32"))
              for n in ("f_normal", "f_missing", "f_missing_missing")]
    hidden = keras.layers.Dense(16, activation="relu")(keras.layers.Concatenate()(parts))
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(hidden))


class UserSubclassedModel(keras.Model):
    """A subclassed model: called with the dict of every transformed feature."""

    def __init__(self, cat_ids, text_ids):
        super().__init__()
        self.cat = keras.layers.Embedding(cat_ids, 4)
        self.text = keras.layers.Embedding(text_ids, 4)
        self.out = keras.layers.Dense(2)

    def call(self, features):
        cat = keras.ops.reshape(self.cat(features["cat_small"]), (-1, 4))
        text = keras.ops.mean(self.text(features["text"]), axis=1)
        numbers = keras.ops.reshape(keras.ops.cast(features["f_normal"], "float32"), (-1, 1))
        return {"scores": self.out(keras.ops.concatenate([cat, text, numbers], axis=1))}


def _fit(model, output, features=None):
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(output.dataset("train", batch_size=128, shuffle=True, seed=1, features=features),
              epochs=2, verbose=0)
    return model


def test_open_output_by_config_and_by_folder_give_the_same_run(messy_run, tmp_path):
    config, _ = messy_run
    by_config, by_folder = bp.open_output(config.path), bp.open_output(config.output.dir)
    assert by_config.path == by_folder.path == config.output.dir
    assert sorted(by_config.features) == sorted(by_folder.features)
    with pytest.raises(ConfigError, match="no run_summary.json"):
        bp.open_output(str(tmp_path))


def test_features_describe_kind_dtype_shape_and_owner(messy_output):
    f = messy_output.features
    assert messy_output.label == "label" and "label" not in f
    assert (f["text"].kind, f["text"].dtype, f["text"].shape) == ("text_vectorization",
                                                                 "int64", (12,))
    assert (f["f_normal"].kind, f["f_normal"].dtype, f["f_normal"].id_space) == (
        "normalization", "float32", None)
    indicator = f["f_missing_missing"]
    assert (indicator.feature, indicator.kind, indicator.id_space) == ("f_missing",
                                                                       "normalization", None)
    assert f["cat_small"].shape == () and f["cat_small"].id_space > 1


def test_id_spaces_equal_keras_layers_built_on_the_vocabulary_files(pipeline_run):
    """Every id kind: our id space, tf.Transform's num_buckets (from the schema's domain)
    and Keras's own layer on the same vocabulary agree, and no id in the data reaches it."""
    config, _ = pipeline_run
    output = bp.open_output(config.path)
    tft_output = tft.TFTransformOutput(config.output.dir)

    def tokens(name):  # the vocabulary file as lines: one per token, nothing parsed
        path = tft_output.vocabulary_file_by_name(name)
        with tf.io.gfile.GFile(path, "rb") as fh:
            return [line for line in fh.read().split(b"\n") if line]

    options = {f.name: f for f in config.features}
    expected = {}
    for name in ("cat_small", "cat_mid", "cat_big"):
        lookup = keras.layers.StringLookup(
            vocabulary=[t.decode("utf-8", "replace") + str(i) for i, t in enumerate(tokens(name))],
            num_oov_indices=options[name].num_oov_indices)
        expected[name] = lookup.vocabulary_size()
    expected["int_cat"] = keras.layers.IntegerLookup(
        vocabulary=list(range(1, len(tokens("int_cat")) + 1)),
        num_oov_indices=options["int_cat"].num_oov_indices).vocabulary_size()
    expected["text"] = keras.layers.TextVectorization(
        vocabulary=[f"t{i}" for i in range(len(tokens("text")))]).vocabulary_size()
    expected["f_uniform_bins"] = 5
    expected["cat_big_hash"] = 64
    expected["cat_small_x_int_cat"] = 32
    got = {n: output.features[n].id_space for n in expected}
    assert got == expected
    assert {n: tft_output.num_buckets_for_transformed_feature(n) for n in expected} == expected
    assert output.features["cat_mid_one_hot"].id_space is None  # a vector, not ids
    for x, _ in output.dataset("eval", batch_size=4096):
        for name, size in expected.items():
            values = x[name].numpy()
            assert values.min() >= 0 and values.max() < size, name


def test_transform_layer_equals_the_graph_on_raw_rows(messy_output, messy_data):
    _, _, records = _eval_rows(messy_output, messy_data)
    requests = _requests(records[:64], messy_output)
    raw = {k[4:]: v for k, v in requests.items() if k.startswith("raw_")}
    inputs = messy_output.raw_inputs()
    assert sorted(inputs) == sorted(raw)
    transformed = messy_output.transform_layer()(inputs)
    model = keras.Model(inputs, transformed)
    got = model({k: tf.constant(v) for k, v in raw.items()})
    want = messy_output.tft_output.transform_raw_features(
        tf.io.parse_example(tf.constant(requests["examples"]),
                            messy_output.tft_output.raw_feature_spec()))
    assert sorted(got) == sorted(k for k in want if k != "label")
    for name, value in got.items():
        np.testing.assert_allclose(np.asarray(value), want[name].numpy(), rtol=0, atol=1e-6,
                                   err_msg=name)


@pytest.fixture(scope="module")
def functional_export(messy_output, tmp_path_factory):
    model = _fit(_user_functional_model(messy_output), messy_output,
                 features=["cat_small", "cat_big", "int_cat", "text", "f_normal", "f_missing",
                           "f_missing_missing"])
    export_dir = str(tmp_path_factory.mktemp("own_model") / "serving")
    assert messy_output.export(model, export_dir, task="binary") == export_dir
    return model, export_dir


def test_a_user_functional_model_serves_raw_rows_as_it_predicts(
        functional_export, messy_output, messy_data, tmp_path):
    model, export_dir = functional_export
    features, _, records = _eval_rows(messy_output, messy_data)
    expected = model.predict({k: features[k] for k in model.input}, verbose=0).reshape(-1)
    served = _serve(export_dir, _requests(records, messy_output), tmp_path)
    np.testing.assert_allclose(served["default_probability"], expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(served["raw_probability"], expected, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(served["raw_class_id"], (expected >= 0.5).astype(np.int64))
    assert np.ptp(expected) > 1e-3  # the rows differ: a constant model would pass too


def test_predict_command_serves_the_user_model(functional_export, messy_output, messy_data,
                                               tmp_path):
    model, export_dir = functional_export
    features, _, records = _eval_rows(messy_output, messy_data)
    rows = [{k: v for k, v in r.values.items() if k != "label"} for r in records[:20]]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    exe = os.path.join(os.path.dirname(sys.executable), "beam-pipeline")
    proc = subprocess.run([exe, "predict", "--model", export_dir, "--input", str(path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = [json.loads(line)["probability"] for line in proc.stdout.splitlines()]
    expected = model.predict({k: features[k][:20] for k in model.input}, verbose=0).reshape(-1)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_a_user_subclassed_model_serves_its_own_outputs(messy_output, messy_data, tmp_path):
    model = UserSubclassedModel(messy_output.features["cat_small"].id_space,
                                messy_output.features["text"].id_space)
    features, _, records = _eval_rows(messy_output, messy_data)
    expected = model({k: tf.constant(v) for k, v in features.items()})["scores"].numpy()
    export_dir = str(tmp_path / "subclassed")
    messy_output.export(model, export_dir)  # no task: the model's own output dict
    served = _serve(export_dir, _requests(records, messy_output), tmp_path)
    assert sorted(k for k in served if k.startswith("raw_")) == ["raw_scores"]
    np.testing.assert_allclose(served["default_scores"], expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(served["raw_scores"], expected, rtol=0, atol=1e-6)


def test_export_rejects_an_unknown_task(messy_output, tmp_path):
    with pytest.raises(ValueError, match="task: expected one of binary"):
        messy_output.export(keras.Sequential([keras.layers.Dense(1)]), str(tmp_path), task="x")


def test_importing_beam_pipeline_loads_no_tensorflow():
    code = ("import sys, beam_pipeline\n"
            "assert 'tensorflow' not in sys.modules and 'apache_beam' not in sys.modules\n"
            "assert callable(beam_pipeline.open_output)\n"
            "assert 'tensorflow' in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_datasets_know_their_length_from_the_summary(messy_output, messy_run):
    _, summary = messy_run
    for split in ("train", "eval"):
        ds = messy_output.dataset(split, batch_size=100)
        rows = summary["rows"]["written"][split]
        assert int(ds.cardinality()) == math.ceil(rows / 100)
        assert sum(int(y.shape[0]) for _, y in ds) == rows


def test_the_own_model_example_trains_exports_and_serves(messy_run, messy_output, messy_data,
                                                        tmp_path):
    config, _ = messy_run
    export_dir = str(tmp_path / "serving")
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "examples", "own_model", "own_model.py"),
         config.path, export_dir], capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Your input ran out of data" not in proc.stderr
    _, _, records = _eval_rows(messy_output, messy_data)
    served = _serve(export_dir, _requests(records, messy_output), tmp_path)
    np.testing.assert_allclose(served["raw_probability"], served["default_probability"],
                               rtol=0, atol=1e-6)
    assert np.ptp(served["raw_probability"]) > 1e-3


def test_the_readme_snippet_runs_as_written(messy_run, tmp_path):
    """The README's "Your own Keras model" block, on the messy run instead of the sample."""
    config, _ = messy_run
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    section = readme[readme.index("## Your own Keras model"):]
    block = section[section.index("```python\n") + len("```python\n"):]
    code = block[:block.index("```")]
    assert code.count("\n") <= 20, "the README promises about 15 lines"
    export_dir = str(tmp_path / "my_model" / "serving")
    code = code.replace('"examples/sample/config.yaml"', repr(config.path)) \
        .replace('"my_model/serving"', repr(export_dir)).replace("epochs=5", "epochs=1")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert tf.saved_model.load(export_dir).signatures["serving_raw"] is not None


def test_native_keras_layers_from_the_api_equal_the_transform_layer(messy_output, messy_data):
    """`Output.keras_preprocessing_model` on the default-config messy run (its parity per
    kind is tests/test_keras_layers.py's): the same features as the graph on raw rows."""
    _, _, records = _eval_rows(messy_output, messy_data)
    requests = _requests(records[:64], messy_output)
    raw = {k[4:]: tf.constant(v) for k, v in requests.items() if k.startswith("raw_")}
    native = messy_output.keras_preprocessing_model()
    inputs = messy_output.raw_inputs()
    want = keras.Model(inputs, messy_output.transform_layer()(inputs))
    got, expected = native(raw), want(raw)
    assert sorted(got) == sorted(expected)
    for name, value in got.items():
        np.testing.assert_allclose(np.asarray(value), np.asarray(expected[name]), rtol=0,
                                   atol=1e-6, err_msg=name)


def test_open_output_of_a_failed_run_says_why_by_folder_and_by_config(rejected_run):
    from beam_pipeline.outputs import run_state  # pylint: disable=import-outside-toplevel
    config, _ = rejected_run
    out = config.output.dir
    expected = (f"{out}: the last preprocess failed: too many rejected records (exit 3); "
                f"see {out}/rejected/")
    for path in (out, config.path):
        with pytest.raises(run_state.NoGoodRun) as raised:
            bp.open_output(path)
        assert str(raised.value) == expected
    with pytest.raises(ConfigError, match="no such output: /nonexistent/out"):
        bp.open_output("/nonexistent/out")


# A run is self-describing: its config by absolute path, and a copy of it in the output -------

def test_a_run_summary_names_a_local_config_by_its_absolute_path(tmp_path, monkeypatch):
    from beam_pipeline.outputs import summary  # pylint: disable=import-outside-toplevel
    monkeypatch.chdir(tmp_path)
    assert summary.config_record("conf/config.yaml") == str(tmp_path / "conf" / "config.yaml")
    assert summary.config_record("gs://b/config.yaml") == "gs://b/config.yaml"


def test_open_output_works_from_any_folder_and_after_the_config_moved(pipeline_run, tmp_path,
                                                                       monkeypatch):
    import shutil  # pylint: disable=import-outside-toplevel
    from beam_pipeline.outputs import layout, run_state  # pylint: disable=import-outside-toplevel
    config, _ = pipeline_run
    out = config.output.dir
    copy = layout.config_copy_path(out)
    assert copy == run_state.config_copy_path(out) == os.path.join(out, "metadata",
                                                                   "config.yaml")
    with open(copy, "rb") as f, open(config.path, "rb") as g:
        assert f.read() == g.read()
    monkeypatch.chdir(tmp_path)
    assert sorted(bp.open_output(out).features) == sorted(bp.open_output(config.path).features)
    # The output moved, and the config it names is gone: the run's copy is read.
    moved = str(tmp_path / "moved_out")
    shutil.copytree(out, moved)
    with open(layout.run_summary_path(moved)) as f:
        summary = json.load(f)
    summary["config"] = str(tmp_path / "gone" / "config.yaml")
    with open(layout.run_summary_path(moved), "w") as f:
        json.dump(summary, f)
    opened = bp.open_output(moved)
    assert opened.path == moved and opened.config.path == layout.config_copy_path(moved)
    assert sorted(opened.features) == sorted(bp.open_output(out).features)
    os.remove(layout.config_copy_path(moved))
    with pytest.raises(ConfigError, match="is not there any more, and the run has no copy"):
        bp.open_output(moved)
