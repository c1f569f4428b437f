"""Run in a fresh process: load the exported model with TensorFlow alone and serve requests.

    python serving_check.py MODEL_DIR REQUESTS.npz RESULT.npz

Exits non-zero if tf.Transform or beam_pipeline got imported.
"""

import sys

import numpy as np
import tensorflow as tf


def main(model_dir, requests_path, result_path):
    requests = np.load(requests_path, allow_pickle=True)
    model = tf.saved_model.load(model_dir)
    by_example = model.signatures["serving_default"](
        examples=tf.constant(requests["examples"]))
    raw_inputs = {k[len("raw_"):]: tf.constant(requests[k]) for k in requests.files
                  if k.startswith("raw_")}
    by_raw = model.signatures["serving_raw"](**raw_inputs)
    edge = model.signatures["transform_features"](examples=tf.constant(requests["edge"]))
    edge_predictions = model.signatures["serving_default"](examples=tf.constant(requests["edge"]))
    try:
        model.signatures["serving_default"](examples=tf.constant(requests["wrong_dtype"]))
        wrong_dtype_error = ""
    except tf.errors.InvalidArgumentError as e:
        wrong_dtype_error = str(e)
    # Rows with missing int cells: tf.Examples without them, and named raw tensors with
    # MISSING_INT ("missing_raw_*") or 0 ("zero_raw_*") in them.
    more = {}
    if "missing_examples" in requests.files:
        missing = tf.constant(requests["missing_examples"])
        more["missing_by_example"] = model.signatures["serving_default"](
            examples=missing)["probability"].numpy()
        for k, v in model.signatures["transform_features"](examples=missing).items():
            more[f"missing_example_{k}"] = v.numpy()
        for prefix in ("missing_raw_", "zero_raw_"):
            inputs = {k[len(prefix):]: tf.constant(requests[k]) for k in requests.files
                      if k.startswith(prefix)}
            more[f"{prefix}probability"] = model.signatures["serving_raw"](
                **inputs)["probability"].numpy()
            for k, v in model.signatures["transform_raw"](**inputs).items():
                more[prefix + k] = v.numpy()
    for module in ("tensorflow_transform", "beam_pipeline", "apache_beam"):
        assert module not in sys.modules, f"{module} was imported"
    np.savez(result_path,
             by_example=by_example["probability"].numpy(),
             by_raw=by_raw["probability"].numpy(),
             edge_predictions=edge_predictions["probability"].numpy(),
             wrong_dtype_error=np.array(wrong_dtype_error),
             **{f"edge_{k}": v.numpy() for k, v in edge.items()}, **more)


if __name__ == "__main__":
    main(*sys.argv[1:])
