"""`refresh` killed at each crash point (docs/reliability.md): LATEST and every published
run stay byte for byte as they were, or the new run is complete and published; a reader
never resolves an incomplete run; a half-committed span cache is never used; and the next
refresh takes over the dead run's lock, removes its debris and publishes.

As in test_crash_points_preprocess, one chain: each crashed refresh (all `--force`, so
each runs again) is also the next run of the one before, then a last one runs to the end.
"""

import os

import pytest

from beam_pipeline.refresh import runs
from tests import crash_runs as cr

POINTS = ["lock_taken", "analysis_done", "shard_written_train", "cache_commit", "staged",
          "refresh_manifest", "refresh_latest", "refresh_retention"]
SPANS = ["2026-11-01", "2026-11-02"]


def _incomplete(root):
    folder = runs.runs_dir(root)
    return sorted(r for r in os.listdir(folder) if r not in runs.complete_runs(root))


def _cache_spans(root):
    """span cache folder -> whether it is marked COMPLETE."""
    found = {}
    cache = os.path.join(root, "cache")
    for key in os.listdir(cache):
        for span in os.listdir(os.path.join(cache, key)):
            found[span] = os.path.exists(os.path.join(cache, key, span, "COMPLETE"))
    return found


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Span 1 refreshed and published; span 2 added; then a refresh crashed at each point
    in turn, and one run to the end. Returns (root, first run id, its digest, what was
    seen after each crash, the last run's process)."""
    base = tmp_path_factory.mktemp("refresh_crash")
    cr.make_span(base / "data" / SPANS[0], 200, seed=1)
    root = str(base / "out")
    path = cr.config(base, str(base / "data" / "*" / "part-*.csv"), root,
                     refresh={"keep_last": 1, "drift": {"defaults": {
                         "row_count_change": None, "vocabulary_churn": None}}})
    proc = cr.cli("refresh", "--config", path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first = runs.latest(root)
    digest = cr.digests(runs.run_dir(root, first))
    cr.make_span(base / "data" / SPANS[1], 200, seed=2, start_id=200)
    seen = []
    for point in POINTS:
        proc = cr.cli("refresh", "--config", path, "--force", crash=point)
        cr.assert_crashed_at(proc, point)
        latest = runs.latest(root)
        seen.append({
            "point": point, "latest": latest, "complete": runs.complete_runs(root),
            "incomplete": _incomplete(root), "resolved": runs.resolve(root),
            "first_digest": (cr.digests(runs.run_dir(root, first))
                             if first in runs.complete_runs(root) else None),
            "latest_assets": cr.digests(os.path.join(runs.run_dir(root, latest),
                                                     "transform_fn", "assets")),
            "cache": _cache_spans(root), "lock": os.path.exists(cr.lock_of(root))})
    final = cr.cli("refresh", "--config", path, "--force")
    return root, first, digest, seen, final


def test_before_latest_moves_the_published_run_is_untouched(chain):
    root, first, digest, seen, _ = chain
    previous_incomplete = []
    for state in seen:
        assert state["lock"], state["point"]  # the dead run's, taken over by the next
        # The debris of the crash before is gone: at most this crash's own run is left.
        assert not set(previous_incomplete) & set(state["incomplete"]), state["point"]
        assert len(state["incomplete"]) <= 1, state
        previous_incomplete = state["incomplete"]
        if state["point"] in ("refresh_latest", "refresh_retention"):
            continue
        assert state["latest"] == first, state["point"]
        assert state["first_digest"] == digest, state["point"]
        assert state["resolved"] == runs.run_dir(root, first)


def test_after_latest_moves_the_new_run_is_complete_and_published(chain):
    root, first, _, seen, _ = chain
    by_point = {s["point"]: s for s in seen}
    for point in ("refresh_latest", "refresh_retention"):
        state = by_point[point]
        assert state["latest"] != first
        assert state["latest"] in state["complete"]
        assert state["resolved"] == runs.run_dir(root, state["latest"])
    # Killed after LATEST moved: retention has not run, the first run is whole.
    assert by_point["refresh_latest"]["first_digest"] is not None
    # Killed mid-retention: the run being deleted lost its manifest first, so it is no
    # longer complete (never resolved), only debris.
    assert by_point["refresh_retention"]["first_digest"] is None
    assert first in by_point["refresh_retention"]["incomplete"]


def test_a_half_committed_span_cache_is_never_used(chain):
    _, _, _, seen, _ = chain
    by_point = {s["point"]: s for s in seen}
    new_span = [s for s in by_point["cache_commit"]["cache"] if SPANS[1] in s]
    assert new_span, by_point["cache_commit"]["cache"]
    assert by_point["cache_commit"]["cache"][new_span[0]] is False  # moved, not marked
    # The next runs analyzed that span again: the same vocabularies as every run since.
    assets = [s["latest_assets"] for s in seen if s["latest"] != seen[0]["latest"]]
    assert assets and all(a == assets[0] for a in assets)


def test_the_next_refresh_publishes_and_removes_the_debris(chain):
    root, first, _, seen, final = chain
    assert final.returncode == 0, final.stderr[-3000:]
    latest = runs.latest(root)
    assert latest not in {s["latest"] for s in seen}
    assert runs.complete_runs(root) == [latest]  # keep_last: 1
    assert _incomplete(root) == []
    assert all(_cache_spans(root).values())
    assert not os.path.exists(cr.lock_of(root))
    assert cr.digests(os.path.join(runs.run_dir(root, latest), "transform_fn", "assets")) \
        == seen[-1]["latest_assets"]
