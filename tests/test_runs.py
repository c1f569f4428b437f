"""beam_pipeline.refresh.runs: run ids, fingerprints, the manifest, the LATEST pointer, cleanup.

Fast: no pipelines. The atomicity test runs a writer in a subprocess and reads LATEST
while it publishes. (Kills at each publish step: tests/test_crash_points_refresh.py.)
"""

import os
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone

import pytest

from beam_pipeline.refresh import runs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
T0 = datetime(2024, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
FP = "ab" * 32


def _make_run(root, seconds, complete=True, fp=FP):
    """A run folder with one data file; with a manifest when `complete`. Returns its id."""
    rid = runs.run_id(fp, T0 + timedelta(seconds=seconds))
    folder = runs.run_dir(str(root), rid)
    os.makedirs(os.path.join(folder, "data"))
    with open(os.path.join(folder, "data", "part-0"), "w") as f:
        f.write("x")
    if complete:
        runs.write_manifest(folder, {"run_id": rid, "fingerprint": fp})
    return rid


# ---- ids and fingerprints ----------------------------------------------------------------

def test_run_ids_sort_by_time():
    times = [T0 + timedelta(days=d, seconds=s) for d in (0, 1, 400) for s in (0, 9, 3599)]
    # Fingerprints in reverse order, so only the time can make the sort agree.
    ids = [runs.run_id(f"{15 - i:x}" * 8, t) for i, t in enumerate(times)]
    assert sorted(ids) == ids
    assert ids[0] == "20240301T120000Z-ffffffff"
    assert all(runs.is_run_id(i) for i in ids)


def test_run_id_uses_utc():
    plus2 = timezone(timedelta(hours=2))
    assert runs.run_id(FP, datetime(2024, 3, 1, 14, 0, tzinfo=plus2)) == runs.run_id(FP, T0)
    assert runs.run_id(FP, T0.replace(tzinfo=None)) == runs.run_id(FP, T0)


def test_fingerprint_depends_on_config_sizes_versions_not_order():
    files = [("gs://b/in/a.csv", 10), ("gs://b/in/b.csv", 20)]
    versions = {"python": "3.11.9", "tensorflow": "2.17.0"}
    base = runs.fingerprint(b"features: {}\n", files, versions)
    assert len(base) == 64 and int(base, 16) >= 0
    assert runs.fingerprint(b"features: {}\n", list(reversed(files)), versions) == base
    assert runs.fingerprint(b"features: {} \n", files, versions) != base
    assert runs.fingerprint(b"features: {}\n", [files[0], ("gs://b/in/b.csv", 21)],
                            versions) != base
    assert runs.fingerprint(b"features: {}\n", files + [("gs://b/in/c.csv", 0)],
                            versions) != base
    assert runs.fingerprint(b"features: {}\n", files,
                            dict(versions, tensorflow="2.17.1")) != base


def test_library_versions():
    versions = runs.library_versions()
    assert set(versions) == {"python", "tensorflow", "tensorflow_transform", "tfx_bsl",
                             "apache_beam", "keras", "beam_pipeline"}
    assert versions["python"] == ".".join(map(str, sys.version_info[:3]))
    assert all(isinstance(v, str) and v for v in versions.values())


# ---- manifest, publish, latest, resolve ------------------------------------------------

def test_manifest_round_trip_and_complete_runs(tmp_path):
    root = str(tmp_path)
    assert runs.complete_runs(root) == []
    new = _make_run(root, 60)
    old = _make_run(root, 0)
    _make_run(root, 30, complete=False)
    assert runs.complete_runs(root) == [old, new]
    assert runs.read_manifest(runs.run_dir(root, new)) == {"run_id": new, "fingerprint": FP}
    unfinished = runs.run_id(FP, T0 + timedelta(seconds=30))
    assert runs.read_manifest(runs.run_dir(root, unfinished)) is None
    assert not [n for n in os.listdir(runs.run_dir(root, new)) if ".tmp-" in n]


def test_find_by_fingerprint_gives_the_newest(tmp_path):
    root = str(tmp_path)
    other = "cd" * 32
    _make_run(root, 0)
    newest = _make_run(root, 10)
    _make_run(root, 20, fp=other)
    _make_run(root, 30, complete=False)  # same fingerprint, but not complete
    assert runs.find_by_fingerprint(root, FP) == newest
    assert runs.find_by_fingerprint(root, "ef" * 32) is None


def test_publish_latest_resolve_round_trip(tmp_path):
    root = str(tmp_path)
    first, second = _make_run(root, 0), _make_run(root, 10)
    runs.publish(root, first)
    assert runs.latest(root) == first
    assert runs.resolve(root) == runs.run_dir(root, first)
    runs.publish(root, second)
    assert runs.latest(root) == second
    assert runs.resolve(root) == runs.run_dir(root, second)
    assert runs.resolve(root, first) == runs.run_dir(root, first)  # pinned to an older run
    with open(os.path.join(root, "LATEST")) as f:
        assert f.read() == second + "\n"
    assert sorted(os.listdir(root)) == ["LATEST", "runs"]  # no temp files left


def test_resolve_falls_back_to_root_without_runs(tmp_path):
    root = str(tmp_path)
    assert runs.resolve(root) == root
    (tmp_path / "run_summary.json").write_text("{}")  # a one-shot preprocess output
    assert runs.resolve(root) == root
    assert runs.latest(root) is None


def test_resolve_errors(tmp_path):
    root = str(tmp_path)
    incomplete = _make_run(root, 0, complete=False)
    with pytest.raises(ValueError, match="none is published"):
        runs.resolve(root)  # runs exist, nothing published
    complete = _make_run(root, 10)
    with pytest.raises(ValueError, match="none is published"):
        runs.resolve(root)  # complete, but still not published
    with pytest.raises(ValueError, match="not a complete run"):
        runs.resolve(root, incomplete)
    with pytest.raises(ValueError, match="not a complete run"):
        runs.resolve(root, runs.run_id(FP, T0 + timedelta(days=9)))  # no such run
    with pytest.raises(ValueError, match="not a run id"):
        runs.resolve(root, "../../etc")
    runs.publish(root, complete)
    assert runs.resolve(root) == runs.run_dir(root, complete)


def test_a_run_without_manifest_is_never_published_or_resolved(tmp_path, caplog):
    root = str(tmp_path)
    good = _make_run(root, 0)
    bad = _make_run(root, 10, complete=False)
    with pytest.raises(ValueError, match="no MANIFEST.json"):
        runs.publish(root, bad)
    assert runs.latest(root) is None and not os.path.exists(os.path.join(root, "LATEST"))
    runs.publish(root, good)
    # A pointer edited by hand to an incomplete run: ignored, with a warning.
    with open(os.path.join(root, "LATEST"), "w") as f:
        f.write(bad + "\n")
    assert runs.latest(root) is None
    assert "has no manifest" in caplog.text
    with pytest.raises(ValueError, match="none is published"):
        runs.resolve(root)
    with open(os.path.join(root, "LATEST"), "w") as f:
        f.write("garbage")
    assert runs.latest(root) is None
    with pytest.raises(ValueError, match="none is published"):
        runs.resolve(root)
    # A pointer file marks a runs root even when no run folder is left: not a fallback.
    other = tmp_path / "other"
    other.mkdir()
    (other / "LATEST").write_text(good + "\n")
    with pytest.raises(ValueError, match="none is published"):
        runs.resolve(str(other))


def test_clean_debris_removes_only_manifestless_runs_not_keep(tmp_path):
    root = str(tmp_path)
    done = _make_run(root, 0)
    killed = _make_run(root, 10, complete=False)
    in_progress = _make_run(root, 20, complete=False)
    empty = runs.run_id(FP, T0 + timedelta(seconds=30))
    os.makedirs(runs.run_dir(root, empty))  # created, killed before writing anything
    os.makedirs(os.path.join(root, "runs", "notes"))  # not a run id: not ours to delete
    runs.publish(root, done)
    assert runs.clean_debris(root, keep=[in_progress]) == [killed, empty]
    assert sorted(os.listdir(os.path.join(root, "runs"))) == sorted([done, in_progress, "notes"])
    assert runs.latest(root) == done
    assert runs.clean_debris(root, keep=[in_progress]) == []


def test_clean_debris_removes_stale_pointer_temp_files(tmp_path):
    root = str(tmp_path)
    stale, young = tmp_path / "LATEST.tmp-1-aaaa", tmp_path / "LATEST.tmp-2-bbbb"
    stale.write_text("x")
    young.write_text("y")
    os.utime(stale, (time.time() - 7200,) * 2)
    runs.clean_debris(root)
    assert not stale.exists() and young.exists()


def test_retention_keeps_newest_and_latest(tmp_path):
    root = str(tmp_path)
    ids = [_make_run(root, s) for s in range(0, 60, 10)]  # six complete runs
    debris = _make_run(root, 100, complete=False)
    runs.publish(root, ids[1])  # e.g. newer runs were blocked by the drift gate
    assert runs.apply_retention(root, 2) == [ids[0], ids[2], ids[3]]
    assert runs.complete_runs(root) == [ids[1], ids[4], ids[5]]
    assert runs.latest(root) == ids[1]
    assert os.path.isdir(runs.run_dir(root, debris))  # retention leaves debris to clean_debris
    assert runs.apply_retention(root, 2) == []
    assert runs.apply_retention(root, 0) == [ids[4], ids[5]]
    assert runs.complete_runs(root) == [ids[1]]
    with pytest.raises(ValueError):
        runs.apply_retention(root, -1)


def test_retention_without_latest(tmp_path):
    root = str(tmp_path)
    ids = [_make_run(root, s) for s in range(3)]
    assert runs.apply_retention(root, 5) == []
    assert runs.apply_retention(root, 1) == ids[:2]


# ---- atomicity ----------------------------------------------------------------------------

def _spawn(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


_ALTERNATE = """
    import os, sys
    from beam_pipeline.refresh import runs
    root, a, b, stop = sys.argv[1:]
    n = 0
    while not os.path.exists(stop):
        runs.publish(root, (a, b)[n % 2])
        n += 1
    print(n)
"""


def test_latest_is_never_torn_while_publishing(tmp_path):
    root = str(tmp_path)
    a, b = _make_run(root, 0), _make_run(root, 10)
    runs.publish(root, a)
    stop = str(tmp_path / "stop")
    writer = _spawn(_ALTERNATE, root, a, b, stop)
    try:
        # Read until both runs have been seen many times, however long the writer takes
        # to flip (a loaded machine): no timer decides anything, the writer runs until told.
        seen = {a: 0, b: 0}
        reads = 0
        while reads < 5000 or min(seen.values()) < 20:
            assert writer.poll() is None, writer.stderr.read()
            got = runs.latest(root)
            assert got in (a, b), f"read {got!r}"
            seen[got] += 1
            reads += 1
            assert runs.resolve(root) in (runs.run_dir(root, a), runs.run_dir(root, b))
    finally:
        open(stop, "w").close()
        out, err = writer.communicate(timeout=600)
    assert writer.returncode == 0, err
    assert int(out) > 2
    assert not [n for n in os.listdir(root) if ".tmp-" in n]
