"""The serving SavedModel: raw data in, predictions out, the tf.Transform graph inside.

Signatures:
  serving_default(examples: string[None])  serialized tf.Example of RAW features (label
                                           optional, ignored) -> predictions
  serving_raw(<column>: [None] each)       named dense raw tensors, as JSON "instances"
                                           requests carry them; NaN (float), "" (string)
                                           or the dtype's minimum, -2**63 (int64,
                                           `MISSING_INT`), marks a missing value
                                           -> predictions
  transform_features(examples)             -> the transformed features, for skew debugging
  transform_raw(<column>: [None] each)     serving_raw's inputs -> the transformed features

It loads with `tf.saved_model.load` in a process that imports only TensorFlow: the
vocabularies are assets inside it.

Next to it, `model.keras` (`save_keras`) is the trained Keras model itself, for fine-tuning:
it takes the transformed features, not raw data.
"""

import logging
import os
import shutil
import tempfile
from typing import Callable, Dict, Optional, Sequence

import keras
import tensorflow as tf
import tensorflow_transform as tft

from beam_pipeline.outputs import transformed_schema

# A missing int cell in `serving_raw`: int64's minimum. Signature inputs cannot be optional,
# so a per-value sentinel (as NaN for floats and "" for strings) keeps the signature one
# tensor per column: existing callers, JSON "instances" and `saved_model_cli` send the same
# tensors as before. The one cost: a real cell of -9223372036854775808 is served as missing.
MISSING_INT = -2 ** 63


def dense_to_sparse(values: tf.Tensor) -> tf.SparseTensor:
    """`[batch]` dense raw values, missing as in `serving_raw` (NaN, "" or the int dtype's
    minimum), -> the `[batch, 1]` VarLen SparseTensor tf.Transform reads."""
    if values.dtype == tf.string:
        present = tf.not_equal(values, "")
    elif values.dtype.is_floating:
        present = tf.logical_not(tf.math.is_nan(values))
    else:  # the dtype's minimum (MISSING_INT for int64)
        present = tf.not_equal(values, tf.constant(values.dtype.min, values.dtype))
    rows = tf.where(present)[:, 0]
    return tf.SparseTensor(
        indices=tf.stack([rows, tf.zeros_like(rows)], axis=1),
        values=tf.boolean_mask(values, present),
        dense_shape=tf.stack([tf.shape(values, out_type=tf.int64)[0], tf.constant(1, tf.int64)]))


def predictions(task: str, scores: tf.Tensor) -> Dict[str, tf.Tensor]:
    if task == "binary":
        probability = tf.reshape(scores, [-1])
        return {"probability": probability,
                "class_id": tf.cast(probability >= 0.5, tf.int64)}
    if task == "multiclass":
        return {"probabilities": scores, "class_id": tf.argmax(scores, axis=1)}
    return {"value": tf.reshape(scores, [-1])}


def model_input_names(model: keras.Model):
    """How `model` takes its inputs: ("dict", names), ("list", names), ("single", [name]),
    or (None, None) for a model with no declared inputs (a subclassed model): it is then
    called with the dict of every transformed feature."""
    try:
        struct = model.input
    except (AttributeError, ValueError):
        return None, None
    if isinstance(struct, dict):
        return "dict", list(struct)
    if isinstance(struct, (list, tuple)):
        return "list", [t.name for t in struct]
    return "single", [struct.name]


def as_outputs(scores) -> Dict[str, tf.Tensor]:
    """A model's outputs as a signature's dict: a dict as it is, a list as `output_0`,
    `output_1`, ..., one tensor as `output`."""
    if isinstance(scores, dict):
        return dict(scores)
    if isinstance(scores, (list, tuple)):
        return {f"output_{i}": s for i, s in enumerate(scores)}
    return {"output": scores}


def export(model: keras.Model, tft_output: tft.TFTransformOutput, label: str, task: str,
           export_dir: str) -> None:
    """Writes the serving SavedModel of the built-in `model` with `tft_output`'s graph to
    `export_dir` (predictions shaped for `task`) and `model.keras` beside it."""
    write_serving(model, tft_output, label, export_dir, lambda s: predictions(task, s))
    save_keras(model, keras_path(export_dir))


def write_serving(model: keras.Model, tft_output: tft.TFTransformOutput,
                  label: Optional[str], export_dir: str,
                  outputs: Optional[Callable] = None,
                  input_names: Optional[Sequence[str]] = None) -> None:
    """Writes the SavedModel of any Keras 3 `model` that takes transformed features, with
    `tft_output`'s graph inside, and the four signatures of the module docstring.

    Args:
      model: a built Keras 3 model (functional with dict, list or single inputs named as
        transformed features, Sequential, or subclassed).
      label: the raw label column (served rows have none; the graph gets an empty one).
      outputs: the model's outputs -> the signature's dict (default `as_outputs`).
      input_names: the transformed features to pass, in order, as a list; default: what
        the model declares (`model_input_names`), or the dict of all of them.
    """
    raw_spec = tft_output.raw_feature_spec()
    feature_columns = sorted(k for k in raw_spec if k != label)
    if input_names is not None:
        how, names = "list", list(input_names)
    else:
        how, names = model_input_names(model)
    outputs = outputs or as_outputs

    # ExportArchive restores Keras 3 variables in graph-mode loaders too (TF Serving,
    # saved_model_cli run); a plain tf.Module export only served through TF2 eager loading.
    archive = keras.export.ExportArchive()
    archive.track(model)
    tft_layer = tft_output.transform_features_layer()
    archive.track(tft_layer)

    transformed_spec = tft_output.transformed_feature_spec()

    def transform(raw: Dict[str, tf.SparseTensor]) -> Dict[str, tf.Tensor]:
        return transform_with(tft_layer, raw, label, raw_spec, transformed_spec)

    def predict(raw):
        transformed = transform(raw)
        if how == "dict":
            scores = model({k: transformed[k] for k in names}, training=False)
        elif how == "list":
            scores = model([transformed[k] for k in names], training=False)
        elif how == "single":
            scores = model(transformed[names[0]], training=False)
        else:
            scores = model({k: v for k, v in transformed.items() if k != label},
                           training=False)
        return outputs(scores)

    def serving_default(examples):
        return predict(tf.io.parse_example(examples, raw_spec))

    def transform_features(examples):
        transformed = transform(tf.io.parse_example(examples, raw_spec))
        return {k: v for k, v in transformed.items() if k != label}

    raw_signature = {name: tf.TensorSpec([None], raw_spec[name].dtype, name=name)
                     for name in feature_columns}

    def sparse(columns):
        return {name: dense_to_sparse(columns[name]) for name in feature_columns}

    def serving_raw(columns):
        return predict(sparse(columns))

    def transform_raw(columns):
        return {k: v for k, v in transform(sparse(columns)).items() if k != label}

    examples_spec = [tf.TensorSpec([None], tf.string, name="examples")]
    archive.add_endpoint("serving_default", serving_default, examples_spec)
    archive.add_endpoint("serving_raw", serving_raw, [raw_signature])
    archive.add_endpoint("transform_features", transform_features, examples_spec)
    archive.add_endpoint("transform_raw", transform_raw, [raw_signature])
    archive.write_out(export_dir, verbose=False)


def transform_with(tft_layer, raw: Dict[str, tf.SparseTensor], label: Optional[str],
                   raw_spec: Dict, transformed_spec: Dict) -> Dict[str, tf.Tensor]:
    """`tft_layer(raw)`, with an empty label column when `raw` has none (the graph maps
    the label too; served rows have none), and its sparse vector features (the
    `SparseFeature`s of `transformed_spec`) made dense, as training read them."""
    if label and label not in raw:
        raw = dict(raw)
        raw[label] = tf.SparseTensor(
            tf.zeros([0, 2], tf.int64), tf.zeros([0], raw_spec[label].dtype),
            tf.stack([tf.shape(next(iter(raw.values())), out_type=tf.int64)[0],
                      tf.constant(1, tf.int64)]))
    return transformed_schema.densify(tft_layer(raw), transformed_spec)


def keras_path(export_dir: str) -> str:
    """`OUTPUT/model/model.keras`, beside the serving export `OUTPUT/model/serving`."""
    return os.path.dirname(export_dir.rstrip("/")) + "/model.keras"


def save_keras(model: keras.Model, path: str) -> bool:
    """`model.save(path)` through a local temp file (copied with `tf.io.gfile` to a remote
    file system such as gs://), so a failed save leaves no partial file. Returns whether it
    was written: a model Keras cannot serialize (an image tower's `ImagePixels` layer has
    no config) gets a warning, not a failed export.

    Loading it needs the custom layers registered: `import beam_pipeline.serving.model` first.
    """
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "model.keras")
        try:
            model.save(local)
        except (NotImplementedError, TypeError, ValueError) as e:
            logging.getLogger(__name__).warning(
                "%s not written: Keras cannot serialize this model (%s: %s)",
                path, type(e).__name__, str(e).splitlines()[0] if str(e) else "")
            return False
        if "://" in path:
            tf.io.gfile.copy(local, path, overwrite=True)
        else:
            shutil.move(local, path)
    return True
