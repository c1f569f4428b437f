"""`beam-pipeline predict`: stable output key order, and a clear error for a model that is
not a serving export. Tiny SavedModels here (the trained export is test_train_and_export's
module fixture; the order check on it is there)."""

import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from beam_pipeline import cli

# Outputs declared in an order that is neither sorted nor stable through a SavedModel.
_OUTPUTS = ["probability", "class_id", "zeta", "alpha", "mid"]


class _Raw(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x"),
                                  tf.TensorSpec([None], tf.string, name="s")])
    def serving_raw(self, x, s):
        return {"probability": x, "class_id": tf.cast(x > 0.5, tf.int64), "zeta": x * 2,
                "alpha": tf.strings.length(s), "mid": x + 1}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serving_default(self, examples):
        return {"probability": tf.zeros_like(examples, tf.float32)}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(a model with serving_raw, one with serving_default only, rows.csv)."""
    root = tmp_path_factory.mktemp("predict")
    module = _Raw()
    with_raw, without_raw = str(root / "with_raw"), str(root / "default_only")
    tf.saved_model.save(module, with_raw, signatures={"serving_raw": module.serving_raw})
    tf.saved_model.save(module, without_raw,
                        signatures={"serving_default": module.serving_default})
    rows = root / "rows.csv"
    rows.write_text("x,s\n0.75,ab\n0.25,\n")
    return with_raw, without_raw, str(rows)


_PREDICT_KEYS = """
import sys
from beam_pipeline import cli
sys.exit(cli.main(["predict", "--model", sys.argv[1], "--input", sys.argv[2]]))
"""


def test_output_keys_are_sorted_in_every_call_and_process(models, capsys):
    with_raw, _, rows = models
    assert cli.main(["predict", "--model", with_raw, "--input", rows]) == 0
    first = capsys.readouterr().out.splitlines()
    assert cli.main(["predict", "--model", with_raw, "--input", rows]) == 0
    assert capsys.readouterr().out.splitlines() == first
    assert [list(json.loads(l)) for l in first] == [sorted(_OUTPUTS)] * 2
    assert json.loads(first[0]) == {"alpha": 2, "class_id": 1, "mid": 1.75,
                                    "probability": 0.75, "zeta": 1.5}
    # The signature's output order follows the hash seed: same lines in other processes.
    for seed in ("1", "2", "3", "4"):
        proc = subprocess.run([sys.executable, "-c", _PREDICT_KEYS, with_raw, rows],
                              capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONHASHSEED": seed})
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.splitlines() == first, seed


def test_a_model_without_serving_raw_is_a_clear_error(models, capsys):
    _, without_raw, rows = models
    assert cli.main(["predict", "--model", without_raw, "--input", rows]) == 2
    err = capsys.readouterr().err
    assert f"--model {without_raw}: no serving_raw signature" in err, err
    assert "its signatures: serving_default" in err and "Traceback" not in err, err


def test_a_folder_without_a_saved_model_is_a_clear_error(tmp_path, models, capsys):
    assert cli.main(["predict", "--model", str(tmp_path), "--input", models[2]]) == 2
    err = capsys.readouterr().err
    assert f"--model {tmp_path}: not a loadable SavedModel" in err, err


def test_a_missing_input_file_is_a_clear_error(tmp_path, models, capsys):
    with_raw = models[0]
    missing = str(tmp_path / "no_such_rows.csv")
    assert cli.main(["predict", "--model", with_raw, "--input", missing]) == 2
    err = capsys.readouterr().err
    assert f"--input {missing}: no such file" in err and "Traceback" not in err, err
    assert cli.main(["predict", "--model", with_raw, "--input", str(tmp_path)]) == 2
    assert f"--input {tmp_path}: is a folder" in capsys.readouterr().err


def test_a_missing_model_folder_is_a_clear_error(tmp_path, models, capsys):
    missing = str(tmp_path / "no_such_model")
    assert cli.main(["predict", "--model", missing, "--input", models[2]]) == 2
    err = capsys.readouterr().err
    assert f"--model {missing}: no such folder" in err and "Traceback" not in err, err
    assert cli.main(["predict", "--model", models[2], "--input", models[2]]) == 2
    assert f"--model {models[2]}: is a file, not a folder" in capsys.readouterr().err


def test_a_line_that_is_not_json_is_a_clear_error(tmp_path, models, capsys):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"x": 0.5, "s": "a"}\n{"x": 0.5, "s":\n')
    assert cli.main(["predict", "--model", models[0], "--input", str(rows)]) == 2
    err = capsys.readouterr().err
    assert f"--input {rows}: line 2 is not JSON" in err and "Traceback" not in err, err
