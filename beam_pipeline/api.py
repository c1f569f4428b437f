"""The Python API: a finished run's transformed data, and your own Keras model served on raw data.

    import keras
    import beam_pipeline as bp

    run = bp.open_output("examples/sample/config.yaml")   # or OUTPUT, a refresh root, run=ID
    inputs = run.transformed_inputs()                      # a keras.Input per feature
    cat = keras.layers.Embedding(run.features["cat_small"].id_space, 8)(inputs["cat_small"])
    ...
    model = keras.Model(inputs, outputs)
    model.compile(...)
    model.fit(run.dataset("train", shuffle=True), validation_data=run.dataset("eval"))
    run.export(model, "my_model/serving")                  # raw rows in, predictions out

`beam-pipeline train` uses the same `dataset`, id spaces and export. The export has the
signatures of the built-in model's (`serving_default` on serialized raw tf.Examples,
`serving_raw` on named raw columns, `transform_features`, `transform_raw`), so
`beam-pipeline predict --model my_model/serving` and `saved_model_cli` work on it.
"""

import dataclasses
import json
import os
from typing import Callable, Dict, Optional, Sequence, Tuple

import keras
import tensorflow as tf
import tensorflow_transform as tft

from beam_pipeline.config import Config, ConfigError, load_config, parse_config
from beam_pipeline.outputs import layout, run_state, transformed_schema
from beam_pipeline.serving import export as export_lib

TASKS = ("binary", "multiclass", "regression")


@dataclasses.dataclass(frozen=True)
class TransformedFeature:
    """One transformed feature, as the model receives it.

    Attributes:
      name: its key in the dataset's feature dict and in `transformed_inputs()`.
      feature: the config feature that produces it (a `<name>_missing` indicator or an
        image's extra outputs belong to their feature), or None for a user
        `preprocessing_fn`'s output.
      kind: that feature's kind (e.g. "string_lookup"), "custom" for a user function's.
      dtype: "int64", "float32" or "string".
      shape: per row; () for a scalar, (n,) for a vector or a sequence of n ids.
      id_space: for integer ids, how many distinct ids there are (OOV and mask ids
        included), so `Embedding(input_dim=id_space)` fits exactly; else None.
    """
    name: str
    feature: Optional[str]
    kind: str
    dtype: str
    shape: Tuple[int, ...]
    id_space: Optional[int]


def open_output(path: str, run: Optional[str] = None) -> "Output":
    """Opens the output of a finished run.

    Args:
      path: the run's YAML config, or its output folder (a `preprocess` output, or a
        `refresh` root, which resolves `LATEST`); a folder's config is the one its
        `run_summary.json` names.
      run: a refresh run id to open instead of the published one.

    Returns:
      An `Output`.

    Raises:
      ConfigError: no good run there (`run_state.NoGoodRun`: no such folder, no run
        summary, or its last preprocess failed), or its config cannot be read.
    """
    if path.endswith((".yaml", ".yml")):
        config = load_config(path)
        out, _ = run_state.good_run(config.output.dir, run)
    else:
        out, summary = run_state.good_run(path, run)
        config = _config_of(out, summary)
    return Output(dataclasses.replace(config, output=dataclasses.replace(config.output, dir=out)))


def _config_of(out: str, summary: Dict) -> Config:
    """The config the run in `out` (whose summary is `summary`) was made with: the file the
    summary names, else the run's own copy of it (`layout.config_copy_path`), read with
    relative paths taken from the original's folder as preprocess took them."""
    config_path = summary.get("config")
    if config_path and tf.io.gfile.exists(config_path):
        return load_config(config_path)
    copy = layout.config_copy_path(out)
    if not tf.io.gfile.exists(copy):
        raise ConfigError(f"{out}: the config this run was made with ({config_path}) is not "
                          f"there any more, and the run has no copy of it ({copy}: runs "
                          "before copies were kept); open the output by its config instead")
    import yaml  # pylint: disable=import-outside-toplevel
    with tf.io.gfile.GFile(copy) as f:
        raw = yaml.safe_load(f.read())
    base_dir = os.path.dirname(config_path) if config_path else os.path.dirname(copy)
    return parse_config(raw, path=copy, base_dir=base_dir)


class Output:
    """A finished run: its transformed splits, its features, its transform graph.

    Attributes:
      config: the run's config, `config.output.dir` being the run's folder.
      path: the run's folder.
      label: the label column, or None.
      tft_output: tf.Transform's `TFTransformOutput` of the run.
      features: {name: TransformedFeature} of every transformed feature but the label.
    """

    def __init__(self, config: Config):
        self.config = config
        self.path = config.output.dir
        run_state.check(self.path)  # a failed run keeps no data nor graph to read
        self.label = config.label.name if config.label else None
        self.tft_output = tft.TFTransformOutput(self.path)
        # What the TFRecords hold (a sparse feature as indices and values), and what
        # `dataset` gives (every feature dense).
        self._stored_spec = self.tft_output.transformed_feature_spec()
        self._spec = {n: transformed_schema.dense_spec(s) for n, s in self._stored_spec.items()}
        self.features = {name: self._describe(name) for name in sorted(self._spec)
                         if name != self.label}

    def _describe(self, name: str) -> TransformedFeature:
        spec = self._spec[name]
        owner = next((f for f in sorted(self.config.features, key=lambda f: -len(f.name))
                      if name == f.name or name.startswith(f.name + "_")), None)
        id_space = None
        if owner is not None and owner.name == name:
            id_space = self.id_spaces().get(name)
        elif owner is None and spec.dtype == tf.int64:
            try:  # a user preprocessing_fn: what tf.Transform inferred, if anything
                id_space = self.tft_output.num_buckets_for_transformed_feature(name)
            except ValueError:
                id_space = None
        return TransformedFeature(
            name=name, feature=owner.name if owner else None,
            kind=owner.KIND if owner else "custom", dtype=spec.dtype.name,
            shape=tuple(spec.shape), id_space=id_space)

    def id_spaces(self) -> Dict[str, int]:
        """{feature: number of distinct ids} for every feature that outputs integer ids."""
        if not hasattr(self, "_id_spaces"):
            self._id_spaces = transformed_schema.id_spaces(self.config, self.tft_output)
        return self._id_spaces

    def feature_spec(self, names: Optional[Sequence[str]] = None) -> Dict:
        """The transformed feature spec (tf.io.FixedLenFeature per name, as `dataset` gives
        the features: a sparse feature is its dense shape), label included."""
        names = list(self._spec) if names is None else list(names) + (
            [self.label] if self.label else [])
        return {n: self._spec[n] for n in names}

    def dataset(self, split: str, batch_size: int = 256, shuffle: bool = False,
                seed: int = 0, features: Optional[Sequence[str]] = None) -> tf.data.Dataset:
        """`(features dict, label)` batches of a split ("train" or "eval") read from its
        gzipped TFRecords with parallel reads and prefetch; `shuffle` shuffles files and
        records (give `seed` for a repeatable order); `features` limits what is parsed.
        Without a label, the elements are the features dict only."""
        if split not in ("train", "eval"):
            raise ValueError(f"split: expected 'train' or 'eval', got {split!r}")
        stored = {n: self._stored_spec[n] for n in self.feature_spec(features)}
        ds = transformed_dataset(self.path, split, stored, self.label, batch_size, shuffle, seed)
        rows = self.rows_written().get(split)
        if rows is not None:
            # Keras then knows each epoch's length: progress bars with totals, and no "Your
            # input ran out of data" warning at the split's expected end.
            ds = ds.apply(tf.data.experimental.assert_cardinality(-(-rows // batch_size)))
        return ds

    def rows_written(self) -> Dict[str, int]:
        """{split: rows written}, from the run's summary ({} if it has none)."""
        path = layout.run_summary_path(self.path)
        if not tf.io.gfile.exists(path):
            return {}
        with tf.io.gfile.GFile(path) as f:
            return dict(json.load(f).get("rows", {}).get("written", {}))

    def transformed_inputs(self, names: Optional[Sequence[str]] = None
                           ) -> Dict[str, keras.KerasTensor]:
        """A `keras.Input` per transformed feature (all but the label, or `names`), named,
        shaped and typed as `dataset` gives them: the inputs of a model to `export`."""
        names = list(self.features) if names is None else list(names)
        return {n: keras.Input(shape=self.features[n].shape, dtype=self.features[n].dtype,
                               name=n) for n in names}

    def raw_inputs(self) -> Dict[str, keras.KerasTensor]:
        """A `[batch]` `keras.Input` per raw column but the label, typed as `serving_raw`
        takes them (missing: NaN, "" or int64's minimum); feed them to `transform_layer`."""
        raw = self.tft_output.raw_feature_spec()
        return {n: keras.Input(shape=(), dtype=spec.dtype.name, name=n)
                for n, spec in sorted(raw.items()) if n != self.label}

    def transform_layer(self) -> keras.layers.Layer:
        """A Keras layer applying the transform graph: the dict of `raw_inputs()`' tensors
        -> the dict of transformed features (the label left out)."""
        return TransformLayer(self.tft_output, self.label)

    def keras_preprocessing_model(self) -> keras.Model:
        """The run's learned state as native Keras preprocessing layers (Normalization,
        StringLookup, TextVectorization, ...): a model from raw columns to the transformed
        features that needs neither tf.Transform nor beam_pipeline to load; see
        `beam_pipeline.serving.keras_layers`."""
        from beam_pipeline.serving import keras_layers  # pylint: disable=import-outside-toplevel
        return keras_layers.keras_preprocessing_model(self.path, self.config)

    def export(self, model: keras.Model, export_dir: str, task: Optional[str] = None,
               inputs: Optional[Sequence[str]] = None,
               outputs: Optional[Callable] = None) -> str:
        """Writes a SavedModel of `model` (any built Keras 3 model taking transformed
        features) with the transform graph inside, so it serves raw rows.

        Args:
          model: functional (dict, list or single inputs named as transformed features),
            Sequential, or subclassed (called with the dict of all transformed features).
          export_dir: where to write it (local or gs://).
          task: "binary", "multiclass" or "regression" to shape predictions as the built-in
            model's (`probability`/`class_id`, `probabilities`/`class_id`, `value`); None
            serves the model's outputs as they are (a dict as is, one tensor as `output`).
          inputs: the transformed features to pass as a list, in order, if the model's own
            inputs do not say.
          outputs: a function of the model's outputs -> the signature's dict (overrides
            `task`).

        Returns:
          `export_dir`.
        """
        if task is not None and task not in TASKS:
            raise ValueError(f"task: expected one of {', '.join(TASKS)} or None, got {task!r}")
        if outputs is None and task is not None:
            outputs = lambda scores: export_lib.predictions(task, scores)  # noqa: E731
        export_lib.write_serving(model, self.tft_output, self.label, export_dir, outputs,
                                 inputs)
        return export_dir


class TransformLayer(keras.layers.Layer):
    """The transform graph as a Keras layer: `{raw column: [batch] tensor}` (missing: NaN,
    "" or int64's minimum) -> `{transformed feature: tensor}`, the label left out.

    TensorFlow backend only; it cannot be saved to `.keras` (use `Output.export`, or
    `keras_preprocessing_model` for native layers).
    """

    def __init__(self, tft_output: tft.TFTransformOutput, label: Optional[str], **kwargs):
        super().__init__(trainable=False, **kwargs)
        self._tft = tft_output
        self._label = label
        self._raw_spec = tft_output.raw_feature_spec()
        self._transformed_spec = tft_output.transformed_feature_spec()
        # Not an attribute Keras tracks: it is a tf_keras layer, and its resources (tables,
        # assets) belong to tf.Transform's SavedModel.
        object.__setattr__(self, "_tft_layer", tft_output.transform_features_layer())

    def call(self, raw):
        sparse = {n: export_lib.dense_to_sparse(tf.convert_to_tensor(v))
                  for n, v in raw.items()}
        transformed = export_lib.transform_with(self._tft_layer, sparse, self._label,
                                                self._raw_spec, self._transformed_spec)
        return {k: v for k, v in transformed.items() if k != self._label}


def transformed_dataset(out: str, split: str, feature_spec: Dict, label: Optional[str],
                        batch_size: int, shuffle: bool, seed: int) -> tf.data.Dataset:
    """(features, label) batches from a split's gzipped TFRecords under `out`: parallel
    reads, prefetch; features only when `label` is None. `feature_spec` is the stored
    spec (`TFTransformOutput.transformed_feature_spec()`); sparse features come dense."""
    files = tf.io.gfile.glob(layout.data_pattern(out, split))
    if not files:
        raise ConfigError(f"output.dir: no {split} TFRecords under {out}; run preprocess first")
    ds = tf.data.Dataset.from_tensor_slices(sorted(files))
    if shuffle:
        ds = ds.shuffle(len(files), seed=seed)
    ds = ds.interleave(lambda f: tf.data.TFRecordDataset(f, compression_type="GZIP"),
                       cycle_length=min(4, len(files)), num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=not shuffle)
    if shuffle:
        ds = ds.shuffle(10_000, seed=seed)

    def parse(serialized):
        parsed = transformed_schema.densify(tf.io.parse_example(serialized, feature_spec),
                                            feature_spec)
        if label is None:
            return parsed
        target = parsed.pop(label)
        return parsed, target

    return ds.batch(batch_size).map(parse, num_parallel_calls=tf.data.AUTOTUNE) \
        .prefetch(tf.data.AUTOTUNE)
