"""Training on the transformed data, and the exported model serving raw data with no skew."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from beam_pipeline.config import ModelConfig
from beam_pipeline.serving.export import MISSING_INT
from tests import reference

HERE = os.path.dirname(os.path.abspath(__file__))


FLOATS = ("f_normal", "f_uniform", "f_missing")
INTS = ("id", "int_cat")
STRINGS = ("cat_small", "cat_mid", "cat_big", "text")


def _example(row, with_label, omit=()):
    feature = {}
    for name in FLOATS:
        if not np.isnan(row[name]):
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[row[name]]))
    for name in INTS + (("label",) if with_label else ()):
        if name in omit:
            continue
        feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(row[name])]))
    for name in STRINGS:
        feature[name] = tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[row[name].encode()]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _edge_examples():
    def ex(**values):
        feature = {}
        for k, v in values.items():
            if isinstance(v, float):
                feature[k] = tf.train.Feature(float_list=tf.train.FloatList(value=[v]))
            elif isinstance(v, int):
                feature[k] = tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))
            else:
                feature[k] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode()]))
        return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
    return [
        # unseen categories everywhere, including the integer one
        ex(f_normal=1.0, f_missing=2.0, cat_small="never-seen", cat_mid="zz", cat_big="zz",
           int_cat=999_999, text="ka zzz-never-seen"),
        # every optional feature missing
        ex(),
        # empty text
        ex(f_normal=1.0, text=""),
    ]


@pytest.fixture(scope="module")
def trained(pipeline_run, tmp_path_factory):
    """Trains on a copy of the shared run and exports; returns (config, model, metrics)."""
    from beam_pipeline.serving import train
    config, _ = pipeline_run
    out = str(tmp_path_factory.mktemp("train") / "out")
    shutil.copytree(config.output.dir, out)
    config = dataclasses.replace(
        config, output=dataclasses.replace(config.output, dir=out),
        model=ModelConfig(epochs=10, exclude_features=("id",), batch_size=64))
    model, metrics = train.train(config, verbose=0)
    return config, model, metrics


def test_training_beats_the_trivial_baseline(trained):
    _, _, metrics = trained
    assert metrics["task"] == "binary"
    assert metrics["eval"]["accuracy"] > metrics["baseline"]["accuracy"] + 0.03, metrics


_LOAD_KERAS = """
import sys
import numpy as np
import keras
import beam_pipeline.serving.model  # registers the model's custom layers
rows = dict(np.load(sys.argv[2]))
model = keras.saving.load_model(sys.argv[1])
np.save(sys.argv[3], model.predict(rows, verbose=0))
"""


def test_the_trained_model_is_saved_as_model_keras_and_loads_in_a_fresh_process(
        trained, tmp_path):
    config, model, _ = trained
    path = os.path.join(config.output.dir, "model", "model.keras")
    assert os.path.isfile(path)
    # Transformed eval rows, parsed with the model's own input spec (not the tft output,
    # which `served` deletes).
    spec = {t.name: tf.io.FixedLenFeature(t.shape[1:], t.dtype) for t in model.inputs}
    files = sorted(tf.io.gfile.glob(os.path.join(config.output.dir, "data", "eval", "part-*")))
    batch = next(iter(tf.data.TFRecordDataset(files, compression_type="GZIP").batch(32)))
    rows = {k: v.numpy() for k, v in tf.io.parse_example(batch, spec).items()}
    np.savez(tmp_path / "rows.npz", **rows)
    proc = subprocess.run([sys.executable, "-c", _LOAD_KERAS, path, str(tmp_path / "rows.npz"),
                           str(tmp_path / "loaded.npy")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = np.load(tmp_path / "loaded.npy")
    assert loaded.shape == (32, 1)
    np.testing.assert_allclose(loaded, model.predict(rows, verbose=0), atol=1e-6)


def test_model_keras_goes_through_a_temp_file_to_a_remote_file_system(trained):
    from beam_pipeline.serving import export
    _, model, _ = trained
    path = "ram://beam_pipeline_test/out/model/model.keras"
    assert export.keras_path("ram://beam_pipeline_test/out/model/serving") == path
    assert export.save_keras(model, path)
    assert tf.io.gfile.stat(path).length > 1000


def test_a_model_keras_cannot_serialize_is_skipped_with_a_warning(tmp_path, caplog):
    import keras
    from beam_pipeline.serving import export

    class Opaque(keras.layers.Layer):  # like ImagePixels: an __init__ argument with no config
        def __init__(self, thing, **kwargs):
            super().__init__(**kwargs)
            self._thing = thing

        def call(self, x):
            return x

    inputs = keras.Input((2,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(1)(Opaque(object())(inputs)))
    path = str(tmp_path / "model.keras")
    assert not export.save_keras(model, path)
    assert not os.path.exists(path) and "not written" in caplog.text


def _raw_arrays(frame):
    """`serving_raw`'s inputs for the raw rows of `frame`."""
    arrays = {name: frame[name].to_numpy(np.float32) for name in FLOATS}
    arrays.update({name: frame[name].to_numpy(np.int64) for name in INTS})
    arrays.update({name: frame[name].to_numpy(dtype=object).astype(bytes) for name in STRINGS})
    return arrays


def _missing_int_rows(csv_dir):
    """Raw rows (no label) to serve with their int cells missing: 0 is not int_cat's
    imputed value (a missing cell is OOV, -1's bucket, 0 another OOV bucket); id is a
    passthrough and the int_cat crossing a hash of 0: both impute 0."""
    return reference.raw_frame(csv_dir).head(6).drop(columns=["label"])


@pytest.fixture(scope="module")
def served(trained, csv_dir, tmp_path_factory):
    """The export served in a fresh TensorFlow-only process after the tft output is deleted."""
    config, model, _ = trained
    out = config.output.dir
    transformed = reference.read_transformed(out, "eval")
    ids = transformed.pop("id")
    label = transformed.pop("label")
    expected = model.predict({k: v for k, v in transformed.items()}, verbose=0).reshape(-1)
    raw = reference.raw_frame(csv_dir).set_index("id", drop=False).loc[ids]
    rows = raw.to_dict("records")
    work = tmp_path_factory.mktemp("serve")
    requests = {
        "examples": np.array([_example(r, with_label=i % 2 == 0) for i, r in enumerate(rows)],
                             dtype=object),
        "edge": np.array(_edge_examples(), dtype=object),
        "wrong_dtype": np.array([tf.train.Example(features=tf.train.Features(feature={
            "f_normal": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"1.5"]))}))
            .SerializeToString()], dtype=object),
    }
    requests.update({f"raw_{k}": v for k, v in _raw_arrays(raw).items()})
    # Rows whose int cells are missing: as the training path sees them (a tf.Example without
    # the features), through serving_raw (MISSING_INT), and with 0 instead.
    missing = _missing_int_rows(csv_dir)
    requests["missing_examples"] = np.array(
        [_example(r, with_label=False, omit=INTS) for r in missing.to_dict("records")],
        dtype=object)
    for prefix, value in (("missing_raw_", MISSING_INT), ("zero_raw_", 0)):
        arrays = _raw_arrays(missing)
        for name in INTS:
            arrays[name] = np.full(len(missing), value, np.int64)
        requests.update({prefix + k: v for k, v in arrays.items()})
    np.savez(work / "requests.npz", **requests)
    for folder in ("transform_fn", "transformed_metadata", "metadata"):
        shutil.rmtree(os.path.join(out, folder))
    model_dir = os.path.join(out, "model", "serving")
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "serving_check.py"), model_dir,
         str(work / "requests.npz"), str(work / "result.npz")],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return expected, label, dict(np.load(work / "result.npz"))


def test_no_skew_between_training_path_and_served_raw_examples(served):
    expected, _, result = served
    assert result["by_example"].shape == expected.shape
    np.testing.assert_allclose(result["by_example"], expected, atol=1e-6)


def test_raw_tensor_signature_agrees_with_example_signature(served):
    _, _, result = served
    np.testing.assert_allclose(result["by_raw"], result["by_example"], atol=1e-6)


def test_a_missing_int_through_serving_raw_is_imputed_as_in_training(served):
    """serving_raw with MISSING_INT for int_cat and id (fresh TensorFlow-only process)
    equals transform_features/serving_default on tf.Examples without those features."""
    result = served[2]
    names = [k[len("missing_example_"):] for k in result if k.startswith("missing_example_")]
    assert {"int_cat", "id", "cat_small_x_int_cat"} <= set(names), names
    for name in names:
        np.testing.assert_allclose(result[f"missing_raw_{name}"],
                                   result[f"missing_example_{name}"], atol=1e-6, err_msg=name)
    np.testing.assert_allclose(result["missing_raw_probability"], result["missing_by_example"],
                               atol=1e-6)
    # id's imputed value is 0 (passthrough); int_cat's is not: 0 serves as a real value.
    assert (result["missing_raw_id"] == 0).all()
    np.testing.assert_array_equal(result["zero_raw_id"], result["missing_raw_id"])
    assert (result["zero_raw_int_cat"] != result["missing_raw_int_cat"]).all()
    assert (result["zero_raw_probability"] != result["missing_raw_probability"]).all()


def test_predict_serves_an_empty_int_cell_and_a_json_null_or_absent_value_as_missing(
        trained, served, csv_dir, tmp_path):
    from beam_pipeline.serving import predict
    config, _, _ = trained
    result = served[2]
    model_dir = os.path.join(config.output.dir, "model", "serving")
    rows = _missing_int_rows(csv_dir).to_dict("records")

    def cell(v):
        return None if isinstance(v, float) and np.isnan(v) else v

    header = list(rows[0])
    csv_missing, csv_zero = tmp_path / "missing.csv", tmp_path / "zero.csv"
    for path, value in ((csv_missing, ""), (csv_zero, 0)):
        lines = [",".join(header)] + [",".join(
            str(value) if k in INTS else ("" if cell(v) is None else str(v)) for k, v in r.items())
            for r in rows]
        path.write_text("\n".join(lines) + "\n")
    jsonl = tmp_path / "missing.jsonl"  # int_cat null, id absent
    jsonl.write_text("".join(json.dumps(
        {**{k: cell(v) for k, v in r.items() if k != "id"}, "int_cat": None}) + "\n"
        for r in rows))
    for path, expected in ((csv_missing, result["missing_by_example"]),
                           (jsonl, result["missing_by_example"]),
                           (csv_zero, result["zero_raw_probability"])):
        got = [p["probability"] for p in predict.predict(model_dir, str(path))]
        np.testing.assert_allclose(got, expected, atol=1e-6, err_msg=path.name)
    assert not np.allclose(result["zero_raw_probability"], result["missing_by_example"])


def test_unseen_categories_map_to_oov(served):
    edge = served[2]
    assert edge["edge_cat_small"][0] == 0          # one OOV index
    assert edge["edge_cat_big"][0] < 4             # one of four OOV indices
    assert edge["edge_int_cat"][0] < 3             # one of three OOV indices
    first, second, rest = edge["edge_text"][0][0], edge["edge_text"][0][1], edge["edge_text"][0][2:]
    assert first >= 2 and second == 1 and not rest.any()  # known token, OOV, padding


def test_missing_features_are_imputed_as_in_training(served):
    edge = served[2]
    assert edge["edge_f_normal"][1] == 0.0 and edge["edge_f_missing"][1] == 0.0
    assert edge["edge_f_missing_missing"][1] == 1 and edge["edge_f_missing_missing"][0] == 0
    assert edge["edge_cat_small"][1] == 0
    assert np.isfinite(edge["edge_predictions"]).all()


def test_empty_text_is_all_padding(served):
    edge = served[2]
    assert edge["edge_text"][2].tolist() == [0] * edge["edge_text"].shape[1]
    assert edge["edge_text"][1].tolist() == [0] * edge["edge_text"].shape[1]


def test_wrong_dtype_fails_with_a_clear_error(served):
    message = str(served[2]["wrong_dtype_error"])
    assert message, "a bytes value for a float feature must raise"
    assert "f_normal" in message and "Data types don't match" in message, message


def test_saved_model_cli_runs_the_raw_signature(trained):
    config, _, _ = trained
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    # The second row has its int cells missing (MISSING_INT), as a request can say it.
    exprs = ('f_normal=[1.0,1.0];f_uniform=[50.0,50.0];f_missing=[2.0,2.0];'
             'cat_small=["c0","c0"];cat_mid=["m1","m1"];cat_big=["b9","b9"];'
             f'int_cat=[3,{MISSING_INT}];text=["ka lo","ka lo"];id=[1,{MISSING_INT}]')
    proc = subprocess.run(
        [cli, "run", "--dir", os.path.join(config.output.dir, "model", "serving"),
         "--tag_set", "serve", "--signature_def", "serving_raw", "--input_exprs", exprs],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    probabilities = [float(p) for p in proc.stdout.split("Result for output key probability:")[1]
                     .strip().split("]")[0].strip("[").split()]
    assert len(probabilities) == 2 and all(0.0 < p < 1.0 for p in probabilities), proc.stdout
    assert probabilities[0] != probabilities[1]


def test_predict_cli_on_the_export_prints_sorted_keys_the_same_every_call(trained, csv_dir,
                                                                          tmp_path, capsys):
    from beam_pipeline import cli
    config, _, _ = trained
    rows = tmp_path / "rows.csv"
    reference.raw_frame(csv_dir).head(5).drop(columns=["label"]).to_csv(rows, index=False)
    model_dir = os.path.join(config.output.dir, "model", "serving")
    outputs = []
    for _ in range(2):
        assert cli.main(["predict", "--model", model_dir, "--input", str(rows)]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    lines = [json.loads(l) for l in outputs[0].splitlines()]
    assert len(lines) == 5 and all(list(l) == ["class_id", "probability"] for l in lines)


# Train on an output with no good run: exit 2 at once, naming the folder ------------------

def _train_cli(config_path):
    """`cli.main(train)` in a fresh interpreter; returns (code, stderr, heavy modules)."""
    from tests.test_cli import HEAVY, _quiet_env  # pylint: disable=import-outside-toplevel
    code = (f"import sys\nfrom beam_pipeline import cli\ncode = cli.main(['train', '--config', "
            f"{config_path!r}])\nprint('\\n' + str(code) + ' ' + ' '.join(m for m in {HEAVY!r} "
            "if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_quiet_env(), timeout=300)
    exit_code, *heavy = proc.stdout.splitlines()[-1].split()
    return int(exit_code), proc.stderr, heavy


def test_train_on_a_gate_failure_exits_2_before_importing_tensorflow(rejected_run):
    config, _ = rejected_run
    code, err, heavy = _train_cli(config.path)
    out = config.output.dir
    assert (code, heavy) == (2, []), err
    assert err.strip() == (f"beam-pipeline train: error: {out}: the last preprocess failed: "
                           f"too many rejected records (exit 3); see {out}/rejected/"), err


def test_train_on_no_run_or_a_wrong_output_dir_exits_2(csv_dir, tmp_path):
    from tests.conftest import make_config, write_config  # pylint: disable=import-outside-toplevel
    missing = str(tmp_path / "never_run")
    path = write_config(tmp_path / "config.yaml", make_config(csv_dir, missing))
    code, err, heavy = _train_cli(path)
    assert (code, heavy) == (2, []), err
    assert f"beam-pipeline train: error: no such output: {missing}; run preprocess first" \
        in err and "Traceback" not in err, err
    os.makedirs(os.path.join(missing, "data"))
    code, err, heavy = _train_cli(path)
    assert (code, heavy) == (2, []), err
    assert (f"beam-pipeline train: error: {missing}: no run here (no run_summary.json; it "
            "holds data/); run preprocess first") in err, err
