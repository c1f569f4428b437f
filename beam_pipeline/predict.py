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
    """Rows -> one array per signature input; an absent or empty value is missing."""
    arrays = {}
    for name, spec in specs.items():
        values = [row.get(name) for row in rows]
        if spec.dtype == tf.string:
            arrays[name] = np.array(["" if v is None else str(v) for v in values], dtype=object)
        elif spec.dtype.is_floating:
            arrays[name] = np.array([np.nan if v in (None, "") else float(v) for v in values],
                                    dtype=spec.dtype.as_numpy_dtype)
        else:
            arrays[name] = np.array([0 if v in (None, "") else int(v) for v in values],
                                    dtype=spec.dtype.as_numpy_dtype)
    return arrays


def _read_rows(path: str) -> Iterator[Dict]:
    with tf.io.gfile.GFile(path, "r") as f:
        text = f.read()
    if path.endswith((".jsonl", ".json")):
        for line in text.splitlines():
            if line.strip():
                yield json.loads(line)
    else:
        yield from csv.DictReader(io.StringIO(text))


def predict(model_dir: str, input_path: str) -> Iterator[Dict]:
    """Yields one prediction dict per input row, in input order."""
    model = tf.saved_model.load(model_dir)
    serve = model.signatures["serving_raw"]
    specs = serve.structured_input_signature[1]
    rows = list(_read_rows(input_path))
    for start in range(0, len(rows), BATCH):
        outputs = serve(**{k: tf.constant(v) for k, v in
                           _column_arrays(rows[start:start + BATCH], specs).items()})
        outputs = {k: v.numpy() for k, v in outputs.items()}
        for i in range(len(rows[start:start + BATCH])):
            yield {k: v[i].tolist() for k, v in outputs.items()}
