"""The unchanged job on Beam's portable runner, as distributed runners run Python.

`--runner=PortableRunner --job_endpoint=embed --environment_type=EXTERNAL`: the pipeline goes
to a job service as a proto and every DoFn is pickled into SDK workers started by a
separate worker pool process (`worker_pool_main`), which share nothing with the driver. The
outputs must equal the in-process run's (conftest's `pipeline_run`, same data and config).

The embedded job service runs the job on one SDK worker: it calls the FnApiRunner's
`run_via_runner_api`, which ignores `--direct_num_workers` (only `run_pipeline` reads it),
and `--sdk_worker_parallelism` is for job servers that start their own workers.
"""

import glob
import gzip
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import make_config, write_config

VENV_BIN = os.path.dirname(sys.executable)
EXE = os.path.join(VENV_BIN, "beam-pipeline")
POOL_START_TIMEOUT = 120


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(path_first: str = VENV_BIN) -> dict:
    """This environment with `path_first` first on PATH (the pool starts workers as the
    `python` it finds there)."""
    return {**os.environ, "PATH": path_first + os.pathsep + os.environ.get("PATH", "")}


def start_pool(log_path: str, path_first: str = VENV_BIN):
    """A worker pool on a free loopback port, in its own process group; returns
    (process, port) once it accepts connections."""
    port = _free_port()
    log = open(log_path, "wb")  # pylint: disable=consider-using-with
    proc = subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
         f"--service_port={port}"],
        stdout=log, stderr=subprocess.STDOUT, env=_env(path_first), start_new_session=True)
    log.close()
    deadline = time.monotonic() + POOL_START_TIMEOUT
    while True:
        if proc.poll() is not None:
            with open(log_path, "rb") as f:
                raise RuntimeError(f"worker pool exited ({proc.returncode}): "
                                   f"{f.read()[-2000:]!r}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, port
        except OSError:
            if time.monotonic() > deadline:
                stop_pool(proc)
                raise RuntimeError(f"worker pool not listening on {port} after "
                                   f"{POOL_START_TIMEOUT} s")
            time.sleep(0.2)


def stop_pool(proc) -> None:
    """Kills the pool's process group (the pool and the workers it started)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=10)
            break
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def worker_pool(tmp_path_factory):
    """A Beam worker pool (workers run the venv's python); yields (port, its log file)."""
    log = str(tmp_path_factory.mktemp("pool") / "pool.log")
    proc, port = start_pool(log)
    try:
        yield port, log
    finally:
        stop_pool(proc)


def portable_args(port: int):
    return ["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=EXTERNAL",
            f"--environment_config=localhost:{port}"]


@pytest.fixture(scope="module")
def portable_run(csv_dir, worker_pool, tmp_path_factory):
    """conftest's job through the console script on the portable runner; returns
    (completed process, output folder, wall seconds)."""
    port, _ = worker_pool
    root = tmp_path_factory.mktemp("portable")
    out = str(root / "out")
    path = write_config(root / "config.yaml", make_config(csv_dir, out))
    started = time.monotonic()
    proc = subprocess.run([EXE, "preprocess", "--config", path, *portable_args(port)],
                          capture_output=True, text=True, timeout=900, env=_env())
    seconds = time.monotonic() - started
    print(f"portable run: {seconds:.1f} s")
    return proc, out, seconds


# Comparing outputs -------------------------------------------------------------------------

def read_examples(pattern: str) -> dict:
    """`{id: {feature: (kind, values)}}` of the gzipped TFRecords of tf.Examples (parsed:
    the feature order inside a serialized Example differs between processes)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    rows = {}
    for path in sorted(glob.glob(pattern)):
        for record in tf.data.TFRecordDataset(path, compression_type="GZIP"):
            example = tf.train.Example.FromString(record.numpy())
            features = {}
            for name, feature in example.features.feature.items():
                kind = feature.WhichOneof("kind")
                features[name] = (kind, list(getattr(feature, kind).value))
            key = features["id"][1][0]
            assert key not in rows, f"id {key} written twice"
            rows[key] = features
    return rows


def assert_same_examples(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for key, features in want.items():
        other = got[key]
        assert sorted(other) == sorted(features), key
        for name, (kind, values) in features.items():
            other_kind, other_values = other[name]
            assert other_kind == kind, (key, name)
            assert len(other_values) == len(values), (key, name)
            if kind == "float_list":
                for a, b in zip(other_values, values):
                    assert abs(a - b) <= 1e-6 or (math.isnan(a) and math.isnan(b)), (key, name)
            else:
                assert other_values == values, (key, name)


def assert_close(got, want, where="") -> None:
    """Equal JSON values, floats within rounding (sums over bundles in another order)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want), where
        for k in want:
            assert_close(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (a, b) in enumerate(zip(got, want)):
            assert_close(a, b, f"{where}[{i}]")
    elif isinstance(want, float) and not isinstance(got, bool):
        assert isinstance(got, (int, float)), where
        assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12) or (
            math.isnan(got) and math.isnan(want)), (where, got, want)
    else:
        assert got == want, (where, got, want)


def _rejected_lines(out: str):
    lines = []
    for path in glob.glob(os.path.join(out, "rejected", "*")):
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt") as f:
            lines.extend(line for line in f.read().splitlines() if line)
    return sorted(lines)


# Summary fields that name this run's files or time, not what it computed.
RUN_FIELDS = ("wall_seconds", "config", "output", "artifacts")


def test_portable_run_succeeds_on_the_pools_workers(portable_run, worker_pool):
    proc, out, _ = portable_run
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "rows read" in proc.stdout
    with open(worker_pool[1]) as f:
        log = f.read()
    # The job's SDK worker (the FnApiRunner names them worker_N) was started by the pool,
    # not inside the driver.
    assert 'worker_id="worker_' in log, log[-2000:]
    # The pool's workers share this machine's disk, so the local progress report works.
    with open(os.path.join(out, "run_summary.json")) as f:
        read = json.load(f)["rows"]["read"]
    assert f"progress: 100.0% done: {read:,} of {read:,} rows read" in proc.stderr, \
        proc.stderr[-3000:]


def test_portable_vocabularies_are_byte_identical(portable_run, pipeline_run):
    _, out, _ = portable_run
    config, _ = pipeline_run
    local_assets = os.path.join(config.output.dir, "transform_fn", "assets")
    names = sorted(os.listdir(local_assets))
    assert names and sorted(os.listdir(os.path.join(out, "transform_fn", "assets"))) == names
    for name in names:
        with open(os.path.join(local_assets, name), "rb") as a, \
                open(os.path.join(out, "transform_fn", "assets", name), "rb") as b:
            assert b.read() == a.read(), name


def test_portable_examples_equal_the_in_process_run(portable_run, pipeline_run):
    _, out, _ = portable_run
    config, _ = pipeline_run
    for split in ("train", "eval"):
        want = read_examples(os.path.join(config.output.dir, "data", split, "*.tfrecord.gz"))
        got = read_examples(os.path.join(out, "data", split, "*.tfrecord.gz"))
        assert want, split
        assert_same_examples(got, want)


def test_portable_statistics_summary_and_rejects_equal_the_in_process_run(portable_run,
                                                                          pipeline_run):
    _, out, _ = portable_run
    config, _ = pipeline_run
    local = config.output.dir
    for name in ("statistics/train.json",):
        with open(os.path.join(local, name)) as a, open(os.path.join(out, name)) as b:
            assert_close(json.load(b), json.load(a), name)
    with open(os.path.join(local, "run_summary.json")) as a, \
            open(os.path.join(out, "run_summary.json")) as b:
        want, got = json.load(a), json.load(b)
    for key in RUN_FIELDS:
        want.pop(key), got.pop(key)  # pylint: disable=expression-not-assigned
    assert got["rows"]["read"] == want["rows"]["read"] > 0
    assert_close(got, want, "run_summary")
    assert _rejected_lines(out) == _rejected_lines(local)
    with open(os.path.join(local, "transformed_metadata", "schema.pbtxt")) as a, \
            open(os.path.join(out, "transformed_metadata", "schema.pbtxt")) as b:
        assert b.read() == a.read()


def test_both_runners_report_committed_counters(portable_run, pipeline_run):
    _, out, _ = portable_run
    with open(os.path.join(out, "run_summary.json")) as f:
        assert json.load(f)["counters"] == "committed"
    assert pipeline_run[1]["counters"] == "committed"


# Counters: committed where the runner has them ---------------------------------------------

class _Result:
    """A finished job's result whose metrics are the given MetricResults."""

    def __init__(self, results):
        self._results = results

    def metrics(self):
        results = self._results

        class _Metrics:
            def query(self, _filter=None):
                return {"counters": results, "distributions": [], "gauges": []}
        return _Metrics()


def _counter(name, committed, attempted, step="s"):
    from apache_beam.metrics.execution import MetricKey, MetricResult  # pylint: disable=import-outside-toplevel
    from apache_beam.metrics.metricbase import MetricName  # pylint: disable=import-outside-toplevel
    from beam_pipeline.job import pipeline  # pylint: disable=import-outside-toplevel
    return MetricResult(MetricKey(step, MetricName(pipeline.METRICS_NAMESPACE, name)),
                        committed, attempted)


class _NoCommitted:
    """A MetricResult of a runner that raises on `committed` (as some do)."""

    def __init__(self, result):
        self.key, self.attempted = result.key, result.attempted

    @property
    def committed(self):
        raise NotImplementedError("committed metrics are not supported")


def test_counters_prefer_committed_values():
    from beam_pipeline.job import pipeline  # pylint: disable=import-outside-toplevel
    counters = pipeline.read_counters(_Result([
        _counter("rows_valid", 10, 12, "a"), _counter("rows_valid", 5, 7, "b")]))
    assert counters == {"rows_valid": 15}
    assert counters.kind == "committed"


def test_counters_fall_back_to_attempted_and_say_so():
    from beam_pipeline.job import pipeline  # pylint: disable=import-outside-toplevel
    counters = pipeline.read_counters(_Result([
        _counter("rows_valid", None, 12), _NoCommitted(_counter("rows_rejected", 1, 3))]))
    assert counters == {"rows_valid": 12, "rows_rejected": 3}
    assert counters.kind == "attempted"
    mixed = pipeline.read_counters(_Result([_counter("rows_valid", 4, 5),
                                            _counter("rows_train", None, 2)]))
    assert mixed == {"rows_valid": 4, "rows_train": 2} and mixed.kind == "mixed"
    assert pipeline.read_counters(_Result([])).kind is None


# A worker pool that cannot start workers ---------------------------------------------------

# A small job: the pool is checked after the pipeline is built, and these need no more.
SMALL_FEATURES = {"id": {"kind": "passthrough"}, "f_normal": {"kind": "normalization"}}


def _preprocess(csv_dir, root, capsys, *beam_args):
    """`beam-pipeline preprocess` in this process; returns (exit code, stderr, output)."""
    from beam_pipeline import cli  # pylint: disable=import-outside-toplevel
    out = str(root / "out")
    path = write_config(root / "config.yaml",
                        make_config(csv_dir, out, features=SMALL_FEATURES))
    before = set(threading.enumerate())
    code = cli.main(["preprocess", "--config", path, *beam_args])
    # A refused job leaves no progress reporter running (it would write on after the end).
    assert not [t for t in set(threading.enumerate()) - before if "(_loop)" in t.name]
    return code, capsys.readouterr().err, out


def _files_under(folder):
    return [os.path.join(d, f) for d, _, fs in os.walk(folder) for f in fs]


def test_no_worker_pool_at_the_endpoint_fails_with_exit_2(csv_dir, tmp_path, capsys):
    port = _free_port()  # nothing listens there
    code, err, out = _preprocess(csv_dir, tmp_path, capsys, *portable_args(port))
    assert code == 2, err[-3000:]
    assert f"no Beam worker pool at localhost:{port}" in err
    assert "worker_pool_main" in err
    assert not _files_under(out), "a refused run leaves the output folder empty"


def test_a_pool_whose_python_has_no_beam_fails_within_the_bound(csv_dir, tmp_path, capsys,
                                                               monkeypatch):
    # The pool starts workers as `python` from its PATH: here one that fails as a Python
    # without Beam does (the pool itself runs on the venv's interpreter).
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    fake = fake_bin / "python"
    fake.write_text("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'apache_beam'\" >&2\n"
                    "exit 1\n")
    fake.chmod(0o755)
    proc, port = start_pool(str(tmp_path / "pool.log"), path_first=str(fake_bin))
    monkeypatch.setenv("BEAM_PIPELINE_WORKER_START_TIMEOUT", "20")
    try:
        code, err, out = _preprocess(csv_dir, tmp_path, capsys, *portable_args(port))
    finally:
        stop_pool(proc)
    assert code == 2, err[-3000:]
    assert f"the Beam worker pool at localhost:{port}" in err
    assert "started no SDK worker that connected within 20 s" in err
    assert not _files_under(out)
