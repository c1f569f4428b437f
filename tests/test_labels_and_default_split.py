"""The README's default split (no `split.key`) and labels that are missing or unseen.

Regression tests for real data that broke the defaults: a keyless split crashed on any
input of two or more columns (pyarrow 25 has no `binary_join_element_wise` kernel for
a `binary` separator beside `large_binary` parts); an empty label was written as 0 (a
passthrough label) or -1 (a class label), and an eval-only class as -1.
"""

import csv
import json
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from tests import reference
from tests.conftest import write_config

SPLIT_BUCKETS = 10_000


def _run(root, config):
    from beam_pipeline.job import preprocess
    from beam_pipeline.config import load_config
    path = write_config(os.path.join(root, "config.yaml"), config)
    return preprocess.run(load_config(path), preprocess.pipeline_options([]))


def _rejects(out):
    rows = []
    for name in sorted(os.listdir(os.path.join(out, "rejected"))):
        with open(os.path.join(out, "rejected", name), encoding="utf-8") as f:
            rows += [json.loads(line) for line in f if line.strip()]
    return rows


def _written(out):
    return {split: reference.read_transformed(out, split) for split in ("train", "eval")}


def _write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _keyless_is_eval(rows, eval_fraction):
    """The documented rule on the typed values: FarmHash64 of the row's values as text
    (missing: empty) joined by \\x1f, mod 10000, below eval_fraction * 10000."""
    keys = np.array(["\x1f".join("" if v is None else str(v) for v in row).encode()
                     for row in rows], dtype=object)
    buckets = tf.strings.to_hash_bucket_fast(keys, SPLIT_BUCKETS).numpy()
    return buckets < int(round(eval_fraction * SPLIT_BUCKETS))


# ---------------------------------------------------------------- class labels, CSV

CLASSES = ["cat", "dog", "fish"]


@pytest.fixture(scope="module")
def class_label_run(tmp_path_factory):
    """Default split over a 3-column CSV with a string class label: 12 empty labels in the
    hashed input; an eval-only input with a class no train row has and one empty label."""
    root = str(tmp_path_factory.mktemp("class_label"))
    rng = np.random.default_rng(3)
    rows, expected_missing = [], []
    for i in range(400):
        label = CLASSES[int(rng.integers(0, 3))] if i % 33 else ""
        word = f"w{int(rng.integers(0, 8))}" if i % 7 else ""
        rows.append([i, word, label])
        if not label:
            expected_missing.append(("train.csv", i + 2))
    _write_csv(os.path.join(root, "train.csv"), ["a", "b", "label"], rows)
    eval_rows = [[1000, "w1", "cat"], [1001, "w2", "zebra"], [1002, "", "dog"],
                 [1003, "w3", "zebra"], [1004, "w1", ""], [1005, "w9", "fish"]]
    _write_csv(os.path.join(root, "eval_only.csv"), ["a", "b", "label"], eval_rows)
    out = os.path.join(root, "out")
    config = {
        "input": [{"file_pattern": os.path.join(root, "train.csv"),
                   "max_rejected_fraction": 0.5},
                  {"file_pattern": os.path.join(root, "eval_only.csv"), "split": "eval",
                   "max_rejected_fraction": 0.5}],
        "columns": [{"name": "a", "type": "int"}, {"name": "b", "type": "string"},
                    {"name": "label", "type": "string"}],
        "label": {"column": "label", "kind": "string_lookup"},
        "features": {"a": {"kind": "passthrough"}, "b": {"kind": "string_lookup"}},
        "output": {"dir": out},
    }
    summary = _run(root, config)
    return {"rows": rows, "eval_rows": eval_rows, "missing": expected_missing, "out": out,
            "summary": summary}


def test_keyless_default_split_runs_and_follows_the_documented_rule(class_label_run):
    run = class_label_run
    written = _written(run["out"])
    kept = [r for r in run["rows"] if r[2]]
    # The typed row as the split sees it: ints as text, an empty string cell is missing.
    expected_eval = _keyless_is_eval([[a, b or None, c] for a, b, c in kept], 0.2)
    expected = {split: sorted(r[0] for r, e in zip(kept, expected_eval) if e == (split == "eval"))
                for split in ("train", "eval")}
    assert sorted(written["train"]["a"].tolist()) == expected["train"]
    # The eval-only input's rows with a learned class go to eval too.
    eval_only = [r[0] for r in run["eval_rows"] if r[2] in CLASSES]
    assert sorted(written["eval"]["a"].tolist()) == sorted(expected["eval"] + eval_only)
    assert 0.1 < len(expected["eval"]) / len(kept) < 0.3


def test_empty_class_labels_are_dead_letters_not_minus_one(class_label_run):
    run = class_label_run
    rejects = _rejects(run["out"])
    missing = sorted((os.path.basename(r["file"]), r["line"]) for r in rejects
                     if r["reason"] == "missing_label")
    assert missing == sorted(run["missing"] + [("eval_only.csv", 6)])
    assert all("label" in r["detail"] for r in rejects)
    for split, values in _written(run["out"]).items():
        assert values["label"].min() >= 0, split
        assert values["label"].max() < len(CLASSES), split


def test_eval_only_class_is_an_unseen_label_dead_letter(class_label_run):
    run = class_label_run
    unseen = [r for r in _rejects(run["out"]) if r["reason"] == "unseen_label"]
    assert sorted(r["raw"] for r in unseen) == ["zebra", "zebra"]
    assert sorted(r["line"] for r in unseen) == [3, 5]  # the header is line 1
    assert all(r["file"].endswith("eval_only.csv") and "'zebra'" in r["detail"]
               for r in unseen)
    written_ids = set(np.concatenate([v["a"] for v in _written(run["out"]).values()]).tolist())
    assert not written_ids & {1001, 1003, 1004}


def test_class_ids_follow_the_train_counts(class_label_run):
    run = class_label_run
    written = _written(run["out"])
    train_ids = set(written["train"]["a"].tolist())
    frame = pd.DataFrame(run["rows"], columns=["a", "b", "label"])
    counts = frame[frame["a"].isin(train_ids)]["label"].value_counts().to_dict()
    order = reference.keras_order(counts)
    by_id = dict(zip(frame["a"], frame["label"]))
    by_id.update({r[0]: r[2] for r in run["eval_rows"]})
    for split, values in written.items():
        assert [order[c] for c in values["label"]] == [by_id[a] for a in values["a"]], split


def test_counts_add_up_with_label_rejects(class_label_run):
    summary = class_label_run["summary"]
    rows = summary["rows"]
    read = len(class_label_run["rows"]) + len(class_label_run["eval_rows"])
    assert rows["read"] == read
    assert rows["read"] == rows["written"]["train"] + rows["written"]["eval"] + rows["rejected"]
    assert rows["rejected_by_reason"] == {"missing_label": len(class_label_run["missing"]) + 1,
                                          "unseen_label": 2}


# --------------------------------------------- a number label in three formats, keyless

@pytest.fixture(scope="module")
def number_label_run(tmp_path_factory):
    """A passthrough int label with empty cells, the same rows as CSV, Parquet and
    TFRecord inputs, hash split on the whole row (no split.key)."""
    root = str(tmp_path_factory.mktemp("number_label"))
    ids = np.arange(300)
    labels = [None if i % 10 == 3 else int(i % 2) for i in ids]
    _write_csv(os.path.join(root, "part.csv"), ["id", "x", "label"],
               [[i, f"{i * 0.5}", "" if v is None else v] for i, v in zip(ids, labels)])
    pq.write_table(pa.table({"id": pa.array(ids + 1000, pa.int64()),
                             "x": pa.array(ids * 0.5, pa.float64()),
                             "label": pa.array(labels, pa.int64())}),
                   os.path.join(root, "part.parquet"))
    with tf.io.TFRecordWriter(os.path.join(root, "part.tfrecord")) as writer:
        for i, v in zip(ids, labels):
            feature = {"id": tf.train.Feature(int64_list=tf.train.Int64List(value=[i + 2000])),
                       "x": tf.train.Feature(float_list=tf.train.FloatList(value=[i * 0.5]))}
            if v is not None:
                feature["label"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))
            writer.write(tf.train.Example(
                features=tf.train.Features(feature=feature)).SerializeToString())
    out = os.path.join(root, "out")
    config = {
        "input": [{"file_pattern": os.path.join(root, "part.csv"), "max_rejected_fraction": 0.2},
                  {"format": "parquet", "file_pattern": os.path.join(root, "part.parquet"),
                   "max_rejected_fraction": 0.2},
                  {"format": "tfrecord", "file_pattern": os.path.join(root, "part.tfrecord"),
                   "max_rejected_fraction": 0.2}],
        "columns": [{"name": "id", "type": "int"}, {"name": "x", "type": "float"},
                    {"name": "label", "type": "int"}],
        "label": {"column": "label"},
        "features": {"id": {"kind": "passthrough"}, "x": {"kind": "normalization"}},
        "output": {"dir": out},
    }
    return {"labels": dict(zip(ids.tolist(), labels)), "out": out, "summary": _run(root, config)}


def test_empty_number_labels_are_dead_letters_in_every_format(number_label_run):
    run = number_label_run
    missing_ids = [i for i, v in run["labels"].items() if v is None]
    found = sorted((os.path.splitext(r["file"])[1], r["line"])
                   for r in _rejects(run["out"]) if r["reason"] == "missing_label")
    # CSV: the physical line (header is line 1); Parquet and TFRecord: the record number.
    expected = sorted([(".csv", i + 2) for i in missing_ids]
                      + [(".parquet", i + 1) for i in missing_ids]
                      + [(".tfrecord", i + 1) for i in missing_ids])
    assert found == expected
    rows = run["summary"]["rows"]
    assert rows["rejected_by_reason"] == {"missing_label": 3 * len(missing_ids)}
    assert rows["read"] == rows["written"]["train"] + rows["written"]["eval"] + rows["rejected"] == 900


def test_no_number_label_is_made_up(number_label_run):
    run = number_label_run
    written = _written(run["out"])
    for split, values in written.items():
        for row_id, label in zip(values["id"], values["label"]):
            assert run["labels"][int(row_id) % 1000] == label, (split, row_id)
    all_ids = sorted(np.concatenate([v["id"] for v in written.values()]) % 1000)
    kept = sorted(3 * [i for i, v in run["labels"].items() if v is not None])
    assert all_ids == kept


def test_label_fill_value_is_an_explicit_opt_out(tmp_path):
    root = str(tmp_path)
    _write_csv(os.path.join(root, "part.csv"), ["id", "label"],
               [[i, "" if i % 4 == 0 else 0] for i in range(40)])
    out = os.path.join(root, "out")
    summary = _run(root, {
        "input": {"file_pattern": os.path.join(root, "part.csv")},
        "columns": [{"name": "id", "type": "int"}, {"name": "label", "type": "int"}],
        "label": {"column": "label", "fill_value": 7},
        "features": {"id": {"kind": "passthrough"}}, "output": {"dir": out}})
    assert summary["rows"]["rejected"] == 0
    written = _written(out)
    for values in written.values():
        for row_id, label in zip(values["id"], values["label"]):
            assert label == (7 if row_id % 4 == 0 else 0)


def test_label_fill_value_must_have_the_column_type(tmp_path):
    from beam_pipeline.config import ConfigError, parse_config
    raw = {"input": {"file_pattern": "x.csv"},
           "columns": [{"name": "id", "type": "int"}, {"name": "label", "type": "int"}],
           "label": {"column": "label", "fill_value": "yes"},
           "features": {"id": {"kind": "passthrough"}}, "output": {"dir": str(tmp_path)}}
    with pytest.raises(ConfigError, match="label.fill_value"):
        parse_config(raw)


# ------------------------------------------------------ a folder input, default split

def test_folder_input_without_validation_split_hashes_the_path(tmp_path):
    root = str(tmp_path)
    data = os.path.join(root, "texts")
    paths = []
    for label, name in enumerate(["neg", "pos"]):
        os.makedirs(os.path.join(data, name))
        for i in range(30):
            path = os.path.join(data, name, f"{i}.txt")
            with open(path, "w") as f:
                f.write(f"{name} words number {i}")
            paths.append((path, label))
    out = os.path.join(root, "out")
    summary = _run(root, {
        "input": {"format": "text_directory", "directory": data},
        "label": {"column": "label"},
        "features": {"path": {"kind": "passthrough"},
                     "text": {"kind": "text_vectorization", "output_sequence_length": 4}},
        "output": {"dir": out}})
    assert summary["rows"]["read"] == 60 and summary["rows"]["rejected"] == 0
    expected_eval = reference.is_eval([p for p, _ in paths], 0.2)
    written = _written(out)
    for split, want in (("train", False), ("eval", True)):
        got = sorted(p.decode() for p in written[split]["path"].ravel())
        assert got == sorted(p for (p, _), e in zip(paths, expected_eval) if e == want)
