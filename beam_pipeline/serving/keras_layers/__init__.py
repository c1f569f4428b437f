"""A finished run's learned state as native Keras 3 preprocessing layers.

    model = keras_preprocessing_model("OUTPUT")     # raw columns -> transformed features
    model.save("preprocessing.keras")               # reloads with `keras` alone

Every feature becomes the built-in Keras layer it replaces, constructed with the state the
full pass learned (`Normalization(mean=, variance=)`, `StringLookup(vocabulary=, ...)`,
`TextVectorization(vocabulary=, idf_weights=, ...)`, `Discretization(bin_boundaries=)`,
`Hashing`, `HashedCrossing`, `CategoryEncoding`, `Rescaling`), and the missing-value rules
are composed from built-in layers too (compose.py), so the model holds no custom class and
no Lambda: `keras.saving.load_model` rebuilds it in a process that imports neither
tf.Transform nor beam_pipeline. Its outputs equal the transform graph's
(`TFTransformOutput.transform_features_layer()`), names, dtypes and shapes included; a
feature no built-in layer reproduces exactly raises `NotExpressible` naming it and why
(docs/feature-kinds.md, "As native Keras layers").

Inputs: one `[batch]` `keras.Input` per raw column but the label, named after it and typed
as `serving_raw` takes them: float32 (missing: NaN), int64 (missing: int64's minimum) or
string (missing: ""; a multivalent column is its delimited text).
"""

from typing import Optional

import keras

from beam_pipeline.serving.keras_layers.compose import Namer, Steps
from beam_pipeline.serving.keras_layers.kinds import BUILDERS, NotExpressible

__all__ = ["NotExpressible", "build_keras_preprocessing", "keras_preprocessing_model"]


def keras_preprocessing_model(output_dir: str, config=None) -> keras.Model:
    """The run under `output_dir` as a Keras model of built-in preprocessing layers.

    Args:
      output_dir: a finished `beam-pipeline preprocess` output folder (transform_fn/,
        transformed_metadata/, run_summary.json).
      config: the run's `Config` (default: the one its run_summary.json names).

    Returns:
      A functional `keras.Model`: `{raw column: [batch] tensor}` -> `{transformed feature:
      tensor}` for every transformed feature but the label.

    Raises:
      NotExpressible: a feature (or a custom `preprocessing_fn`) whose transform no
        built-in Keras layer reproduces exactly; the message names it and the reason.
    """
    # Heavy imports only here: reloading the saved model needs none of them.
    from beam_pipeline.serving.keras_layers.state import State  # pylint: disable=import-outside-toplevel

    if config is None:
        from beam_pipeline import api  # pylint: disable=import-outside-toplevel
        config = api.open_output(output_dir).config
    if config.preprocessing_fn:
        raise NotExpressible(_Named("preprocessing_fn", "custom"),
                             f"a custom preprocessing_fn ({config.preprocessing_fn}) is "
                             f"arbitrary TensorFlow")
    state = State(output_dir)
    label = config.label.name if config.label else None
    raw_spec = state.tft_output.raw_feature_spec()
    inputs = {name: keras.Input(shape=(), dtype=spec.dtype.name, name=name)
              for name, spec in sorted(raw_spec.items()) if name != label}
    namer = Namer()
    outputs = {}
    for feature in config.features:
        outputs.update(BUILDERS[feature.KIND](inputs, feature, state,
                                              Steps(namer, feature.name)))
    expected = set(state.tft_output.transformed_feature_spec()) - {label}
    if set(outputs) != expected:
        raise ValueError(f"native layers give {sorted(outputs)}, the graph "
                         f"{sorted(expected)}")
    return keras.Model(inputs=inputs, outputs=dict(sorted(outputs.items())),
                       name="keras_preprocessing")


build_keras_preprocessing = keras_preprocessing_model


class _Named:
    """Stands in for a feature in a NotExpressible message."""

    def __init__(self, name, kind):
        self.name, self.KIND = name, kind
