"""What the crash-point tests share: tiny data, a small config, the console script run
with `BEAM_PIPELINE_CRASH_AT`, and digests of what a reader could open."""

import hashlib
import glob
import os
import subprocess
import sys

from beam_pipeline import crash_points
from beam_pipeline.outputs import layout, output_lock
from tests.conftest import COLUMNS, REPO, write_config

EXE = os.path.join(os.path.dirname(sys.executable), "beam-pipeline")
FEATURES = {
    "id": {"kind": "passthrough"},
    "f_normal": {"kind": "normalization"},
    "cat_small": {"kind": "string_lookup"},
    "int_cat": {"kind": "integer_lookup"},
    "text": {"kind": "text_vectorization", "max_tokens": 50, "output_sequence_length": 4},
}


def make_span(folder, rows, seed, start_id=0):
    """`rows` generated rows as one CSV shard in `folder`."""
    subprocess.run([sys.executable, os.path.join(REPO, "scripts", "make_data.py"),
                    "--rows", str(rows), "--shards", "1", "--out", str(folder),
                    "--seed", str(seed), "--start-id", str(start_id)],
                   check=True, capture_output=True)


def config(root, pattern, out, **extra):
    """A config file under `root` over `pattern` writing to `out`; returns its path."""
    return write_config(root / "config.yaml", {
        "input": {"file_pattern": pattern}, "columns": COLUMNS, "label": {"column": "label"},
        "split": {"eval_fraction": 0.3, "key": "id"}, "features": FEATURES,
        "output": {"dir": out, "num_shards": 1}, **extra})


def cli(*args, crash=None):
    """The console script with `args`, crashing at point `crash` if given."""
    env = {k: v for k, v in os.environ.items() if k != crash_points.ENV}
    if crash:
        env[crash_points.ENV] = crash
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=600, env=env)


def assert_crashed_at(proc, point):
    assert proc.returncode == crash_points.EXIT_CODE, (point, proc.returncode,
                                                       proc.stderr[-3000:])
    assert f"crash point {point} reached" in proc.stderr


def digests(folder):
    """sha256 of every file under `folder`, by path relative to it."""
    found = {}
    for base, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(base, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return found


def siblings(out):
    """The staging and replaced folders beside `out`."""
    return sorted(glob.glob(out + layout.STAGING_MARK + "*")
                  + glob.glob(out + layout.REPLACED_MARK + "*"))


def lock_of(out):
    return output_lock.lock_path(out)
