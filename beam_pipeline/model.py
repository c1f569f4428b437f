"""A Keras 3 functional model built from the transformed features and the config.

Numbers and fixed-width vectors (one-hot, multi-hot, counts, tf-idf, normalized vectors)
are concatenated; scalar ids (lookups, buckets, hash bins) go through an embedding, or
one-hot when the id space is small; id sequences through an embedding and average
pooling; the head matches the label (binary, multi-class or regression).
"""

from typing import Dict, Tuple

import keras

from beam_pipeline.config import Config, ConfigError, ModelConfig

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


def build_model(config: Config, model_config: ModelConfig, feature_spec: Dict,
                index_sizes: Dict[str, int], task: str, classes: int) -> keras.Model:
    """The functional model over `feature_spec` (the transformed spec minus the label).

    Args:
      index_sizes: for each feature that outputs integer ids, the size of its id space
        (`Feature.id_space`); other int features are used as numbers.
    """
    keras.utils.set_random_seed(model_config.seed)
    inputs, numeric, encoded = {}, [], []
    for name in sorted(feature_spec):
        if name in model_config.exclude_features:
            continue
        spec = feature_spec[name]
        shape = tuple(spec.shape)
        inputs[name] = keras.Input(shape=shape, dtype=spec.dtype.name, name=name)
        if name in index_sizes and shape:  # id sequences (text, multivalent lookups)
            x = keras.layers.Embedding(index_sizes[name], model_config.embedding_dim,
                                       mask_zero=True, name=f"{name}_embedding")(inputs[name])
            encoded.append(keras.layers.GlobalAveragePooling1D(name=f"{name}_pool")(x))
        elif name in index_sizes:  # one id per row
            size = index_sizes[name]
            if size <= model_config.one_hot_max:
                encoded.append(keras.layers.CategoryEncoding(
                    size, output_mode="one_hot", name=f"{name}_one_hot")(inputs[name]))
            else:
                x = keras.layers.Embedding(size, model_config.embedding_dim,
                                           name=f"{name}_embedding")(inputs[name])
                encoded.append(keras.layers.Flatten(name=f"{name}_flat")(x))
        elif shape:  # fixed-width float vectors
            numeric.append(keras.ops.cast(inputs[name], "float32"))
        else:  # normalized or passed-through numbers and missing indicators
            x = keras.ops.cast(inputs[name], "float32")
            numeric.append(keras.layers.Reshape((1,), name=f"{name}_column")(x))
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
    model.compile(optimizer=keras.optimizers.Adam(model_config.learning_rate),
                  loss=loss, metrics=metrics)
    return model
