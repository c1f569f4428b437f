"""`train`: fit the Keras model on the transformed TFRecords, evaluate, export with the graph inside."""

import json
import math
import warnings
from typing import Dict, List, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf
from apache_beam.io.filesystems import FileSystems

from beam_pipeline import api
from beam_pipeline.config import Config, ConfigError
from beam_pipeline.outputs import layout
from beam_pipeline.serving import export
from beam_pipeline.serving.model import build_model, feature_parts, infer_task


def _labels(out: str, split: str, label: str, label_spec) -> np.ndarray:
    """Every label of a split, parsing nothing but the label."""
    ds = api.transformed_dataset(out, split, {label: label_spec}, label, 4096, False, 0)
    return np.concatenate([y.numpy() for _, y in ds])


def baseline(task: str, train_labels: np.ndarray, eval_labels: np.ndarray) -> Dict[str, float]:
    """The trivial predictor's eval score: majority class accuracy, or the train mean's MSE."""
    if task == "regression":
        return {"mse": float(np.mean((eval_labels - train_labels.mean()) ** 2))}
    values, counts = np.unique(train_labels, return_counts=True)
    majority = values[np.argmax(counts)]
    return {"accuracy": float(np.mean(eval_labels == majority))}


class NonFiniteError(RuntimeError):
    """Training gave a NaN or infinite loss or prediction: the model is not usable."""


class _StopOnNonFinite(keras.callbacks.Callback):
    """Stops training at the first non-finite batch loss and remembers where (Keras's
    TerminateOnNaN stops too, but silently: `train` raises afterwards)."""

    def __init__(self):
        super().__init__()
        self.epoch, self.bad = 0, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)) and self.bad is None:
            self.bad = (self.epoch + 1, batch, float(loss))
            self.model.stop_training = True


def nonfinite_features(model: keras.Model, dataset: tf.data.Dataset,
                       max_batches: int = 50) -> List[str]:
    """Features whose input or whose part of the model (its column, embedding, pooled
    sequence, image tower) is NaN or infinite on some row of `dataset`'s first batches."""
    parts = feature_parts(model)
    probe = keras.Model(model.inputs, parts) if parts else None
    found = set()
    for features, _ in dataset.take(max_batches):
        for name, value in features.items():
            if value.dtype.is_floating and not np.all(np.isfinite(value.numpy())):
                found.add(name)
        if probe is not None:
            for name, value in probe(features, training=False).items():
                if not np.all(np.isfinite(keras.ops.convert_to_numpy(value))):
                    found.add(name)
    return sorted(found)


def check_finite(model: keras.Model, history, predictions: Optional[np.ndarray],
                 train_ds: tf.data.Dataset, eval_ds: tf.data.Dataset,
                 stopped: Optional[Tuple[int, int, float]] = None) -> None:
    """Raises NonFiniteError if a training loss (batch or epoch, train or validation) or
    an eval prediction is NaN or infinite, or a feature's input or encoding is on an eval
    row (up to `nonfinite_features`' batches), naming the features that give non-finite
    values when it can tell."""
    problems, dataset = [], eval_ds
    if stopped is not None:
        problems.append(f"the training loss was {stopped[2]} at epoch {stopped[0]}, batch "
                        f"{stopped[1]} (training stopped there)")
        dataset = train_ds
    for key, values in (history.history if history is not None else {}).items():
        if key.endswith("loss") and not all(math.isfinite(float(v)) for v in values):
            problems.append(f"{key} per epoch: {[round(float(v), 6) for v in values]}")
            dataset = train_ds if key == "loss" else dataset
    if predictions is not None:
        bad = ~np.isfinite(np.asarray(predictions, dtype=np.float64))
        if bad.any():
            rows = int(bad.reshape(len(bad), -1).any(axis=1).sum())
            problems.append(f"{rows} of {len(bad)} eval predictions are NaN or infinite")
    if not problems:
        # A ReLU turns NaN into 0, so a NaN input or encoding can leave the prediction
        # finite but meaningless (the same for every such row): probe the model's parts.
        names = nonfinite_features(model, eval_ds)
        if names:
            raise NonFiniteError(
                f"train: eval rows have NaN or infinite values in feature(s) "
                f"{', '.join(names)} (their predictions look finite only because a ReLU "
                "maps NaN to 0). Nothing was exported.")
        return
    names = nonfinite_features(model, dataset)
    if not names and dataset is train_ds:
        names = nonfinite_features(model, eval_ds)
    culprit = (f"non-finite values come from feature(s) {', '.join(names)}" if names else
               "no feature's input or encoding is non-finite, so the weights diverged "
               "(try a lower model.learning_rate)")
    raise NonFiniteError(f"train: {'; '.join(problems)}: {culprit}. Nothing was exported.")


def train(config: Config, verbose: int = 2) -> Tuple[keras.Model, Dict]:
    """Trains on the train split, evaluates on eval, writes metrics and the serving export.

    Returns the trained Keras model and the metrics dict (also written to
    `OUTPUT/model/metrics.json`).

    Raises:
      NonFiniteError: a loss or an eval prediction is NaN or infinite (before anything is
        exported); the message names the features involved when it can tell.
    """
    if config.preprocessing_fn:
        raise ConfigError("preprocessing_fn: train builds its model from `features:`; "
                          "with your own preprocessing_fn, train your own model on the TFRecords")
    out, mc = config.output.dir, config.model
    run = api.Output(config)
    tft_output, label = run.tft_output, run.label
    spec = {k: v for k, v in run.feature_spec().items() if k not in mc.exclude_features}
    train_labels, eval_labels = (_labels(out, s, label, spec[label]) for s in ("train", "eval"))
    task, classes = infer_task(config, mc, np.unique(train_labels).tolist())
    model_spec = {k: v for k, v in spec.items() if k != label}
    model = build_model(config, mc, model_spec, run.id_spaces(), task, classes)
    # Parse only what the model takes (it leaves out passed-through strings, for one).
    taken = [k for k in spec if k in model.input and k != label]
    train_ds = run.dataset("train", mc.batch_size, True, mc.seed, taken)
    eval_ds = run.dataset("eval", mc.batch_size, False, mc.seed, taken)
    guard = _StopOnNonFinite()
    callbacks = [guard]
    if mc.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(
            patience=mc.early_stopping_patience, restore_best_weights=True))
    with warnings.catch_warnings():
        # Keras cannot know the length of a TFRecord dataset before reading it once, so it
        # warns "Your input ran out of data" at the first end of each split: that end is the
        # split's expected end, not a dataset too short. (shuffle=False: the dataset
        # shuffles its files and records itself; Keras ignores it for datasets and warns.)
        warnings.filterwarnings("ignore", message="Your input ran out of data",
                                category=UserWarning)
        history = model.fit(train_ds, validation_data=eval_ds, epochs=mc.epochs,
                            callbacks=callbacks, verbose=verbose, shuffle=False)
        if guard.bad is None:
            predictions = model.predict(eval_ds, verbose=0)
            check_finite(model, history, predictions, train_ds, eval_ds)
        else:  # restore_best_weights may hide it: the run is bad either way
            check_finite(model, history, None, train_ds, eval_ds, guard.bad)
        evaluation = model.evaluate(eval_ds, return_dict=True, verbose=0)
    metrics = {
        "task": task, "classes": classes,
        "epochs_run": len(history.history["loss"]),
        "eval": {k: float(v) for k, v in evaluation.items()},
        "baseline": baseline(task, train_labels, eval_labels),
        "rows": {"train": int(train_labels.size), "eval": int(eval_labels.size)},
    }
    export_dir = layout.model_dir(out)
    export.export(model, tft_output, label, task, export_dir)
    metrics["export_dir"] = export_dir
    with FileSystems.create(layout.metrics_path(out)) as f:
        f.write(json.dumps(metrics, indent=2).encode("utf-8"))
    return model, metrics
