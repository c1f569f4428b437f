"""Discretization, Rescaling and MinMax on a fixed-length vector column, against Keras.

Keras's Discretization and Rescaling take `(batch, n)` arrays; the pipeline's vector
column (`separator` + `length`) gives the same shape. One small tf.Transform run.
"""

import numpy as np
import pytest
import tensorflow as tf

ROWS = 600
BOUNDARIES = [-1.0, 0.0, 0.5, 2.0]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils
    from beam_pipeline.features import KINDS
    rng = np.random.RandomState(5)
    train = rng.normal(size=(ROWS, 3)).astype(np.float32) * [1, 2, 3]
    held_out = np.array([[-5, 0, 0.5], [2, 2.0, 100], [0.49, -1.0, -0.99]], np.float32)
    cells = ["|".join(f"{v:.6g}" for v in row) for row in np.vstack([train, held_out])]
    parsed = np.array([[float(v) for v in c.split("|")] for c in cells], np.float32)

    def make(kind, **options):
        return KINDS[kind].from_options(f"v_{kind}", "v", "float", options, separator="|",
                                        length=3)
    feats = [make("discretization", bin_boundaries=BOUNDARIES),
             make("rescaling", scale=0.5, offset=-1.0), make("min_max")]
    learned = KINDS["discretization"].from_options("v_bins", "v", "float", {"num_bins": 4},
                                                   separator="|", length=3)

    def preprocessing_fn(inputs):
        out = {}
        for f in feats + [learned]:
            out.update(f.transform(inputs))
        return out

    meta = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(
        {"v": tf.io.VarLenFeature(tf.string)}))
    # Analysis on the train rows only; the held-out rows are transformed with those stats.
    with tft_beam.Context(temp_dir=str(tmp_path_factory.mktemp("tft"))):
        transform_fn = ([{"v": [c.encode()]} for c in cells[:ROWS]], meta) \
            | tft_beam.AnalyzeDataset(preprocessing_fn)
        transformed, _ = (([{"v": [c.encode()]} for c in cells], meta), transform_fn) \
            | tft_beam.TransformDataset()
    out = {k: np.stack([r[k] for r in transformed]) for k in transformed[0]}
    return parsed[:ROWS], parsed, out


def test_discretization_of_a_vector_equals_keras(run):
    import keras
    _, data, out = run
    expected = keras.layers.Discretization(bin_boundaries=BOUNDARIES)(data).numpy()
    np.testing.assert_array_equal(out["v_discretization"], expected)


def test_learned_bins_of_a_vector_pool_every_position(run):
    import keras
    train, data, out = run
    # One set of boundaries over all positions: bucket counts of the train values are even.
    counts = np.bincount(out["v_bins"][:ROWS].ravel(), minlength=4)
    assert np.all(np.abs(counts - train.size / 4) <= 0.01 * train.size + 1), counts
    # And bucketing is Keras's given those boundaries: recover them from the outputs.
    flat, buckets = data.ravel(), out["v_bins"].ravel()
    bounds = [flat[buckets >= b].min() for b in range(1, 4)]
    expected = keras.layers.Discretization(bin_boundaries=bounds)(data).numpy()
    np.testing.assert_array_equal(out["v_bins"], expected)


def test_rescaling_of_a_vector_equals_keras(run):
    import keras
    _, data, out = run
    expected = keras.layers.Rescaling(scale=0.5, offset=-1.0)(data).numpy()
    np.testing.assert_allclose(out["v_rescaling"], expected, rtol=1e-6, atol=1e-6)


def test_min_max_of_a_vector_uses_one_range(run):
    import keras
    train, data, out = run
    low, high = train.min(), train.max()
    scale = 1 / (high - low)
    expected = np.clip(keras.layers.Rescaling(scale=scale, offset=-low * scale)(data).numpy(),
                       0, 1)
    np.testing.assert_allclose(out["v_min_max"], expected, rtol=1e-5, atol=1e-6)
