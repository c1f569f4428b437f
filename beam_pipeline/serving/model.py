"""A Keras 3 functional model built from the transformed features and the config.

Numbers and fixed-width vectors (one-hot, multi-hot, counts, tf-idf, normalized vectors)
are concatenated; scalar ids (lookups, buckets, hash bins) go through an embedding, or
one-hot when the id space is small; id sequences through an embedding and a masked mean
over the non-padding ids (`MaskedMean`: an all-padding row, e.g. empty text, gives zeros,
not NaN); the head matches the label (binary, multi-class or regression).
"""

import weakref
from typing import Dict, Tuple

import keras
import tensorflow as tf

from beam_pipeline import features
from beam_pipeline.config import Config, ConfigError, ModelConfig
from beam_pipeline.features import image

_PARTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def infer_task(config: Config, model_config: ModelConfig, label_values) -> Tuple[str, int]:
    """(task, number of classes) from the label kind and the train labels seen."""
    if config.label is None:
        raise ConfigError("label: training needs a label column")
    task = model_config.task
    if task == "auto":
        if config.label.kind == "string_lookup":
            task = "multiclass"
        elif config.label.column_type == "float":
            task = "regression"
        else:
            task = "binary" if set(label_values) <= {0, 1} else "multiclass"
    classes = int(max(label_values)) + 1 if task == "multiclass" else 1
    return task, classes


@keras.saving.register_keras_serializable(package="beam_pipeline")
class MaskedMean(keras.layers.Layer):
    """Mean of the embeddings of the non-padding ids: sum over ids != 0 / max(count, 1).

    Called as `MaskedMean()(embeddings, ids)` with embeddings `[batch, steps, dim]` and the
    int ids `[batch, steps]` (0 is the padding id). A row of padding only (empty text, an
    empty multivalent cell) gives a vector of zeros, so the rest of the model still sees
    the other features. Keras's `GlobalAveragePooling1D` with a mask divides by the count of
    unmasked steps, which is 0 for such a row: NaN, which a ReLU then turns into 0 for
    every unit of the layer, hiding every other feature of the row.
    """

    def call(self, embeddings, ids):
        keep = keras.ops.cast(keras.ops.not_equal(ids, 0), embeddings.dtype)
        total = keras.ops.sum(embeddings * keras.ops.expand_dims(keep, -1), axis=1)
        count = keras.ops.sum(keep, axis=1, keepdims=True)
        return total / keras.ops.maximum(count, 1.0)

    def compute_output_shape(self, embeddings_shape, ids_shape):
        return (embeddings_shape[0], embeddings_shape[-1])


class ImagePixels(keras.layers.Layer):
    """The stored image (encoded bytes or uint8) -> float pixels, as the pipeline defines them.

    Runs `features.image.model_pixels`, so training and the exported model decode,
    resize, rescale and normalize the same way.
    """

    def __init__(self, feature, **kwargs):
        super().__init__(**kwargs)
        self._feature = feature

    def call(self, stored, mean=None, std=None):
        return image.model_pixels(stored, self._feature, mean, std)

    def compute_output_shape(self, input_shape):
        return (None,) + tuple(self._feature.pixels_shape)


def _image_tower(feature, inputs: Dict, feature_spec: Dict):
    """A small convolutional encoder of one image feature."""
    name = feature.name
    for extra in (f"{name}_mean", f"{name}_std"):
        if extra in feature_spec and extra not in inputs:
            spec = feature_spec[extra]
            inputs[extra] = keras.Input(shape=tuple(spec.shape), dtype=spec.dtype.name,
                                        name=extra)
    stats = ((inputs[f"{name}_mean"], inputs[f"{name}_std"]) if feature.normalize else ())
    x = ImagePixels(feature, name=f"{name}_pixels")(inputs[name], *stats)
    for i, filters in enumerate((16, 32)):
        x = keras.layers.Conv2D(filters, 3, strides=2, activation="relu",
                                name=f"{name}_conv{i}")(x)
    return keras.layers.GlobalAveragePooling2D(name=f"{name}_pool")(x)


def build_model(config: Config, model_config: ModelConfig, feature_spec: Dict,
                index_sizes: Dict[str, int], task: str, classes: int) -> keras.Model:
    """The functional model over `feature_spec` (the transformed spec minus the label).

    Args:
      index_sizes: for each feature that outputs integer ids, the size of its id space
        (`Feature.id_space`); other int features are used as numbers.
    """
    keras.utils.set_random_seed(model_config.seed)
    inputs, numeric, encoded = {}, [], []
    numeric_names, encoded_names = [], []  # the feature behind each part, for diagnostics
    images = {f.name: f for f in config.features if isinstance(f, features.Image)}
    for name in sorted(feature_spec):
        if name in model_config.exclude_features:
            continue
        spec = feature_spec[name]
        shape = tuple(spec.shape)
        if name not in inputs:  # an image's statistics are made with the image
            inputs[name] = keras.Input(shape=shape, dtype=spec.dtype.name, name=name)
        if any(name in (f"{i}_mean", f"{i}_std") for i in images):
            continue  # an image's learned normalization, used with the image below
        if name in images:
            encoded.append(_image_tower(images[name], inputs, feature_spec))
            encoded_names.append(name)
        elif spec.dtype == tf.string:
            del inputs[name]  # a passed-through key or path: not a model feature
        elif name in index_sizes and shape:  # id sequences (text, multivalent lookups)
            # Id 0 is the padding; MaskedMean leaves it out (and so needs no Keras mask).
            x = keras.layers.Embedding(index_sizes[name], model_config.embedding_dim,
                                       name=f"{name}_embedding")(inputs[name])
            encoded.append(MaskedMean(name=f"{name}_pool")(x, inputs[name]))
            encoded_names.append(name)
        elif name in index_sizes:  # one id per row
            size = index_sizes[name]
            if size <= model_config.one_hot_max:
                encoded.append(keras.layers.CategoryEncoding(
                    size, output_mode="one_hot", name=f"{name}_one_hot")(inputs[name]))
                encoded_names.append(name)
            else:
                x = keras.layers.Embedding(size, model_config.embedding_dim,
                                           name=f"{name}_embedding")(inputs[name])
                encoded.append(keras.layers.Flatten(name=f"{name}_flat")(x))
                encoded_names.append(name)
        elif shape:  # fixed-width float vectors
            numeric.append(keras.ops.cast(inputs[name], "float32"))
            numeric_names.append(name)
        else:  # normalized or passed-through numbers and missing indicators
            x = keras.ops.cast(inputs[name], "float32")
            numeric.append(keras.layers.Reshape((1,), name=f"{name}_column")(x))
            numeric_names.append(name)
    parts = numeric + encoded
    x = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="features")(parts)
    for i, units in enumerate(model_config.hidden_units):
        x = keras.layers.Dense(units, activation="relu", name=f"hidden_{i}")(x)
    if task == "binary":
        output = keras.layers.Dense(1, activation="sigmoid", name="prediction")(x)
        loss, metrics = "binary_crossentropy", ["accuracy", keras.metrics.AUC(name="auc")]
    elif task == "multiclass":
        output = keras.layers.Dense(classes, activation="softmax", name="prediction")(x)
        loss, metrics = "sparse_categorical_crossentropy", ["accuracy"]
    else:
        output = keras.layers.Dense(1, name="prediction")(x)
        loss, metrics = "mse", ["mae"]
    model = keras.Model(inputs, output, name="beam_pipeline_model")
    # What `train` probes when a prediction or the loss is NaN (see `feature_parts`); kept
    # off the model so that saving (SavedModel, .keras) never sees it.
    _PARTS[model] = dict(zip(numeric_names + encoded_names, parts))
    model.compile(optimizer=keras.optimizers.Adam(model_config.learning_rate),
                  loss=loss, metrics=metrics)
    return model


def feature_parts(model: keras.Model):
    """`{feature name: its part of the model's first layer}` (a numeric column, an
    embedding, a pooled sequence, an image tower) of a `build_model` model, or {} for
    another model: a probe for `keras.Model(model.inputs, ...)`."""
    return dict(_PARTS.get(model, {}))
