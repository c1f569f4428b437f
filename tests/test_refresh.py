"""Scheduled refreshes: incremental analysis equals a full one, re-runs are idempotent,
drift blocks a publish, and a killed refresh leaves the published run untouched.

Spans are dated folders of generated CSV (distinct ids per span). Refreshes run through
the installed console script where the exit code or a kill matters, in-process otherwise.
"""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tests import reference
from tests.conftest import COLUMNS, REPO, write_config

ROWS_PER_SPAN = 400
SPANS = ["2026-11-01", "2026-11-02", "2026-11-03"]
FEATURES = {
    "id": {"kind": "passthrough"},
    "f_normal": {"kind": "normalization"},
    "f_missing": {"kind": "normalization", "missing_indicator": True},
    "cat_small": {"kind": "string_lookup"},
    "cat_mid": {"kind": "string_lookup", "max_tokens": 60},
    "int_cat": {"kind": "integer_lookup"},
    "text": {"kind": "text_vectorization", "max_tokens": 200, "output_sequence_length": 8},
}
EXE = os.path.join(os.path.dirname(sys.executable), "beam-pipeline")


def _span(data_dir, name, index, seed=None):
    subprocess.run([sys.executable, os.path.join(REPO, "scripts", "make_data.py"),
                    "--rows", str(ROWS_PER_SPAN), "--shards", "1",
                    "--out", str(data_dir / name), "--seed", str(seed or 100 + index),
                    "--start-id", str(index * ROWS_PER_SPAN)],
                   check=True, capture_output=True)


def _config(root, features=None, **refresh):
    config = {
        "input": {"file_pattern": str(root / "data" / "*" / "part-*.csv")},
        "columns": COLUMNS, "label": {"column": "label"},
        "split": {"eval_fraction": 0.25, "key": "id"},
        "features": features or FEATURES, "output": {"dir": str(root / "out")},
        # Each refresh adds a span (+50% rows), which the default row-count check would flag.
        # cat_mid and text have long tails: a new span of 400 rows brings many unseen
        # tokens, which is not drift at this sample size.
        "refresh": {"keep_last": 3, "drift": {
            "defaults": {"row_count_change": 1.0},
            "features": {"cat_mid": {"vocabulary_churn": None},
                         "text": {"vocabulary_churn": None}}}, **refresh},
    }
    return write_config(root / "config.yaml", config)


def _refresh_in_process(path, force=False):
    from beam_pipeline.job import preprocess
    from beam_pipeline.refresh import job as refresh
    from beam_pipeline.config import load_config
    return refresh.run(load_config(path), preprocess.pipeline_options([]), force)


def _cli(path, *args, timeout=600):
    return subprocess.run([EXE, "refresh", "--config", path, *args], capture_output=True,
                          text=True, timeout=timeout)


def _latest(root):
    from beam_pipeline.refresh import runs
    return runs.latest(str(root / "out"))


def _tree_digest(folder):
    """sha256 over every file's relative path and bytes."""
    digest = hashlib.sha256()
    for base, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            path = os.path.join(base, name)
            digest.update(os.path.relpath(path, folder).encode())
            with open(path, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def incremental(tmp_path_factory):
    """Spans 1-2 refreshed, then span 3 added and refreshed with the cache."""
    root = tmp_path_factory.mktemp("incremental")
    for i, name in enumerate(SPANS[:2]):
        _span(root / "data", name, i)
    path = _config(root)
    first = _refresh_in_process(path)
    _span(root / "data", SPANS[2], 2)
    second = _refresh_in_process(path)
    return root, path, first, second


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """Spans 1-3 in one refresh (no cache: every span analyzed)."""
    root = tmp_path_factory.mktemp("full")
    for i, name in enumerate(SPANS):
        _span(root / "data", name, i)
    path = _config(root)
    return root, _refresh_in_process(path)


def _manifest(root, run_id):
    with open(root / "out" / "runs" / run_id / "MANIFEST.json") as f:
        return json.load(f)


def test_incremental_refresh_analyzes_only_the_new_span(incremental):
    root, _, first, second = incremental
    assert first.status == second.status == "published"
    assert _latest(root) == second.run_id
    manifest = _manifest(root, second.run_id)
    assert manifest["analysis"] == "incremental"
    assert manifest["cached_spans"] == SPANS[:2] and manifest["spans"] == SPANS


def test_incremental_refresh_equals_a_full_one(incremental, full):
    from beam_pipeline.outputs import summary as summary_lib
    import tensorflow_transform as tft
    root, _, _, second = incremental
    full_root, full_outcome = full
    inc_dir = root / "out" / "runs" / second.run_id
    full_dir = full_root / "out" / "runs" / full_outcome.run_id
    a, b = second.summary["statistics"], full_outcome.summary["statistics"]
    assert a["numeric"] == b["numeric"]
    assert a["vocabularies"] == b["vocabularies"]
    for name in ("cat_small", "cat_mid", "int_cat", "text"):
        paths = [tft.TFTransformOutput(str(d)).vocabulary_file_by_name(name)
                 for d in (inc_dir, full_dir)]
        assert summary_lib.read_vocabulary(paths[0]) == summary_lib.read_vocabulary(paths[1])
    for split in ("train", "eval"):
        x = reference.read_transformed(str(inc_dir), split)
        y = reference.read_transformed(str(full_dir), split)
        order_x, order_y = np.argsort(x["id"]), np.argsort(y["id"])
        for name in x:
            if x[name].dtype.kind == "f":  # tft's mean/var: float combine order
                np.testing.assert_allclose(x[name][order_x], y[name][order_y], rtol=1e-5,
                                           atol=1e-5, err_msg=name)
            else:
                np.testing.assert_array_equal(x[name][order_x], y[name][order_y], err_msg=name)


def test_same_input_again_is_not_run_or_published_again(incremental):
    root, path, _, second = incremental
    run_dir = root / "out" / "runs" / second.run_id
    before = _tree_digest(run_dir)
    runs_before = sorted(os.listdir(root / "out" / "runs"))
    proc = _cli(path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "already holds this config and input" in proc.stdout
    assert _latest(root) == second.run_id
    assert sorted(os.listdir(root / "out" / "runs")) == runs_before
    assert _tree_digest(run_dir) == before


def _report_drift(run_dir):
    """The Drift section of the run's report.html: ({data-key: value}, {(feature, check)
    of the highlighted rows})."""
    import ast
    import re
    from tests.test_report import _Collect
    with open(os.path.join(run_dir, "report.html"), encoding="utf-8") as f:
        page = f.read()
    parser = _Collect()
    parser.feed(page)
    values = {k: float(v) if v in ("inf", "-inf") else ast.literal_eval(v)
              for k, v in parser.values.items() if k.startswith("drift.")}
    highlighted = set(re.findall(r'<tr class="breach"><td[^>]*>BREACH</td>'
                                 r'<td class="name">([^<]*)</td><td class="name">([^<]*)</td>',
                                 page))
    return values, highlighted


def _assert_report_shows(run_dir, drift_report):
    values, highlighted = _report_drift(run_dir)
    assert values["drift.verdict"] == ("breached" if drift_report["breached"] else "passed")
    for c in drift_report["checks"]:
        key = f"drift.{c['feature']}.{c['check']}"
        assert values[f"{key}.value"] == c["value"], key
        assert values[f"{key}.threshold"] == c["threshold"], key
    assert highlighted == {(c["feature"], c["check"]) for c in drift_report["checks"]
                           if c["breached"]}


def _drifted_span(data_dir, name, index):
    _span(data_dir, name, index, seed=900)
    path = next((data_dir / name).glob("part-*.csv"))
    frame = pd.read_csv(path, keep_default_na=False, dtype=str)
    frame["f_normal"] = (frame["f_normal"].astype(float) + 30.0).map(lambda v: f"{v:.6g}")
    rng = np.random.RandomState(0)
    frame.loc[rng.random_sample(len(frame)) < 0.7, "cat_small"] = "c_brand_new"
    frame.to_csv(path, index=False)


def test_drift_blocks_the_publish_and_a_clean_span_is_published(tmp_path):
    for i, name in enumerate(SPANS[:2]):
        _span(tmp_path / "data", name, i)
    path = _config(tmp_path)
    assert _cli(path).returncode == 0
    published = _latest(tmp_path)
    _drifted_span(tmp_path / "data", SPANS[2], 2)
    proc = _cli(path)
    assert proc.returncode == 4, proc.stderr[-2000:]
    assert "f_normal" in proc.stdout + proc.stderr and "cat_small" in proc.stdout + proc.stderr
    assert _latest(tmp_path) == published
    blocked = [r for r in os.listdir(tmp_path / "out" / "runs") if r != published]
    (blocked_id,) = blocked
    with open(tmp_path / "out" / "runs" / blocked_id / "drift.json") as f:
        report = json.load(f)
    breached = {c["feature"] for c in report["checks"] if c.get("breached")}
    assert {"f_normal", "cat_small"} <= breached
    # The run's report.html has the gate's verdict and table, breaches highlighted.
    _assert_report_shows(tmp_path / "out" / "runs" / blocked_id, report)
    values, highlighted = _report_drift(tmp_path / "out" / "runs" / blocked_id)
    assert values["drift.verdict"] == "breached"
    assert {("f_normal", "mean_shift"), ("cat_small", "vocabulary_churn")} <= highlighted
    # The first run was compared with nothing: no Drift section.
    assert _report_drift(tmp_path / "out" / "runs" / published)[0] == {}
    # The drifted span replaced by a clean one: published.
    for name in os.listdir(tmp_path / "data" / SPANS[2]):
        os.remove(tmp_path / "data" / SPANS[2] / name)
    _span(tmp_path / "data", SPANS[2], 2)
    proc = _cli(path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert _latest(tmp_path) not in (published, blocked_id)


def _run_tree_digest(folder):
    """`_tree_digest` without the manifest (accepting a run rewrites only that)."""
    digest = hashlib.sha256()
    for base, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            if name == "MANIFEST.json":
                continue
            path = os.path.join(base, name)
            digest.update(os.path.relpath(path, folder).encode())
            with open(path, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


def test_identical_data_passes_the_gate_and_a_blocked_run_can_be_accepted(tmp_path):
    from beam_pipeline.refresh import job as refresh
    from beam_pipeline.config import ConfigError, load_config
    for i, name in enumerate(SPANS[:2]):
        _span(tmp_path / "data", name, i)
    # Churn on for every vocabulary, the capped long-tailed cat_mid and text included, and
    # cat_big cut at 100 tokens (its coverage is below 0.9: the old churn breached on it).
    features = {**FEATURES, "cat_big": {"kind": "string_lookup", "max_tokens": 100}}
    path = _config(tmp_path, features, drift={"defaults": {"row_count_change": 1.0}})
    assert _cli(path).returncode == 0
    first = _latest(tmp_path)
    proc = _cli(path, "--force")  # in the same second or not: a new run id
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    second = _latest(tmp_path)
    assert second != first
    with open(tmp_path / "out" / "runs" / second / "drift.json") as f:
        report = json.load(f)
    assert not report["breached"]
    _assert_report_shows(tmp_path / "out" / "runs" / second, report)
    neutral = {"mean_shift": 0.0, "missing_rate_change": 0.0, "vocabulary_churn": 0.0,
               "row_count_change": 0.0, "variance_ratio": 1.0, "top_k_overlap": 1.0}
    churns = {}
    for check in report["checks"]:
        if check["check"] in neutral and check["threshold"] is not None:
            assert check["value"] == pytest.approx(neutral[check["check"]], abs=1e-9), check
        if check["check"] == "vocabulary_churn":
            churns[check["feature"]] = check["value"]
    assert churns == {"cat_small": 0.0, "cat_mid": 0.0, "cat_big": 0.0, "int_cat": 0.0,
                      "text": 0.0}
    with open(tmp_path / "out" / "runs" / second / "run_summary.json") as f:
        coverage = json.load(f)["statistics"]["vocabularies"]["cat_big"]["coverage"]
    assert coverage < 0.9, coverage

    # A drifted span: blocked; the operator reviews the report and accepts it.
    _drifted_span(tmp_path / "data", SPANS[2], 2)
    proc = _cli(path)
    assert proc.returncode == 4, proc.stderr[-2000:]
    (blocked,) = set(os.listdir(tmp_path / "out" / "runs")) - {first, second}
    assert f"--accept-drift {blocked}" in proc.stderr
    config = load_config(path)
    for run_id, message in ((second, "already the published run"),
                            (first, "not blocked by drift"),
                            ("20990101T000000Z-deadbeef", "does not exist"),
                            ("latest", "not a run id")):
        with pytest.raises(ConfigError, match=message):
            refresh.accept_drift(config, run_id)
    assert _latest(tmp_path) == second
    runs_before = sorted(os.listdir(tmp_path / "out" / "runs"))
    digest = _run_tree_digest(tmp_path / "out" / "runs" / blocked)
    proc = _cli(path, "--accept-drift", blocked)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"published run {blocked} with its drift accepted" in proc.stdout
    assert _latest(tmp_path) == blocked
    assert sorted(os.listdir(tmp_path / "out" / "runs")) == runs_before  # nothing run again
    assert _run_tree_digest(tmp_path / "out" / "runs" / blocked) == digest
    manifest = _manifest(tmp_path, blocked)
    assert manifest["status"] == "published" and manifest["drift_breached"]
    accepted = {(b["feature"], b["check"]) for b in manifest["accepted_drift"]["breaches"]}
    assert {("f_normal", "mean_shift"), ("cat_small", "vocabulary_churn")} <= accepted
    with pytest.raises(ConfigError, match="already the published run"):
        refresh.accept_drift(config, blocked)
    # An unfinished run (debris) cannot be accepted either.
    os.makedirs(tmp_path / "out" / "runs" / "20990101T000000Z-deadbeef")
    with pytest.raises(ConfigError, match="has no manifest"):
        refresh.accept_drift(config, "20990101T000000Z-deadbeef")
