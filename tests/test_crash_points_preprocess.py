"""`preprocess` killed at each crash point (docs/reliability.md): what a reader can open is
the previous output byte for byte (or, for a first run, nothing), and the next run takes
over the dead run's lock, removes what it left and succeeds.

Each chain runs the points in the order a run reaches them, every run after the first
being the "next run" of the one before: it must clean up its debris before it crashes
further on (so each crash run is also the cleanup check of the one before), and a last,
uncrashed run ends the chain. Runs go through the console script, as a user's would.
"""

import json
import os
import shutil

import pytest

from beam_pipeline.outputs import layout
from tests import crash_runs as cr

# In the order a run reaches them.
FIRST_RUN_POINTS = ["lock_taken", "analysis_done", "shard_written_train",
                    "shard_written_eval", "staged"]
OVERWRITE_POINTS = FIRST_RUN_POINTS + ["overwrite_swap"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash_data")
    cr.make_span(root / "csv", 300, seed=5)
    return str(root / "csv" / "part-*.csv")


def _complete(out):
    with open(layout.run_summary_path(out)) as f:
        summary = json.load(f)
    assert summary["status"] == "complete"
    assert summary["rows"]["read"] == 300
    return summary


@pytest.fixture(scope="module")
def first_run_chain(data, tmp_path_factory):
    """A first run crashed at every point in turn, then run to the end; returns the output
    folder and what was seen after each crash: (point, output exists, lock left, siblings)."""
    root = tmp_path_factory.mktemp("first_run")
    out = str(root / "out")
    path = cr.config(root, data, out)
    seen = []
    for point in FIRST_RUN_POINTS:
        proc = cr.cli("preprocess", "--config", path, crash=point)
        cr.assert_crashed_at(proc, point)
        seen.append((point, os.path.exists(out), os.path.exists(cr.lock_of(out)),
                     cr.siblings(out)))
    final = cr.cli("preprocess", "--config", path)
    return out, seen, final


def test_a_first_run_killed_anywhere_leaves_no_output_and_the_next_run_cleans_up(
        first_run_chain):
    out, seen, final = first_run_chain
    left = None  # the debris of the crash before
    for point, out_exists, lock_left, staged in seen:
        # Nothing a reader could open: no output folder at all, only the dead run's lock
        # and (after the lock) its staging folder.
        assert not out_exists, point
        assert lock_left, point
        if point == "lock_taken":
            assert staged == []
        else:
            (only,) = staged  # the one of this crash: the one before is gone
            assert only != left, point
            left = only
            assert layout.sibling_kind(out, only) == "staging"
    assert final.returncode == 0, final.stderr[-3000:]
    _complete(out)
    assert cr.siblings(out) == [] and not os.path.exists(cr.lock_of(out))


def test_an_overwrite_killed_anywhere_leaves_the_previous_output_byte_for_byte(
        first_run_chain, data, tmp_path):
    out = str(tmp_path / "out")
    shutil.copytree(first_run_chain[0], out)
    path = cr.config(tmp_path, data, out)
    before = cr.digests(out)
    assert layout.RUN_SUMMARY in before
    for point in OVERWRITE_POINTS:
        proc = cr.cli("preprocess", "--config", path, "--overwrite", crash=point)
        cr.assert_crashed_at(proc, point)
        if point == "overwrite_swap":
            # Killed between the two renames: the old output waits whole beside it.
            (aside,) = [s for s in cr.siblings(out)
                        if layout.sibling_kind(out, s) == "replaced"]
            assert not os.path.exists(out)
            assert cr.digests(aside) == before
        else:
            assert cr.digests(out) == before, point
            assert len(cr.siblings(out)) == (0 if point == "lock_taken" else 1), point
    # A plain next run puts the old output back, then refuses to write over it (exit 2),
    # as it would have before the killed run.
    proc = cr.cli("preprocess", "--config", path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "is not empty" in proc.stderr
    assert cr.digests(out) == before
    assert cr.siblings(out) == [] and not os.path.exists(cr.lock_of(out))
    # The next --overwrite replaces it with a complete run.
    proc = cr.cli("preprocess", "--config", path, "--overwrite")
    assert proc.returncode == 0, proc.stderr[-3000:]
    _complete(out)
    assert set(cr.digests(out)) == set(before)
    assert cr.siblings(out) == [] and not os.path.exists(cr.lock_of(out))
