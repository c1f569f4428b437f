"""Your own Keras model on a beam_pipeline run, served on raw rows.

    beam-pipeline preprocess --config examples/sample/config.yaml      # once
    python examples/own_model/own_model.py examples/sample/config.yaml examples/own_model/serving
    beam-pipeline predict --model examples/own_model/serving --input rows.jsonl

An embedding per categorical id, a 1-D convolution over each id sequence (text), the
numbers as they are; trained on the run's transformed train split, exported with the
transform graph inside, so the SavedModel takes raw rows.
"""

import sys

import keras

import beam_pipeline as bp


def build(run: bp.Output) -> keras.Model:
    """The model over every numeric transformed feature of `run` (strings left out)."""
    names = [n for n, f in run.features.items() if f.dtype != "string"]
    inputs = run.transformed_inputs(names)
    parts = []
    for name in names:
        feature, x = run.features[name], inputs[name]
        if feature.id_space and feature.shape:      # a sequence of ids: text
            x = keras.layers.Embedding(feature.id_space, 16)(x)
            x = keras.layers.Conv1D(16, 3, padding="same", activation="relu")(x)
            x = keras.layers.GlobalMaxPooling1D()(x)
        elif feature.id_space:                      # one id: a categorical
            x = keras.layers.Flatten()(keras.layers.Embedding(feature.id_space, 8)(x))
        else:                                       # numbers
            x = keras.layers.Flatten()(keras.ops.cast(x, "float32"))
        parts.append(x)
    x = keras.layers.Dense(32, activation="relu")(keras.layers.Concatenate()(parts))
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))


def main(config: str, export_dir: str) -> None:
    run = bp.open_output(config)
    model = build(run)
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    features = list(model.input)
    model.fit(run.dataset("train", shuffle=True, features=features),
              validation_data=run.dataset("eval", features=features), epochs=5, verbose=2)
    run.export(model, export_dir, task="binary")
    print(f"exported to {export_dir}")


if __name__ == "__main__":
    main(*sys.argv[1:])
