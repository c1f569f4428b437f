"""`beam-pipeline predict`: stable output key order, a clear error for a model that is
not a serving export, every input value checked against the model's raw columns (file,
line and column named, exit 2), and --skip-bad-rows. Tiny SavedModels here (the trained
export is test_train_and_export's module fixture; the order check on it is there)."""

import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from beam_pipeline import cli

# Outputs declared in an order that is neither sorted nor stable through a SavedModel.
_OUTPUTS = ["probability", "class_id", "zeta", "alpha", "mid"]


# The raw columns as an export parses them from a tf.Example: the inputs of serving_raw
# and the label, which serving_raw does not take (see export.write_serving).
_RAW_SPEC = {"x": tf.io.VarLenFeature(tf.float32), "s": tf.io.VarLenFeature(tf.string),
             "n": tf.io.VarLenFeature(tf.int64), "label": tf.io.VarLenFeature(tf.int64)}


class _Raw(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x"),
                                  tf.TensorSpec([None], tf.string, name="s"),
                                  tf.TensorSpec([None], tf.int64, name="n")])
    def serving_raw(self, x, s, n):
        # `mid` adds n (a missing n, the dtype's minimum, adds 0), so a test sees n's value.
        n = tf.where(tf.equal(n, n.dtype.min), tf.zeros_like(n), n)
        return {"probability": x, "class_id": tf.cast(x > 0.5, tf.int64), "zeta": x * 2,
                "alpha": tf.strings.length(s), "mid": x + 1 + tf.cast(n, tf.float32)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serving_default(self, examples):
        parsed = tf.io.parse_example(examples, _RAW_SPEC)
        return {"probability": tf.zeros_like(examples, tf.float32)
                + 0 * tf.cast(tf.size(parsed["label"].values), tf.float32)}


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
    assert f"--input {rows}: line 2: not JSON (Expecting value at character 16)" in err, err
    assert "Traceback" not in err, err


# One case per kind of bad input: (file name, its text, what the error names after
# "--input FILE: "). Line 1 of each JSON file, and line 2 of each CSV (after the header),
# fit; the bad row is the next one.
_GOOD_JSON = '{"x": 0.5, "s": "a", "n": 2}\n'
_GOOD_CSV = "x,s,n\n0.5,a,2\n"
_BAD_INPUTS = {
    "string_for_float": ("rows.jsonl", _GOOD_JSON + '{"x": "abc"}\n',
                         'line 2, column "x": "abc" is a string, and x is a float column'),
    "string_for_int": ("rows.jsonl", _GOOD_JSON + '{"n": "x"}\n',
                       'line 2, column "n": "x" is a string, and n is an int column'),
    "fractional_int": ("rows.jsonl", _GOOD_JSON + '{"n": 1.5}\n',
                       'line 2, column "n": 1.5 is not an integer (n is an int column)'),
    "number_for_string": ("rows.jsonl", _GOOD_JSON + '{"s": 7}\n',
                          'line 2, column "s": 7 is a number, and s is a string column'),
    "boolean_for_int": ("rows.jsonl", _GOOD_JSON + '{"n": true}\n',
                        'line 2, column "n": true is a boolean, and n is an int column'),
    "array_for_float": ("rows.jsonl", _GOOD_JSON + '{"x": [1]}\n',
                        'line 2, column "x": [1] is an array, and x is a float column'),
    "unknown_key": ("rows.jsonl", _GOOD_JSON + '{"x": 1, "colour": "red"}\n',
                    'line 2, column "colour": not a column of the model (its columns: n, '
                    's, x; label: label)'),
    "not_an_object": ("rows.jsonl", _GOOD_JSON + "[1,2]\n",
                      "line 2: an array, not a JSON object"),
    "nan_literal": ("rows.jsonl", _GOOD_JSON + '{"x": NaN}\n',
                    "line 2: not a valid row (NaN is not JSON"),
    "duplicate_key": ("rows.jsonl", _GOOD_JSON + '{"x": 1, "x": 2}\n',
                      'line 2: not a valid row (the key "x" appears twice)'),
    "missing_int_marker": ("rows.jsonl", _GOOD_JSON + '{"n": -9223372036854775808}\n',
                           'line 2, column "n": -9223372036854775808 is the int column\'s '
                           "missing-value marker"),
    "int_out_of_range": ("rows.jsonl", _GOOD_JSON + '{"n": 9223372036854775808}\n',
                         'line 2, column "n": 9223372036854775808 is beyond the range of '
                         "int64"),
    "float_out_of_range": ("rows.jsonl", _GOOD_JSON + '{"x": 1e39}\n',
                           'line 2, column "x": 1e+39 is beyond the range of float32'),
    "bad_float_cell": ("rows.csv", _GOOD_CSV + "xyz,b,3\n",
                       "line 3, column \"x\": 'xyz' is not a number (x is a float column)"),
    "non_finite_cell": ("rows.csv", _GOOD_CSV + "inf,b,3\n",
                        "line 3, column \"x\": 'inf' is not a finite number"),
    # As preprocess reads an int cell (sources/csv_values.py): digits, no decimal point.
    "decimal_int_cell": ("rows.csv", _GOOD_CSV + "0.5,b,3.0\n",
                         "line 3, column \"n\": '3.0' is not an integer (n is an int column)"),
    "more_fields": ("rows.csv", _GOOD_CSV + "0.5,b,3,4\n",
                    "line 3: 4 fields, and the header (line 1) has 3"),
    "fewer_fields": ("rows.csv", _GOOD_CSV + "0.5,b\n",
                     "line 3: 2 fields, and the header (line 1) has 3"),
    "unknown_header_column": ("rows.csv", "x,colour\n0.5,red\n",
                              'line 1, column "colour" (field 2 of the header): not a '
                              "column of the model"),
    "header_column_twice": ("rows.csv", "x,s,x\n0.5,a,0.5\n",
                            'line 1, column "x" (field 3 of the header): named twice'),
    "not_utf8": ("rows.csv", b"x,s\n0.5,a\n0.5,\xff\n",
                 "line 3: not UTF-8 (byte 0xff, byte 5 of the line)"),
}


@pytest.mark.parametrize("case", sorted(_BAD_INPUTS))
def test_a_value_that_does_not_fit_the_model_is_a_clear_error(case, tmp_path, models, capsys):
    name, text, expected = _BAD_INPUTS[case]
    rows = tmp_path / name
    if isinstance(text, bytes):
        rows.write_bytes(text)
    else:
        rows.write_text(text)
    assert cli.main(["predict", "--model", models[0], "--input", str(rows)]) == 2
    captured = capsys.readouterr()
    assert f"beam-pipeline predict: error: --input {rows}: {expected}" in captured.err, \
        captured.err
    assert "Traceback" not in captured.err and captured.out == "", captured


def test_the_label_column_is_accepted_and_checked_but_not_sent(tmp_path, models, capsys):
    """A row in the training layout has its label: the export parses it (serving_default),
    so predict knows its type; serving_raw does not take it."""
    with_raw, _, rows = models
    assert cli.main(["predict", "--model", with_raw, "--input", rows]) == 0
    without_label = capsys.readouterr().out
    labelled = tmp_path / "labelled.csv"
    labelled.write_text("x,s,label\n0.75,ab,1\n0.25,,0\n")
    assert cli.main(["predict", "--model", with_raw, "--input", str(labelled)]) == 0
    assert capsys.readouterr().out == without_label
    bad = tmp_path / "rows.jsonl"
    bad.write_text('{"x": 0.75, "label": "yes"}\n')
    assert cli.main(["predict", "--model", with_raw, "--input", str(bad)]) == 2
    err = capsys.readouterr().err
    assert 'line 1, column "label": "yes" is a string, and label is an int column' in err, err


def test_a_json_string_may_hold_a_unicode_line_separator(tmp_path, models, capsys):
    # str.splitlines cut a line at U+2028 (valid inside a JSON string) before.
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"x": 0.5, "s": "a\u2028b"}\n', encoding="utf-8")
    assert cli.main(["predict", "--model", models[0], "--input", str(rows)]) == 0
    assert json.loads(capsys.readouterr().out)["alpha"] == len("a\u2028b".encode())


def test_skip_bad_rows_predicts_the_others_and_lists_their_problems(tmp_path, models, capsys):
    rows = tmp_path / "rows.jsonl"
    lines = ['{"x": 3, "n": 3.0}',        # an integral number fits both: sent as 3.0 and 3
             '{"x": "abc", "n": 1.5}',    # two problems, one row
             "",                          # blank: not a row
             "[1,2]",
             '{"x": 0.25, "s": "ab"}']    # n absent: missing
    rows.write_text("\n".join(lines) + "\n")
    bad = tmp_path / "bad.jsonl"
    assert cli.main(["predict", "--model", models[0], "--input", str(rows),
                     "--skip-bad-rows", str(bad)]) == 0
    out, err = capsys.readouterr()
    assert [(p["mid"], p["alpha"]) for p in map(json.loads, out.splitlines())] == \
        [(3.0 + 1 + 3, 0), (0.25 + 1, 2)]
    assert ("beam-pipeline predict: rows predicted: 2, rows skipped: 2; 3 problems in "
            f"{bad}") in err, err
    assert [json.loads(l) for l in bad.read_text().splitlines()] == [
        {"line": 2, "column": "x", "raw": lines[1],
         "reason": '"abc" is a string, and x is a float column (write a JSON number, or '
                   "null for a missing value)"},
        {"line": 2, "column": "n", "raw": lines[1],
         "reason": "1.5 is not an integer (n is an int column)"},
        {"line": 4, "column": None, "raw": "[1,2]",
         "reason": 'an array, not a JSON object (each line is one row: {"column": value, '
                   "...})"}]


def test_skip_bad_rows_in_a_csv_names_the_record_and_writes_an_empty_file_if_all_fit(
        tmp_path, models, capsys):
    rows = tmp_path / "rows.csv"
    # A quoted field spans lines 3 and 4; the bad record after it starts on line 5.
    rows.write_text('x,s,n\n0.5,a,2\n0.5,"two\nlines",1\n0.5,b,x\n')
    bad, output = tmp_path / "bad.jsonl", tmp_path / "out.jsonl"
    assert cli.main(["predict", "--model", models[0], "--input", str(rows), "--output",
                     str(output), "--skip-bad-rows", str(bad)]) == 0
    assert "rows predicted: 2, rows skipped: 1;" in capsys.readouterr().err
    assert len(output.read_text().splitlines()) == 2
    assert [json.loads(l) for l in bad.read_text().splitlines()] == [
        {"line": 5, "column": "n", "raw": "0.5,b,x",
         "reason": "'x' is not an integer (n is an int column)"}]
    assert cli.main(["predict", "--model", models[0], "--input", models[2],
                     "--skip-bad-rows", str(bad)]) == 0
    assert "rows predicted: 2, rows skipped: 0;" in capsys.readouterr().err
    assert bad.read_text() == ""  # not the problems of the run before
    # No row fits: no prediction, and --output is emptied too.
    rows.write_text("x,s,n\nxyz,a,2\n")
    assert cli.main(["predict", "--model", models[0], "--input", str(rows), "--output",
                     str(output), "--skip-bad-rows", str(bad)]) == 0
    assert "rows predicted: 0, rows skipped: 1;" in capsys.readouterr().err
    assert output.read_text() == "" and len(bad.read_text().splitlines()) == 1


def test_a_bad_header_is_an_error_even_with_skip_bad_rows(tmp_path, models, capsys):
    rows = tmp_path / "rows.csv"
    rows.write_text("x,colour\n0.5,red\n")
    assert cli.main(["predict", "--model", models[0], "--input", str(rows),
                     "--skip-bad-rows", str(tmp_path / "bad.jsonl")]) == 2
    assert 'line 1, column "colour"' in capsys.readouterr().err


def test_csv_cells_are_read_with_the_patterns_preprocess_uses():
    from beam_pipeline.serving import predict
    from beam_pipeline.sources import csv_values
    for name in ("INT_PATTERN", "FLOAT_PATTERN", "NON_FINITE_PATTERN"):
        assert getattr(predict, name) == getattr(csv_values, name), name


def test_output_is_emptied_when_no_row_is_predicted(tmp_path, models, capsys):
    rows, output = tmp_path / "rows.csv", tmp_path / "out.jsonl"
    rows.write_text("x,s\n")  # a header, no row
    output.write_text('{"old": "prediction"}\n')
    assert cli.main(["predict", "--model", models[0], "--input", str(rows), "--output",
                     str(output)]) == 0
    assert output.read_text() == ""  # GFile left an old file as it was without a write
