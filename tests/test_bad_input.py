"""Bad input loses nothing: the corpus of dirty files, the threshold, and preflight errors."""

import collections
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests import bad_input_corpus as corpus
from tests import reference
from tests.conftest import write_config

CASES = corpus.cases()


def _config(data_pattern, out, **input_options):
    return {
        "input": {"file_pattern": data_pattern, "max_rejected_fraction": 1.0, **input_options},
        "columns": corpus.COLUMNS,
        "label": {"column": "label"},
        "split": {"eval_fraction": 0.3, "key": "id"},
        "features": corpus.FEATURES,
        "output": {"dir": out},
    }


def _run(root, name, files):
    """Writes `files` under root/name and runs the job in-process; returns (out, summary)."""
    from beam_pipeline.job import preprocess
    from beam_pipeline.config import load_config
    data = root / name
    data.mkdir()
    for filename, content in files.items():
        (data / filename).write_bytes(content)
    out = str(root / f"{name}_out")
    path = write_config(root / f"{name}.yaml", _config(str(data / "*.csv*"), out))
    return out, preprocess.run(load_config(path), preprocess.pipeline_options([]))


def _rejected(out):
    records = []
    for path in sorted(glob.glob(os.path.join(out, "rejected", "*.jsonl"))):
        with open(path, encoding="utf-8") as f:
            records += [json.loads(line) for line in f]
    return records


@pytest.fixture(scope="module")
def dirty(tmp_path_factory):
    """One run over every case's file."""
    root = tmp_path_factory.mktemp("bad_input")
    out, summary = _run(root, "dirty", {c.filename: c.content() for c in CASES})
    return out, summary, _rejected(out)


def _by_id(out):
    data = {s: reference.read_transformed(out, s) for s in ("train", "eval")}
    rows = {}
    for split, columns in data.items():
        for i, row_id in enumerate(columns["id"]):
            rows[int(row_id)] = (split, {k: v[i] for k, v in columns.items()})
    return rows


@pytest.fixture(scope="module")
def written(dirty):
    return _by_id(dirty[0])


def _case_rejects(rejected, case):
    return sorted((r["line"], r["reason"]) for r in rejected
                  if os.path.basename(r["file"]) == case.filename)


@pytest.mark.parametrize("case", [c for c in CASES if not c.truncate], ids=lambda c: c.name)
def test_each_case_rejects_exactly_its_bad_records(dirty, written, case):
    _, _, rejected = dirty
    ids, rejects = case.expected()
    assert _case_rejects(rejected, case) == sorted(rejects)
    base = 100 * (CASES.index(case) + 1)
    kept = sorted(i for i in written if base <= i < base + 100)
    assert kept == sorted(ids)


def test_truncated_gzip_keeps_the_rows_before_the_damage(dirty, written):
    case = next(c for c in CASES if c.truncate)
    _, _, rejected = dirty
    ids, _ = case.expected()
    base = 100 * (CASES.index(case) + 1)
    kept = sorted(i for i in written if base <= i < base + 100)
    assert 0 < len(kept) < len(ids) and kept == ids[:len(kept)]  # a prefix, nothing invented
    (reject,) = [r for r in rejected if os.path.basename(r["file"]) == case.filename]
    assert reject["reason"] == "unreadable_file" and "truncated" in reject["detail"]
    assert reject["line"] == len(kept) + 2  # the line after the last whole row (header is 1)


def test_dead_letters_say_where_what_and_why(dirty):
    _, _, rejected = dirty
    for record in rejected:
        assert set(record) == {"file", "line", "reason", "detail", "raw", "raw_truncated"}
        assert os.path.isabs(record["file"]) and record["line"] >= 1 and record["detail"]
    bad_float = next(r for r in rejected if r["reason"] == "bad_float")
    assert "'x'" in bad_float["detail"] and "abc" in bad_float["detail"]
    assert "abc" in bad_float["raw"]
    utf8 = [r for r in rejected if r["reason"] == "invalid_utf8"]
    assert any("caf\\xe9" in r["raw"] for r in utf8)  # the undecodable byte shown, not dropped
    assert all("column 'city'" in r["detail"] for r in utf8)


def test_counts_add_up_in_summary_and_dead_letters(dirty):
    _, summary, rejected = dirty
    rows = summary["rows"]
    expected_rejects = collections.Counter(
        reason for c in CASES for _, reason in c.expected()[1])
    expected_rejects["unreadable_file"] += 1  # the truncated gzip
    assert rows["rejected_by_reason"] == dict(expected_rejects)
    assert rows["rejected"] == len(rejected) == sum(expected_rejects.values())
    assert rows["read"] == sum(rows["written"].values()) + rows["rejected"]
    assert summary["status"] == "complete"


def test_valid_rows_transform_exactly_as_from_a_clean_file(dirty, written, tmp_path_factory):
    """The valid rows alone, in a clean file, give the same statistics and outputs."""
    lines = [corpus.HEADER]
    for case in CASES:
        base = 100 * (CASES.index(case) + 1)
        for entry in case.entries:
            if isinstance(entry, corpus.Ok) and entry.id in written and base <= entry.id < base + 100:
                raw = case.raw(entry)
                lines.append(raw.strip() if b"\n" not in raw else raw)
    root = tmp_path_factory.mktemp("clean")
    out, summary = _run(root, "clean", {"clean.csv": b"\n".join(lines) + b"\n"})
    assert summary["rows"]["rejected"] == 0
    clean = _by_id(out)
    assert sorted(clean) == sorted(written)
    for row_id, (split, row) in clean.items():
        other_split, other = written[row_id]
        assert split == other_split, row_id
        for name, value in row.items():
            if np.asarray(value).dtype.kind == "f":  # tft.var's last bit varies run to run
                np.testing.assert_allclose(other[name], value, rtol=1e-6, atol=1e-6,
                                           err_msg=name)
            else:
                np.testing.assert_array_equal(other[name], value, err_msg=name)


def test_too_many_rejects_fail_with_exit_code_and_reasons(tmp_path):
    """A wrong delimiter without a header: every record rejected, exit 3, nothing published."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "part-0.csv").write_bytes(b"1;2.5;3;a;n;0\n2;2.5;3;b;n;1\n")
    out = str(tmp_path / "out")
    config = _config(str(data / "*.csv"), out, header=False)
    del config["input"]["max_rejected_fraction"]  # the default
    path = write_config(tmp_path / "config.yaml", config)
    exe = os.path.join(os.path.dirname(sys.executable), "beam-pipeline")
    proc = subprocess.run([exe, "preprocess", "--config", path], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "2 of 2 records (100.0%) were rejected" in proc.stderr
    assert "wrong_field_count: 2" in proc.stderr
    assert "part-0.csv line 1: expected 6 fields, found 1: '1;2.5;3;a;n;0'" in proc.stderr
    with open(os.path.join(out, "run_summary.json")) as f:
        assert json.load(f)["status"].startswith("failed")
    assert not os.path.exists(os.path.join(out, "data"))
    assert not os.path.exists(os.path.join(out, "transform_fn"))
    assert len(_rejected(out)) == 2


def test_rejects_within_the_threshold_pass(dirty):
    """The gate's arithmetic: at or below the limit passes, above fails with the top reasons."""
    from beam_pipeline.outputs import rejects
    out, summary, _ = dirty
    rows = summary["rows"]
    share = rows["rejected"] / rows["read"]
    rejects.check(rows, share, out)  # exactly at the limit: passes
    with pytest.raises(rejects.TooManyRejected) as e:
        rejects.check(rows, share * 0.99, out)
    top = max(rows["rejected_by_reason"], key=rows["rejected_by_reason"].get)
    assert f"{top}: {rows['rejected_by_reason'][top]:,}" in str(e.value)
    assert " line " in str(e.value)


def test_a_file_without_its_header_fails_before_the_pipeline(tmp_path):
    from beam_pipeline.job import preprocess
    from beam_pipeline.config import ConfigError, load_config
    (tmp_path / "good.csv").write_bytes(corpus.HEADER + b"\n" + corpus.line(1) + b"\n")
    (tmp_path / "headless.csv").write_bytes(corpus.line(2) + b"\n")
    path = write_config(tmp_path / "c.yaml", _config(str(tmp_path / "*.csv"), str(tmp_path / "o")))
    with pytest.raises(ConfigError, match="headless.csv"):
        preprocess.preflight(load_config(path), overwrite=False)


def test_an_output_folder_with_another_run_fails_before_the_pipeline(dirty, tmp_path):
    from beam_pipeline.job import preprocess
    from beam_pipeline.config import ConfigError, load_config
    (tmp_path / "d.csv").write_bytes(corpus.HEADER + b"\n" + corpus.line(1) + b"\n")
    path = write_config(tmp_path / "c.yaml", _config(str(tmp_path / "d.csv"), dirty[0]))
    with pytest.raises(ConfigError, match="output.dir: .* is not empty"):
        preprocess.preflight(load_config(path), overwrite=False)


def test_unreadable_input_and_unwritable_output_fail_before_the_pipeline(tmp_path, monkeypatch):
    """Permissions (the tests run as root, who may read anything: os.access is stubbed)."""
    from beam_pipeline.job import preprocess
    from beam_pipeline.config import ConfigError, load_config
    (tmp_path / "a.csv").write_bytes(corpus.HEADER + b"\n" + corpus.line(1) + b"\n")
    (tmp_path / "b.csv").write_bytes(corpus.HEADER + b"\n" + corpus.line(2) + b"\n")
    path = write_config(tmp_path / "c.yaml", _config(str(tmp_path / "*.csv"),
                                                     str(tmp_path / "out" / "run")))
    config = load_config(path)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: not str(p).endswith("b.csv")
                        and real_access(p, mode))
    with pytest.raises(ConfigError, match=r"no permission to read .*b\.csv"):
        preprocess.preflight(config, overwrite=False)
    monkeypatch.setattr(os, "access", lambda p, mode: str(p) != str(tmp_path)
                        and real_access(p, mode))
    with pytest.raises(ConfigError, match=f"output.dir: no permission to write under {tmp_path}"):
        preprocess.preflight(config, overwrite=False)
