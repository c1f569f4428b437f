"""`beam-pipeline inspect`: the run's account, and raw rows next to values that match the output."""

import contextlib
import io
import os
import shutil

import numpy as np
import pytest

from beam_pipeline import cli
from beam_pipeline.outputs import inspect_run, layout
from tests import reference
from tests.conftest import make_config, write_config


def test_inspect_shows_rows_statistics_and_artifacts(pipeline_run, capsys):
    config, summary = pipeline_run
    assert cli.main(["inspect", config.output.dir]) == 0
    text = capsys.readouterr().out
    assert f"rows read {summary['rows']['read']:,}" in text
    mean = summary["statistics"]["numeric"]["f_normal"]["mean"]
    assert f"mean {mean:<12.6g}" in text
    assert f"cat_mid              {summary['statistics']['vocabularies']['cat_mid']['size']:,} entries" \
        in text
    assert "transform_fn: " + config.output.dir in text


def test_inspect_records_match_the_pipeline_output(pipeline_run, csv_dir):
    config, summary = pipeline_run
    rows = inspect_run.read_raw_rows(summary["input"], 6)
    raw = reference.raw_frame(csv_dir)
    assert [int(r["id"]) for r in rows] == raw["id"].tolist()[:6]
    shown = inspect_run.transform_rows(config.output.dir, rows, summary["input"]["columns"])
    written = {}
    for split in ("train", "eval"):
        data = reference.read_transformed(config.output.dir, split)
        for i, row_id in enumerate(data["id"]):
            written[int(row_id)] = {k: v[i] for k, v in data.items()}
    for i, row in enumerate(rows):
        expected = written[int(row["id"])]
        for key, values in shown.items():
            np.testing.assert_allclose(values[i], expected[key], rtol=1e-6, err_msg=key)
    text = inspect_run.format_records(rows, shown)
    assert f"text={inspect_run._format_value(shown['text'][0])}" in text  # pylint: disable=protected-access


# Bad lines for a shard next to the conftest ones (header as theirs): 6 rejects in 1,506
# records, under the default max_rejected_fraction of 1%.
BAD_LINES = [
    (b"9001,1.0,2,a", "wrong_field_count"),
    (b"9002,1.0,2,a,b", "wrong_field_count"),
    (b"9003,1.0,1.0,2.0,c0,m1,b1,1,some text,0,extra", "wrong_field_count"),
    (b"9004,abc,1.0,2.0,c0,m1,b1,1,some text,0", "bad_float"),
    (b"9005,1.0,x1,2.0,c0,m1,b1,1,some text,1", "bad_float"),
    (b"9006,1.0,1.0,2.0,c0,m1,b1,seven,some text,1", "bad_int"),
]


@pytest.fixture(scope="module")
def dirty_run(csv_dir, tmp_path_factory):
    """The conftest job over its shards plus one of bad lines, in process, with the
    progress lines (every 0.2 s) captured; returns (config, summary, progress lines)."""
    from beam_pipeline.job import preprocess  # pylint: disable=import-outside-toplevel
    from beam_pipeline.config import load_config  # pylint: disable=import-outside-toplevel

    root = tmp_path_factory.mktemp("dirty")
    data = root / "csv"
    shutil.copytree(csv_dir, data)
    with open(os.path.join(csv_dir, "part-00000-of-00003.csv"), "rb") as f:
        header = f.readline()
    (data / "part-00003-bad.csv").write_bytes(
        header + b"".join(line + b"\n" for line, _ in BAD_LINES))
    config = load_config(write_config(root / "config.yaml",
                                      make_config(str(data), str(root / "out"))))
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        result = preprocess.run(config, preprocess.pipeline_options([]), progress_interval=0.2)
    lines = [l for l in stderr.getvalue().splitlines() if l.startswith("progress:")]
    return config, result, lines


def test_progress_summary_and_inspect_agree_on_rows_read_with_rejects(dirty_run, capsys):
    """Rows read is every record, rejected ones too, in the last progress line, the run
    summary and `inspect` alike (progress used to count the valid rows only)."""
    config, summary, lines = dirty_run
    rows = summary["rows"]
    reasons = {}
    for _, reason in BAD_LINES:
        reasons[reason] = reasons.get(reason, 0) + 1
    assert rows["rejected"] == len(BAD_LINES) and rows["rejected_by_reason"] == reasons
    assert rows["read"] == 1500 + len(BAD_LINES) == sum(rows["written"].values()) + len(BAD_LINES)

    assert len(lines) >= 2, lines
    assert (f"done: {rows['read']:,} of {rows['read']:,} rows read "
            f"({len(BAD_LINES)} rejected; 4 files)") in lines[-1], lines[-1]

    assert cli.main(["inspect", config.output.dir]) == 0
    text = capsys.readouterr().out
    (line,) = [l for l in text.splitlines() if l.startswith("  rows read ")]
    read, written, rejected = line.split("; ", 2)
    assert read == f"  rows read {rows['read']:,}"
    assert sorted(written.removeprefix("written ").split(", ")) == sorted(
        f"{s} {n:,}" for s, n in rows["written"].items())
    assert rejected == (f"rejected {len(BAD_LINES)} (bad_float 2, bad_int 1, "
                        f"wrong_field_count 3; see {layout.rejected_pattern(config.output.dir)})")


def test_inspect_shows_no_rejects_as_zero(pipeline_run, capsys):
    config, summary = pipeline_run
    assert summary["rows"]["rejected"] == 0
    assert cli.main(["inspect", config.output.dir]) == 0
    assert "; rejected 0\n" in capsys.readouterr().out


def test_inspect_reads_raw_rows_by_header_name_and_keeps_bare_crs(tmp_path):
    """Raw rows are matched to the declared columns by header name, as the reader does
    (a reordered header with an extra column), and a bare CR stays inside its value."""
    data = tmp_path / "part.csv"
    data.write_bytes(b"text,extra,id\r\nhello\rworld,x,1\r\n\"two\nlines\",y,2\nplain,z,3\n")
    section = {"file_pattern": str(data), "delimiter": ",", "header": True,
               "columns": [{"name": "id", "type": "int"}, {"name": "text", "type": "string"}]}
    rows = inspect_run.read_raw_rows(section, 5)
    assert rows == [{"id": "1", "text": "hello\rworld"}, {"id": "2", "text": "two\nlines"},
                    {"id": "3", "text": "plain"}]


# A local output's account needs no TensorFlow nor Beam ------------------------------------

def test_inspect_of_a_local_output_imports_no_tensorflow_nor_beam(pipeline_run):
    from tests.test_cli import _modules_after  # pylint: disable=import-outside-toplevel
    config, summary = pipeline_run
    code = (f"from beam_pipeline import cli\nassert cli.main(['inspect', "
            f"{config.output.dir!r}]) == 0")
    assert _modules_after(code) == []


def test_inspect_names_agree_with_layout_runs_and_summary(pipeline_run):
    """inspect_run's copies of the layout's paths, the runs root's names and the numeric
    line (their modules import Beam or tf.Transform) are the originals'."""
    from beam_pipeline.outputs import summary as run_summary  # pylint: disable=import-outside-toplevel
    from beam_pipeline.refresh import runs  # pylint: disable=import-outside-toplevel
    config, summary = pipeline_run
    for out in (config.output.dir, "gs://bucket/out", "gs://bucket/out/", "relative/out"):
        assert inspect_run.run_summary_path(out) == layout.run_summary_path(out)
        assert inspect_run.rejected_pattern(out) == layout.rejected_pattern(out)
    assert (inspect_run._RUNS, inspect_run._LATEST) == (runs.RUNS, runs.LATEST)  # pylint: disable=protected-access
    assert inspect_run.resolve(config.output.dir) == runs.resolve(config.output.dir)
    stats = dict(summary["statistics"]["numeric"],
                 empty={"count": 0, "missing": 7, "mean": None, "variance": None,
                        "min": None, "max": None})
    for name, s in stats.items():
        assert inspect_run.numeric_line(name, s) == run_summary.numeric_line(name, s)


def test_inspect_of_a_runs_root_still_resolves_through_runs(tmp_path, capsys):
    """A folder with a runs/ folder or a LATEST pointer goes through refresh.runs."""
    (tmp_path / "runs").mkdir()
    (tmp_path / "LATEST").write_text("not-a-run\n")
    assert cli.main(["inspect", str(tmp_path)]) == cli.EXIT_CONFIG_ERROR
    err = capsys.readouterr().err
    assert "holds runs but none is published" in err, err
    assert cli.main(["inspect", str(tmp_path), "--run", "nope"]) == cli.EXIT_CONFIG_ERROR
    assert "not a run id: 'nope'" in capsys.readouterr().err


# A run that failed, and folders with no run ------------------------------------------------

def test_inspect_of_a_gate_failure_shows_its_status_first_and_no_row_as_written(
        rejected_run, capsys):
    """The failed run's account leads with why it failed, counts no row as written (its
    data was deleted), and exits 2: it is no run to read."""
    config, _ = rejected_run
    out = config.output.dir
    assert cli.main(["inspect", out]) == cli.EXIT_CONFIG_ERROR
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == ("FAILED: the last preprocess failed: too many rejected records "
                        f"(exit 3); see {os.path.join(out, 'rejected')}/"), lines[0]
    (rows,) = [l for l in lines if l.startswith("  rows read ")]
    assert rows.startswith("  rows read 26; written nothing (a failed run keeps no data; "
                           "split "), rows
    assert "written eval" not in captured.out and "written train" not in captured.out
    assert f"    report: {os.path.join(out, 'report.html')}" in lines
    assert any(l.startswith("    transform_fn: ") and l.endswith("(not written)")
               for l in lines), captured.out
    assert captured.err.strip() == (
        f"beam-pipeline inspect: error: {out}: the last preprocess failed: too many "
        f"rejected records (exit 3); see {os.path.join(out, 'rejected')}/")


def test_inspect_of_a_missing_folder_says_no_such_output(tmp_path, capsys):
    missing = str(tmp_path / "no_such_out")
    assert cli.main(["inspect", missing]) == cli.EXIT_CONFIG_ERROR
    err = capsys.readouterr().err
    assert err.startswith(f"beam-pipeline inspect: error: no such output: {missing}; "), err
    assert "config error" not in err
    (tmp_path / "notes.txt").write_text("not a run")
    assert cli.main(["inspect", str(tmp_path)]) == cli.EXIT_CONFIG_ERROR
    assert (f"{tmp_path}: no run here (no run_summary.json; it holds notes.txt); run "
            "preprocess first") in capsys.readouterr().err
    (tmp_path / "notes.txt").unlink()
    assert cli.main(["inspect", str(tmp_path)]) == cli.EXIT_CONFIG_ERROR
    assert (f"{tmp_path}: no run here (no run_summary.json; the folder is empty); run "
            "preprocess first") in capsys.readouterr().err


def test_inspect_lists_the_report_and_the_model_when_present(pipeline_run, tmp_path, capsys):
    config, _ = pipeline_run
    out = tmp_path / "out"
    (out / "model" / "serving").mkdir(parents=True)
    (out / "model" / "metrics.json").write_text("{}")
    shutil.copy(layout.run_summary_path(config.output.dir), out)
    shutil.copy(layout.report_path(config.output.dir), out)
    assert cli.main(["inspect", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"    report: {out / 'report.html'}" in lines, lines
    assert f"    model: {out / 'model'}/ (metrics.json, serving/)" in lines, lines
    assert "  status: complete" in lines


def test_inspect_of_a_failed_run_imports_no_tensorflow_nor_beam(rejected_run):
    from tests.test_cli import _modules_after  # pylint: disable=import-outside-toplevel
    config, _ = rejected_run
    code = (f"from beam_pipeline import cli\nassert cli.main(['inspect', "
            f"{config.output.dir!r}]) == 2")
    assert _modules_after(code) == []


def test_a_statistic_with_no_train_data_and_an_unknown_status_are_failures(tmp_path):
    from beam_pipeline.outputs import run_state  # pylint: disable=import-outside-toplevel
    out = str(tmp_path)
    assert run_state.failure(out, {"status": "complete"}) is None
    assert run_state.failure(out, {}) is None  # a summary from before statuses
    assert run_state.failure(out, {"status": "failed: a statistic with no train data"}) == (
        f"{out}: the last preprocess failed: a statistic with no train data (exit 2); see "
        f"{out}/report.html")
    assert run_state.failure(out, {"status": "odd"}) == (
        f"{out}: the last preprocess did not complete (status 'odd'); run preprocess again")
