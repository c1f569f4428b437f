"""`--overwrite` replaces the output only once the new run is complete: a run that fails the
rejected-records gate leaves the previous output byte for byte, and a complete run leaves
nothing of the old one. (Kills at each point: tests/test_crash_points_preprocess.py.)"""

import contextlib
import glob
import io
import json
import os
import shutil

import pytest

from beam_pipeline import cli
from beam_pipeline.outputs import layout, rejects
from beam_pipeline.job import preprocess
from tests.conftest import make_config, write_config
from tests import crash_runs
from tests.test_inspect import BAD_LINES

_digests = crash_runs.digests
_siblings = crash_runs.siblings


@pytest.fixture
def good_output(pipeline_run, tmp_path):
    """A copy of a complete run's output folder; returns (root, out, its digests)."""
    out = str(tmp_path / "out")
    shutil.copytree(pipeline_run[0].output.dir, out)
    digests = _digests(out)
    assert layout.RUN_SUMMARY in digests and "transform_fn/saved_model.pb" in digests
    return tmp_path, out, digests


def test_a_gate_failure_leaves_the_previous_output_unchanged(good_output, csv_dir, capsys):
    root, out, digests = good_output
    data = root / "dirty"
    shutil.copytree(csv_dir, data)
    with open(os.path.join(csv_dir, "part-00000-of-00003.csv"), "rb") as f:
        header = f.readline()
    # 60 bad lines in 1,560 records: 3.8%, over the default limit of 1%.
    (data / "part-00003-bad.csv").write_bytes(
        header + b"".join(line + b"\n" for line, _ in BAD_LINES * 10))
    path = write_config(root / "config.yaml", make_config(str(data), out))

    assert cli.main(["preprocess", "--config", path, "--overwrite"]) == \
        rejects.EXIT_TOO_MANY_REJECTED
    message = capsys.readouterr().err
    assert _digests(out) == digests
    (kept,) = _siblings(out)
    assert layout.sibling_kind(out, kept) == "staging"
    assert f"The previous output in {out} is unchanged" in message, message
    assert f"rejected records are in {kept}" in message, message
    # The failed run's account is there, and nothing to train on by mistake.
    with open(layout.run_summary_path(kept)) as f:
        failed = json.load(f)
    assert failed["status"] == "failed: too many rejected records"
    assert failed["rows"]["rejected"] == len(BAD_LINES) * 10
    assert glob.glob(layout.rejected_pattern(kept))
    assert os.path.exists(layout.report_path(kept))
    assert not any(os.path.exists(p) for p in layout.published_dirs(kept))

    # The next --overwrite run removes the kept folder (here: refused before any run).
    assert preprocess.check_output(out, overwrite=True) is True
    assert _siblings(out) == [] and _digests(out) == digests


def test_a_complete_overwrite_replaces_the_output_completely(good_output, csv_dir,
                                                             pipeline_run):
    root, out, digests = good_output
    # Files only the old run has: a shard of another shard count, debris, a stray file.
    for name in ("data/train/part-00000-of-00001" + layout.DATA_SUFFIX,
                 "statistics/beam-temp-xyz/0a1b2c3d", "notes.txt"):
        os.makedirs(os.path.dirname(os.path.join(out, name)), exist_ok=True)
        with open(os.path.join(out, name), "w") as f:
            f.write("old")
    path = write_config(root / "config.yaml", make_config(csv_dir, out))
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        assert cli.main(["preprocess", "--config", path, "--overwrite"]) == 0
    after = _digests(out)
    assert set(after) == set(digests)  # the new run's files, no file of the old one
    assert _siblings(out) == []
    with open(layout.run_summary_path(out)) as f:
        written = json.load(f)
    # The summary and report name the output, not the staging folder the run was built in.
    assert written["status"] == "complete"
    assert written["output"] == out
    assert written["artifacts"]["transform_fn"] == os.path.join(out, "transform_fn")
    assert written["artifacts"]["data"]["train"] == layout.data_pattern(out, "train")
    with open(layout.report_path(out), encoding="utf-8") as f:
        assert layout.STAGING_MARK not in f.read()
    assert written["rows"] == pipeline_run[1]["rows"]


def test_a_kill_between_the_two_renames_is_undone_by_the_next_overwrite(tmp_path):
    """Killed after the old output was renamed aside and before the new one took its place:
    the next --overwrite puts the old one back, removes the staging folder, and leaves a
    folder that only looks like a sibling (not 8 hex digits) alone."""
    out = str(tmp_path / "out")
    aside = layout.replaced_dir(out, "89abcdef")
    staging = layout.staging_dir(out, "01234567")
    mine = out + layout.STAGING_MARK + "notes"
    for folder in (aside, staging, mine):
        os.makedirs(os.path.join(folder, "data"))
        with open(os.path.join(folder, layout.RUN_SUMMARY), "w") as f:
            f.write(folder)
    assert preprocess.check_output(out, overwrite=True) is True
    with open(layout.run_summary_path(out)) as f:
        assert f.read() == aside
    assert _siblings(out) == [mine]
