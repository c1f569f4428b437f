"""`predict`: raw rows (CSV in the training layout, or JSON lines) through the exported model.

Uses only TensorFlow and the SavedModel's `serving_raw` signature, as a serving client would.
"""

import csv
import io
import json
from typing import Dict, Iterator, List

import numpy as np
import tensorflow as tf

BATCH = 1024


def _column_arrays(rows: List[Dict], specs: Dict[str, tf.TensorSpec]) -> Dict[str, np.ndarray]:
    """Rows -> one array per signature input; an absent, null or empty value is missing:
    NaN, "" or, for an int column, the dtype's minimum (-2**63), as `serving_raw` reads them."""
    arrays = {}
    for name, spec in specs.items():
        values = [row.get(name) for row in rows]
        if spec.dtype == tf.string:
            arrays[name] = np.array(["" if v is None else str(v) for v in values], dtype=object)
        elif spec.dtype.is_floating:
            arrays[name] = np.array([np.nan if v in (None, "") else float(v) for v in values],
                                    dtype=spec.dtype.as_numpy_dtype)
        else:  # the signature's missing int: the dtype's minimum (export.MISSING_INT)
            arrays[name] = np.array([spec.dtype.min if v in (None, "") else int(v)
                                     for v in values], dtype=spec.dtype.as_numpy_dtype)
    return arrays


def _read_rows(path: str) -> Iterator[Dict]:
    with tf.io.gfile.GFile(path, "r") as f:
        text = f.read()
    if path.endswith((".jsonl", ".json")):
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError as e:
                    raise InputError(f"--input {path}: line {number} is not JSON ({e})") from None
    else:
        yield from csv.DictReader(io.StringIO(text))


class ModelError(ValueError):
    """The --model folder is not a SavedModel with a `serving_raw` signature."""


class InputError(ValueError):
    """The --input file is missing or unreadable; the message names it."""


def check_input(input_path: str) -> None:
    """`InputError` naming `input_path` unless it is a file."""
    if not tf.io.gfile.exists(input_path):
        raise InputError(f"--input {input_path}: no such file")
    if tf.io.gfile.isdir(input_path):
        raise InputError(f"--input {input_path}: is a folder; expected a CSV or .jsonl file")


def load_raw_signature(model_dir: str):
    """The `serving_raw` signature of the SavedModel in `model_dir`, or `ModelError`
    naming the folder (and the signatures it has)."""
    if not tf.io.gfile.isdir(model_dir):
        what = "is a file, not a folder" if tf.io.gfile.exists(model_dir) else "no such folder"
        raise ModelError(f"--model {model_dir}: {what}; predict takes the serving export of "
                         "`beam-pipeline train`, OUTPUT/model/serving")
    try:
        model = tf.saved_model.load(model_dir)
    except (OSError, ValueError, tf.errors.OpError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"--model {model_dir}: not a loadable SavedModel ({first})") from None
    if "serving_raw" not in model.signatures:
        has = ", ".join(sorted(model.signatures)) or "none"
        raise ModelError(
            f"--model {model_dir}: no serving_raw signature (its signatures: {has}); predict "
            "takes the serving export of `beam-pipeline train`, OUTPUT/model/serving")
    return model, model.signatures["serving_raw"]


def predict(model_dir: str, input_path: str) -> Iterator[Dict]:
    """One prediction dict per input row, in input order, keys sorted by name (the
    signature's outputs come back in an order that changes between processes).

    Checks that the input file exists (`InputError`), loads the model and checks its
    `serving_raw` signature (`ModelError`) now, then reads and predicts lazily."""
    check_input(input_path)
    model, serve = load_raw_signature(model_dir)
    return _predictions(model, serve, input_path)


def _predictions(model, serve, input_path: str) -> Iterator[Dict]:
    # `model` is unused but held by this frame: the signature's variables live in it.
    specs = serve.structured_input_signature[1]
    rows = list(_read_rows(input_path))
    for start in range(0, len(rows), BATCH):
        outputs = serve(**{k: tf.constant(v) for k, v in
                           _column_arrays(rows[start:start + BATCH], specs).items()})
        outputs = {k: outputs[k].numpy() for k in sorted(outputs)}
        for i in range(len(rows[start:start + BATCH])):
            yield {k: v[i].tolist() for k, v in outputs.items()}
