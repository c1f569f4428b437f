"""A full output file system: the run fails with "no space left" naming the output (exit 5),
nothing is published, the previous output (and LATEST) is byte for byte as it was, and the
run's partial files are removed.

The file system is a tmpfs of a few MB that the test mounts (root only) and fills with a
file until less is free than a run needs; it is unmounted at the end. Without the right
to mount (not root) the tests skip, and fail under CI (CI=true), where they must run.
"""

import os
import subprocess

import pytest

from beam_pipeline.refresh import runs
from tests import crash_runs as cr

SIZE_MB = 8


@pytest.fixture
def small_disk(tmp_path):
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m", "tmpfs",
                              str(where)], capture_output=True, text=True)
    if mounted.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs: {mounted.stderr}")
        pytest.skip(f"cannot mount a tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(disk, leave_bytes):
    """Writes a filler file so that about `leave_bytes` stay free on `disk`."""
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(disk / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - leave_bytes))
    return os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize


def _size(folder):
    return sum(os.path.getsize(os.path.join(b, n)) for b, _, files in os.walk(folder)
               for n in files)


def _assert_no_space(proc, where):
    assert proc.returncode == 5, (proc.returncode, proc.stderr[-3000:])
    # The command's last word (Beam logs the worker's error, with its stack, before it).
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("beam-pipeline: error: no space left on device"), last
    assert f"writing under {where}" in last


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("disk_data")
    cr.make_span(root / "data" / "2026-11-01", 300, seed=8)
    return root / "data"


def test_preprocess_over_a_full_disk_keeps_the_previous_output(small_disk, data, tmp_path):
    out = str(small_disk / "out")
    path = cr.config(tmp_path, str(data / "*" / "*.csv"), out)
    assert cr.cli("preprocess", "--config", path).returncode == 0
    before = cr.digests(out)
    free = _fill(small_disk, _size(out) // 4)  # a quarter of what the new run needs
    assert free < _size(out)
    proc = cr.cli("preprocess", "--config", path, "--overwrite")
    _assert_no_space(proc, out)
    assert cr.digests(out) == before
    assert cr.siblings(out) == []  # the staging folder is removed
    assert not os.path.exists(cr.lock_of(out))
    assert sorted(os.listdir(small_disk)) == ["filler", "out"]


def test_a_first_run_on_a_full_disk_leaves_nothing(small_disk, data, tmp_path):
    out = str(small_disk / "out")
    path = cr.config(tmp_path, str(data / "*" / "*.csv"), out)
    _fill(small_disk, 64 * 1024)
    proc = cr.cli("preprocess", "--config", path)
    _assert_no_space(proc, out)
    assert sorted(os.listdir(small_disk)) == ["filler"]


def test_refresh_over_a_full_disk_keeps_latest_and_the_published_run(small_disk, data,
                                                                     tmp_path):
    root = str(small_disk / "out")
    path = cr.config(tmp_path, str(data / "*" / "*.csv"), root)
    assert cr.cli("refresh", "--config", path).returncode == 0
    published = runs.latest(root)
    before = cr.digests(root)
    run_size = _size(runs.run_dir(root, published))
    _fill(small_disk, run_size // 4)
    proc = cr.cli("refresh", "--config", path, "--force")
    _assert_no_space(proc, root)
    assert runs.latest(root) == published
    after = cr.digests(root)
    # Every file of the published run and LATEST as they were; the failed run's folder
    # is gone (the span cache, written only after a successful job, is unchanged too).
    assert after == before
    assert os.listdir(runs.runs_dir(root)) == [published]
    assert not os.path.exists(cr.lock_of(root))
