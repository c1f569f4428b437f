"""The transformed TFRecords: parseable, every row once, values as the Keras layers give them."""

import numpy as np
import pytest

from tests import reference
from tests.conftest import EVAL_FRACTION


@pytest.fixture(scope="module")
def raw(csv_dir):
    return reference.raw_frame(csv_dir).set_index("id", drop=False)


@pytest.fixture(scope="module")
def transformed(pipeline_run):
    out = pipeline_run[0].output.dir
    return {s: reference.read_transformed(out, s) for s in ("train", "eval")}


def test_every_row_appears_exactly_once(raw, transformed):
    ids = np.concatenate([transformed["train"]["id"], transformed["eval"]["id"]])
    assert sorted(ids.tolist()) == sorted(raw["id"].tolist())


def test_split_follows_documented_hash_rule(raw, transformed):
    expected_eval = set(raw["id"][reference.is_eval(raw["id"], EVAL_FRACTION)].tolist())
    assert set(transformed["eval"]["id"].tolist()) == expected_eval


def test_counts_add_up(pipeline_run, transformed, raw):
    rows = pipeline_run[1]["rows"]
    assert rows["read"] == len(raw)
    for split in ("train", "eval"):
        assert rows["written"][split] == rows["split"][split] == len(transformed[split]["id"])
    assert rows["read"] == rows["written"]["train"] + rows["written"]["eval"]


def _train(raw):
    return raw[~reference.is_eval(raw["id"], EVAL_FRACTION)]


@pytest.mark.parametrize("split", ["train", "eval"])
def test_normalization_uses_train_statistics(raw, transformed, split):
    train = _train(raw)
    data = transformed[split]
    rows = raw.loc[data["id"]]
    for name in ("f_normal", "f_missing"):
        present = train[name].dropna().to_numpy(np.float64)
        mean, std = present.mean(), present.std()
        values = rows[name].to_numpy(np.float64)
        expected = np.where(np.isnan(values), 0.0, (values - mean) / std)
        np.testing.assert_allclose(data[name], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(data["f_missing_missing"], rows["f_missing"].isna().to_numpy())


@pytest.mark.parametrize("split", ["train", "eval"])
def test_lookups_equal_keras_layers(pipeline_run, raw, transformed, split):
    import keras
    import tensorflow_transform as tft
    from beam_pipeline.outputs.summary import read_vocabulary
    tft_output = tft.TFTransformOutput(pipeline_run[0].output.dir)
    data = transformed[split]
    rows = raw.loc[data["id"]]
    for name, layer_cls, oov in (("cat_small", keras.layers.StringLookup, 1),
                                 ("cat_big", keras.layers.StringLookup, 4),
                                 ("int_cat", keras.layers.IntegerLookup, 3)):
        vocab = [e["token"] for e in read_vocabulary(
            tft_output.vocabulary_file_by_name(name),
            integer=layer_cls is keras.layers.IntegerLookup)]
        layer = layer_cls(vocabulary=vocab, num_oov_indices=oov)
        expected = np.asarray(layer(rows[name].to_numpy())).reshape(-1)
        np.testing.assert_array_equal(data[name], expected, err_msg=name)
    # Plenty of OOV rows exist, so the OOV branch is exercised.
    assert (data["cat_big"] < 4).sum() > 10


@pytest.mark.parametrize("split", ["train", "eval"])
def test_text_ids_equal_keras_text_vectorization(pipeline_run, raw, transformed, split):
    import keras
    train = _train(raw)
    layer = keras.layers.TextVectorization(max_tokens=300, output_sequence_length=12)
    layer.adapt(train["text"].to_numpy(dtype=object), batch_size=256)
    data = transformed[split]
    expected = np.asarray(layer(raw.loc[data["id"], "text"].to_numpy(dtype=object)))
    np.testing.assert_array_equal(data["text"], expected)
    assert (data["text"] == 1).any(), "some OOV tokens expected"


def test_label_passed_through(raw, transformed):
    data = transformed["eval"]
    np.testing.assert_array_equal(data["label"], raw.loc[data["id"], "label"].to_numpy())
