"""Learned statistics equal pandas/numpy on the same train rows."""

import collections

import numpy as np
import pytest

from tests import reference
from tests.conftest import EVAL_FRACTION


@pytest.fixture(scope="module")
def train_rows(csv_dir):
    frame = reference.raw_frame(csv_dir)
    return frame[~reference.is_eval(frame["id"], EVAL_FRACTION)]


@pytest.mark.parametrize("column", ["f_normal", "f_uniform", "f_missing", "int_cat", "label"])
def test_numeric_statistics_match_numpy(pipeline_run, train_rows, column):
    stats = pipeline_run[1]["statistics"]["numeric"][column]
    values = train_rows[column].to_numpy(dtype=np.float64)
    present = values[~np.isnan(values)]
    assert stats["count"] == present.size
    assert stats["missing"] == values.size - present.size
    np.testing.assert_allclose(stats["mean"], present.mean(), rtol=1e-5)
    np.testing.assert_allclose(stats["variance"], present.var(), rtol=1e-5)
    assert stats["min"] == pytest.approx(present.min(), rel=1e-6)
    assert stats["max"] == pytest.approx(present.max(), rel=1e-6)


def test_missing_values_are_counted(pipeline_run, train_rows):
    assert pipeline_run[1]["statistics"]["numeric"]["f_missing"]["missing"] \
        == int(train_rows["f_missing"].isna().sum()) > 0


@pytest.mark.parametrize("name,top_k,min_frequency", [
    ("cat_small", None, None), ("cat_mid", 59, 2), ("cat_big", 96, None), ("int_cat", None, None)])
def test_vocabulary_matches_pandas_order(pipeline_run, train_rows, name, top_k, min_frequency):
    integer = name == "int_cat"
    counts = collections.Counter(int(v) if integer else str(v) for v in train_rows[name])
    expected = [t for t in reference.keras_order(counts)
                if min_frequency is None or counts[t] >= min_frequency][:top_k]
    from beam_pipeline.outputs.summary import read_vocabulary
    import tensorflow_transform as tft
    out = pipeline_run[0].output.dir
    entries = read_vocabulary(tft.TFTransformOutput(out).vocabulary_file_by_name(name),
                              integer=integer)
    assert [e["token"] for e in entries] == expected
    assert [e["count"] for e in entries] == [counts[t] for t in expected]
    summary = pipeline_run[1]["statistics"]["vocabularies"][name]
    assert summary["size"] == len(expected)
    assert summary["top"] == entries[:10]


def test_integer_vocabulary_matches_keras_integer_lookup_adapt(pipeline_run, train_rows):
    """Ties in count are broken numerically, descending, as Keras does (not as decimal text)."""
    import keras
    import tensorflow_transform as tft
    from beam_pipeline.outputs.summary import read_vocabulary
    counts = collections.Counter(train_rows["int_cat"])
    assert len(counts) > len(set(counts.values())), "the data must have count ties"
    layer = keras.layers.IntegerLookup()
    layer.adapt(train_rows["int_cat"].to_numpy(np.int64))
    out = pipeline_run[0].output.dir
    entries = read_vocabulary(tft.TFTransformOutput(out).vocabulary_file_by_name("int_cat"),
                              integer=True)
    assert [-1] + [e["token"] for e in entries] == [int(v) for v in layer.get_vocabulary()]


def test_text_vocabulary_matches_keras_adapt(pipeline_run, train_rows):
    import keras
    import tensorflow_transform as tft
    from beam_pipeline.outputs.summary import read_vocabulary
    layer = keras.layers.TextVectorization(max_tokens=300, output_sequence_length=12)
    layer.adapt(train_rows["text"].to_numpy(dtype=object), batch_size=256)
    out = pipeline_run[0].output.dir
    entries = read_vocabulary(tft.TFTransformOutput(out).vocabulary_file_by_name("text"))
    assert ["", "[UNK]"] + [e["token"] for e in entries] == layer.get_vocabulary()


def test_quantiles_within_sketch_error(pipeline_run, train_rows):
    quantiles = pipeline_run[1]["statistics"]["numeric"]["f_uniform"]["quantiles"]
    values = train_rows["f_uniform"].to_numpy(np.float64)
    for key, value in quantiles.items():
        exact = np.quantile(values, int(key[1:]) / 100)
        # one log-linear sketch bucket is at most 1/32 of the value wide
        assert abs(value - exact) <= abs(exact) / 32 + 1e-9, (key, value, exact)


def test_vocabulary_coverage_matches_pandas(pipeline_run, train_rows):
    vocabularies = pipeline_run[1]["statistics"]["vocabularies"]
    counts = train_rows["cat_big"].value_counts()
    kept = [e["token"] for e in vocabularies["cat_big"]["top"]]
    assert vocabularies["cat_big"]["size"] == 96
    expected = sum(sorted(counts.to_numpy(), reverse=True)[:96]) / len(train_rows)
    assert vocabularies["cat_big"]["coverage"] == pytest.approx(expected)
    assert counts[kept[0]] == vocabularies["cat_big"]["top"][0]["count"]
    assert vocabularies["cat_small"]["coverage"] == pytest.approx(1.0)


def test_text_token_statistics_match_python(pipeline_run, train_rows):
    import re
    import string
    strip = re.compile("[" + re.escape(string.punctuation) + "]")
    tokens = [len(strip.sub("", t.lower()).split()) for t in train_rows["text"]]
    text = pipeline_run[1]["statistics"]["text"]["text"]
    assert text["tokens"] == sum(tokens) and text["rows"] == len(tokens)
    vocabulary = pipeline_run[1]["statistics"]["vocabularies"]["text"]
    token_counts = collections.Counter(
        tok for t in train_rows["text"] for tok in strip.sub("", t.lower()).split())
    kept = sum(c for _, c in token_counts.most_common(298))
    assert vocabulary["coverage"] == pytest.approx(kept / sum(tokens))


def test_label_distribution_per_split(pipeline_run, csv_dir):
    frame = reference.raw_frame(csv_dir)
    is_eval = reference.is_eval(frame["id"], EVAL_FRACTION)
    labels = pipeline_run[1]["statistics"]["labels"]
    for split, rows in (("train", frame[~is_eval]), ("eval", frame[is_eval])):
        expected = {str(k): int(v) for k, v in rows["label"].value_counts().items()}
        assert labels[split] == expected
