"""Class-per-folder text and images end to end: Keras's labels and subsets, bad files set
aside, and an exported model that takes raw text or encoded image bytes.

One pipeline run (and one training) per folder kind, on a tiny dataset from
scripts/make_folders.py plus a few files that cannot be rows.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests import reference
from tests.conftest import REPO, write_config

SEED, SPLIT = 7, 0.25


def _make(root, kind):
    data = root / kind
    subprocess.run([sys.executable, os.path.join(REPO, "scripts", "make_folders.py"),
                    "--out", str(data), "--kind", kind, "--per-class", "8", "--seed", "3"],
                   check=True, capture_output=True)
    classes = sorted(p for p in os.listdir(data) if (data / p).is_dir() and p[0] != ".")
    bad = {}
    if kind == "text":
        bad[data / classes[0] / "zero.txt"] = b""
        bad[data / classes[1] / "latin1.txt"] = "café crème".encode("latin-1")
    else:
        bad[data / classes[0] / "zero.jpg"] = b""
        bad[data / classes[1] / "broken.png"] = b"\x89PNG\r\n\x1a\n not really a png"
    for path, content in bad.items():
        path.write_bytes(content)
    return data, {str(p): content for p, content in bad.items()}


def _run(root, kind, features):
    from beam_pipeline.job import preprocess
    from beam_pipeline.serving import train
    from beam_pipeline.config import ModelConfig, load_config
    data, bad = _make(root, kind)
    config = {
        "input": {"format": f"{kind}_directory", "directory": str(data),
                  "validation_split": SPLIT, "seed": SEED, "max_rejected_fraction": 0.2},
        "label": {"column": "label"},
        "features": features,
        "output": {"dir": str(root / "out")},
        "model": {"epochs": 2, "batch_size": 8},
    }
    loaded = load_config(write_config(root / "config.yaml", config))
    summary = preprocess.run(loaded, preprocess.pipeline_options([]))
    import dataclasses
    model, _ = train.train(dataclasses.replace(loaded, model=ModelConfig(epochs=2, batch_size=8)),
                           verbose=0)
    return data, bad, summary, model, str(root / "out")


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("text_folder"), "text", {
        "path": {"kind": "passthrough"},
        "raw_text": {"kind": "passthrough", "column": "text"},
        "text": {"kind": "text_vectorization", "max_tokens": 100, "output_sequence_length": 8}})


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("image_folder"), "image", {
        "path": {"kind": "passthrough"},
        "image": {"kind": "image", "image_size": [16, 16], "normalize": True,
                  "scale": 1 / 255}})


def _written(out):
    rows = []
    for split in ("train", "eval"):
        data = reference.read_transformed(out, split)
        for i in range(len(data["label"])):
            rows.append((split, {k: v[i] for k, v in data.items()}))
    return rows


def _rejected(out):
    with open(os.path.join(out, "rejected", "rejected-00000-of-00001.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_image_rows_have_keras_labels_and_subsets(image_run):
    import keras
    data, bad, summary, _, out = image_run
    train_ds, val_ds = keras.utils.image_dataset_from_directory(
        str(data), validation_split=SPLIT, subset="both", seed=SEED, image_size=(16, 16),
        batch_size=1000)
    # Keras's own iteration stops at the broken image (it has no dead letters), so its
    # labels are read off its file list: the class folder's position in class_names.
    expected = {}
    for split, ds in (("train", train_ds), ("eval", val_ds)):
        for path in ds.file_paths:
            label = train_ds.class_names.index(os.path.relpath(path, data).split(os.sep)[0])
            expected[path] = (split, label)
    got = {row["path"].decode(): (split, int(row["label"])) for split, row in _written(out)}
    rejected = {r["file"] for r in _rejected(out)}
    assert rejected == set(bad)
    assert got == {p: v for p, v in expected.items() if p not in rejected}
    assert summary["input"]["class_names"] == train_ds.class_names


def test_text_rows_have_keras_labels_and_subsets(text_run):
    import keras
    data, bad, summary, _, out = text_run
    train_ds, val_ds = keras.utils.text_dataset_from_directory(
        str(data), validation_split=SPLIT, subset="both", seed=SEED, batch_size=1000)
    rejected_contents = set(bad.values())
    got = {(split, row["raw_text"], int(row["label"])) for split, row in _written(out)}
    expected = set()
    for split, ds in (("train", train_ds), ("eval", val_ds)):
        for texts, labels in ds:
            for text, label in zip(texts.numpy(), labels.numpy()):
                if text not in rejected_contents:
                    expected.add((split, text, int(label)))
    assert got == expected
    assert summary["input"]["class_names"] == train_ds.class_names


@pytest.mark.parametrize("run, reasons", [
    ("text_run", {"empty_file", "invalid_utf8"}), ("image_run", {"empty_file", "undecodable_image"})])
def test_bad_files_are_set_aside_and_counts_add_up(run, reasons, request):
    _, bad, summary, _, out = request.getfixturevalue(run)
    rejected = _rejected(out)
    assert {r["reason"] for r in rejected} == reasons
    assert {r["file"] for r in rejected} == set(bad)
    rows = summary["rows"]
    assert rows["read"] == sum(rows["written"].values()) + rows["rejected"]
    assert rows["rejected"] == len(bad)


SERVE = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    model = tf.saved_model.load(sys.argv[1])
    request = json.load(open(sys.argv[2]))
    inputs = {k: tf.constant([v.encode("latin-1") for v in values])
              for k, values in request.items()}
    out = model.signatures["serving_raw"](**inputs)
    assert "tensorflow_transform" not in sys.modules
    np.save(sys.argv[3], out["probabilities"].numpy())
""")


@pytest.mark.parametrize("run, column", [("text_run", "text"), ("image_run", "image")])
def test_exported_model_takes_raw_files_and_matches_training_path(run, column, request,
                                                                  tmp_path):
    """Raw file contents through the served model = the model on the written TFRecords."""
    _, bad, _, model, out = request.getfixturevalue(run)
    eval_rows = [row for split, row in _written(out) if split == "eval"]
    paths = [row["path"].decode() for row in eval_rows]
    contents = []
    for path in paths:
        with open(path, "rb") as f:
            contents.append(f.read())
    request_path, result_path = tmp_path / "request.json", tmp_path / "result.npy"
    with open(request_path, "w") as f:
        json.dump({"path": [p.encode().decode("latin-1") for p in paths],
                   column: [c.decode("latin-1") for c in contents]}, f)
    proc = subprocess.run([sys.executable, "-c", SERVE, os.path.join(out, "model", "serving"),
                           str(request_path), str(result_path)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    served = np.load(result_path)
    import tensorflow as tf
    # A list, not np.stack: numpy's bytes dtype would drop an image's trailing NULs.
    features = {name: tf.constant([row[name] for row in eval_rows]) for name in model.input}
    expected = model(features).numpy()
    np.testing.assert_allclose(served, expected, atol=1e-5)


def test_thousands_of_small_files_are_read_in_small_groups(tmp_path):
    """1,500 files: every one becomes a row, and no work item holds more than 64 files."""
    from beam_pipeline import sources
    from beam_pipeline.job import preprocess
    from beam_pipeline.config import load_config
    from beam_pipeline.sources import folder_files
    data = tmp_path / "many"
    for c in range(3):
        (data / f"class_{c}").mkdir(parents=True)
        for i in range(500):
            (data / f"class_{c}" / f"{i:04d}.txt").write_text(f"file {i} of class {c}")
    path = write_config(tmp_path / "config.yaml", {
        "input": {"format": "text_directory", "directory": str(data)},
        "label": {"column": "label"},
        "split": {"key": "path"},
        "features": {"text": {"kind": "text_vectorization", "max_tokens": 50,
                              "output_sequence_length": 4}},
        "output": {"dir": str(tmp_path / "out")}})
    config = load_config(path)
    (read,) = sources.plan(config)
    assert len(read.items) == -(-1500 // folder_files.FILES_PER_ITEM)
    assert max(len(group) for group in read.items) == folder_files.FILES_PER_ITEM
    summary = preprocess.run(config, preprocess.pipeline_options([]))
    assert summary["rows"]["read"] == sum(summary["rows"]["written"].values()) == 1500
