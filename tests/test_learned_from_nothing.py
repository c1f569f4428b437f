"""A statistic with no train data is an error (job/learned.py), as Keras's adapt() refuses an
empty dataset: exit code 2, a message naming each feature, its column and the split, and no
transform_fn or data left behind as if learned.

Two runs through `cli.main` in this process: a train split with rows whose learned-from
columns are empty everywhere, and a header-only CSV. Features whose config gives what
they would learn (bin_boundaries, impute: constant) read the same empty column and must
not be named.
"""

import contextlib
import io
import json
import os

import numpy as np
import pyarrow as pa
import pytest

from tests.conftest import write_config

COLUMNS = [{"name": "id", "type": "int"}, {"name": "num", "type": "float"},
           {"name": "cat", "type": "string"}, {"name": "text", "type": "string"},
           {"name": "ok", "type": "float"}]
LEARNERS = {
    "num_norm": {"kind": "normalization", "column": "num"},
    "cat_lookup": {"kind": "string_lookup", "column": "cat"},
    "text_vec": {"kind": "text_vectorization", "column": "text", "max_tokens": 10,
                 "output_sequence_length": 3},
    "num_bins": {"kind": "discretization", "column": "num", "num_bins": 4},
}
GIVEN = {
    "num_given_bins": {"kind": "discretization", "column": "num", "bin_boundaries": [0.0, 1.0]},
    "num_constant": {"kind": "passthrough", "column": "num", "impute": "constant",
                     "fill_value": 1.5},
}
FEATURES = {"id": {"kind": "passthrough"}, "ok_norm": {"kind": "normalization", "column": "ok"},
            **LEARNERS, **GIVEN}


def _run(root, lines):
    """Writes the CSV and config under `root`, runs `preprocess`; (exit code, stderr, out)."""
    from beam_pipeline import cli
    data = root / "data"
    data.mkdir()
    (data / "part-0.csv").write_text("id,num,cat,text,ok\n" + "".join(l + "\n" for l in lines))
    out = str(root / "out")
    path = write_config(root / "config.yaml", {
        "input": {"file_pattern": str(data / "part-*"), "header": True},
        "columns": COLUMNS, "split": {"key": "id", "eval_fraction": 0.25},
        "features": FEATURES, "output": {"dir": out}})
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = cli.main(["preprocess", "--config", path])
    return code, stderr.getvalue(), out


@pytest.fixture(scope="module")
def empty_columns(tmp_path_factory):
    """40 rows; num, cat and text are empty in every one (ok has values)."""
    return _run(tmp_path_factory.mktemp("empty_columns"),
                [f"{i},,,,{i * 0.5}" for i in range(40)])


@pytest.fixture(scope="module")
def header_only(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("header_only"), [])


def _published(out):
    return [d for d in ("transform_fn", "data", "transformed_metadata")
            if os.path.exists(os.path.join(out, d))]


@pytest.mark.parametrize("run", ["empty_columns", "header_only"])
def test_a_feature_learning_from_no_value_fails_with_exit_2(request, run):
    from beam_pipeline import cli
    code, stderr, out = request.getfixturevalue(run)
    assert code == cli.EXIT_CONFIG_ERROR == 2, stderr[-2000:]
    for name, options in LEARNERS.items():
        line = next((l for l in stderr.splitlines() if f"feature {name!r}" in l), None)
        assert line is not None, (name, stderr[-2000:])
        assert f"column {options['column']!r}" in line and "train split" in line, line
    for name in GIVEN:
        assert f"{name!r}" not in stderr, name
    # ok has values in the first run only.
    assert ("feature 'ok_norm'" in stderr) == (run == "header_only")


@pytest.mark.parametrize("run", ["empty_columns", "header_only"])
def test_nothing_is_left_as_if_learned(request, run):
    from beam_pipeline.outputs import layout
    _, _, out = request.getfixturevalue(run)
    assert _published(out) == []
    with open(layout.run_summary_path(out)) as f:
        assert json.load(f)["status"] == "failed: a statistic with no train data"


def test_rows_with_a_value():
    """NaN, null and "" are no value; a row with one usable value among others counts."""
    from beam_pipeline.job.statistics import rows_with_a_value
    floats = pa.array([[1.0], [], None, [float("nan")], [float("nan"), 2.0]],
                      pa.list_(pa.float32()))
    assert rows_with_a_value(floats) == 2
    strings = pa.array([[b"a"], [b""], None, [], [b"", b"b"]], pa.list_(pa.binary()))
    assert rows_with_a_value(strings) == 2
    ints = pa.array([[0], None, [], [3]], pa.list_(pa.int64()))
    assert rows_with_a_value(ints) == 2
    assert rows_with_a_value(pa.array([], pa.list_(pa.float32()))) == 0
    assert rows_with_a_value(pa.array([None, []], pa.list_(pa.string()))) == 0
    assert np.int64(rows_with_a_value(pa.array([["x"]], pa.list_(pa.string())))) == 1
