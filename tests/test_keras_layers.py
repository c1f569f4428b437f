"""The run's state as native Keras layers (serving/keras_layers) against the transform graph.

The reference is tf.Transform's own graph, `TFTransformOutput.transform_features_layer()`,
fed the same raw rows: every eval row of the shared `pipeline_run` fixture and crafted rows
(OOV values, missing cells, NaN, empty text, unseen classes, extreme numbers). Ids must be
equal, floats within 1e-6. The model is saved as `.keras` and reloaded in a fresh process
that imports neither tensorflow_transform nor beam_pipeline.

`pipeline_run` has no rescaling, category_encoding, mask token, imputation strategy, salt,
bin_boundaries or invert, so one small in-memory tf.Transform analysis (no Beam job, no
files read) over tests/parity_data.py's rows adds a feature for each, checked the same way
on its eval rows and on test_keras_parity's crafted rows.
"""

import csv
import glob
import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests import reference
from tests.conftest import EVAL_FRACTION

MISSING_INT = -2 ** 63
ATOL = 1e-6

# Raw cells as CSV text; a key left out is a missing cell.
CRAFTED = [
    {},  # every cell missing
    {"id": "1", "f_normal": "nan", "f_uniform": "nan", "f_missing": "nan", "cat_small": "zzz",
     "cat_mid": "[UNK]", "cat_big": "never-seen", "int_cat": "-1", "text": ""},
    {"id": "-7", "f_normal": "1e30", "f_uniform": "-1e30", "f_missing": "-3.5",
     "cat_small": "c0", "cat_mid": "m4", "cat_big": "b13", "int_cat": "999999",
     "text": "[UNK] [unk] KA, lo! zzz-qqq"},
    {"id": "9223372036854775807", "f_normal": "0", "f_uniform": "100.5", "f_missing": "0",
     "cat_small": "C0", "cat_mid": "", "cat_big": "", "int_cat": "0",
     "text": "  \t ka   lo\u00a0mi “quoted” CAFÉ "},
    {"id": "3", "f_normal": "-0.0", "f_uniform": "50", "f_missing": "inf", "cat_small": "",
     "cat_mid": "m1", "cat_big": "b1", "int_cat": "-9223372036854775807",
     "text": "ka ka ka ka ka ka ka ka ka ka ka ka ka ka ka ka ka ka ka ka"},
    {"f_normal": "-inf", "f_uniform": "1e-45", "f_missing": "-inf", "int_cat": "7",
     "text": "a"},
]


# ---------------------------------------------------------------- raw rows


def read_csv_rows(csv_dir):
    """Every row of the test shards as {column: raw text}."""
    rows = []
    for path in sorted(glob.glob(os.path.join(csv_dir, "part-*"))):
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt", newline="", encoding="utf-8") as f:
            rows.extend(csv.DictReader(f))
    return rows


def to_arrays(rows, raw_spec, label):
    """Raw text rows -> {column: [batch] array} with serving_raw's missing values."""
    out = {}
    for name, spec in raw_spec.items():
        if name == label:
            continue
        cells = [r.get(name, "") for r in rows]
        if spec.dtype == tf.string:
            out[name] = np.array(cells, dtype=object)
        elif spec.dtype.is_floating:
            out[name] = np.array([np.float32(c) if c != "" else np.nan for c in cells],
                                 np.float32)
        else:
            out[name] = np.array([int(c) if c != "" else MISSING_INT for c in cells], np.int64)
    return out


def graph_outputs(tft_output, arrays, label):
    """The transform graph on dense raw arrays, through serving's own sparse conversion."""
    from beam_pipeline.serving import export  # pylint: disable=import-outside-toplevel
    layer = tft_output.transform_features_layer()
    sparse = {n: export.dense_to_sparse(tf.constant(v)) for n, v in arrays.items()}
    result = export.transform_with(layer, sparse, label, tft_output.raw_feature_spec(),
                                   tft_output.transformed_feature_spec())
    return {k: np.asarray(v) for k, v in result.items() if k != label}


def model_outputs(model, arrays):
    result = model({n: tf.constant(v) for n, v in arrays.items()})
    return {k: np.asarray(v) for k, v in result.items()}


def assert_equal_outputs(ours, graph, rows):
    assert sorted(ours) == sorted(graph)
    for name in sorted(graph):
        want, got = graph[name], ours[name]
        assert got.dtype == want.dtype, (name, got.dtype, want.dtype)
        assert got.shape == want.shape, (name, got.shape, want.shape)
        if want.dtype.kind in "iub" or want.dtype == object:
            bad = np.flatnonzero((got != want).reshape(len(rows), -1).any(axis=1))
        else:
            close = np.isclose(got, want, rtol=0, atol=ATOL, equal_nan=True)
            bad = np.flatnonzero(~close.reshape(len(rows), -1).all(axis=1))
        assert bad.size == 0, (f"{name}: {bad.size} rows differ, first {rows[bad[0]]}: "
                               f"ours {got[bad[0]]}, graph {want[bad[0]]}")


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def run(pipeline_run):
    import tensorflow_transform as tft  # pylint: disable=import-outside-toplevel
    from beam_pipeline.serving import keras_layers  # pylint: disable=import-outside-toplevel
    config, _ = pipeline_run
    out = config.output.dir
    tft_output = tft.TFTransformOutput(out)
    label = config.label.name
    model = keras_layers.keras_preprocessing_model(out)
    return config, tft_output, label, model


@pytest.fixture(scope="module")
def eval_rows(csv_dir):
    rows = read_csv_rows(csv_dir)
    ev = reference.is_eval([int(r["id"]) for r in rows], EVAL_FRACTION)
    return [r for r, e in zip(rows, ev) if e]


@pytest.fixture(scope="module")
def both(run, eval_rows):
    """{source: (rows, ours, graph)} for the eval rows and the crafted rows."""
    config, tft_output, label, model = run
    result = {}
    for source, rows in (("eval", eval_rows), ("crafted", CRAFTED)):
        arrays = to_arrays(rows, tft_output.raw_feature_spec(), label)
        result[source] = (rows, model_outputs(model, arrays),
                          graph_outputs(tft_output, arrays, label))
    return result


# Features of tests/parity_data.py (scalar columns only), one per option the pipeline_run
# features leave out, plus three of this file's own.
# (Few analyzers: each vocabulary or statistic adds Beam stages to the analysis.)
SMALL_PICK = ["id", "x_inv", "const_norm", "x_fill", "x_median", "price_rescaled",
              "const_minmax", "x_bins", "city_mask", "code_mask", "text_char_count",
              "city_hash_salt2", "city_hash_mask", "x_hash", "code_hash", "city_x_code_onehot",
              "cat_onehot"]
SMALL_EXTRA = {
    "code_bins": {"kind": "discretization", "column": "code", "bin_boundaries": [0, 10, 50]},
    "code_mean": {"kind": "passthrough", "column": "code", "impute": "mean",
                  "missing_indicator": True},
    "city_const": {"kind": "string_lookup", "column": "city", "impute": "constant",
                   "fill_value": "Zug"},
}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """(config, tft_output, None, model, eval rows) of the in-memory analysis."""
    import types  # pylint: disable=import-outside-toplevel
    import tensorflow_transform as tft  # pylint: disable=import-outside-toplevel
    import tensorflow_transform.beam as tft_beam  # pylint: disable=import-outside-toplevel
    from tensorflow_transform.tf_metadata import (  # pylint: disable=import-outside-toplevel
        dataset_metadata, metadata_io, schema_utils)
    from beam_pipeline.features import KINDS  # pylint: disable=import-outside-toplevel
    from beam_pipeline.serving import keras_layers  # pylint: disable=import-outside-toplevel
    from tests import parity_data as pdata  # pylint: disable=import-outside-toplevel

    out = str(tmp_path_factory.mktemp("keras_layers_small"))
    types_ = {c["name"]: c["type"] for c in pdata.COLUMNS if "separator" not in c}
    feats = []
    for name, options in [(k, pdata.FEATURES[k]) for k in SMALL_PICK] + list(
            SMALL_EXTRA.items()):
        options = dict(options)
        kind, column = options.pop("kind"), options.pop("column", name)
        first = (options.get("columns") or [column])[0]
        feats.append(KINDS[kind].from_options(name, column, types_[first], options))

    def cell(kind, text):
        if text == "":
            return []
        return ([np.float32(text)] if kind == "float" else [int(text)] if kind == "int"
                else [text.encode()])

    rows = pdata.generate()
    ev = reference.is_eval([int(r["id"]) for r in rows], pdata.EVAL_FRACTION)
    train = [{c: cell(t, r[c]) for c, t in types_.items()} for r, e in zip(rows, ev) if not e]
    dtypes = {"float": tf.float32, "int": tf.int64, "string": tf.string}
    meta = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(
        {c: tf.io.VarLenFeature(dtypes[t]) for c, t in types_.items()}))

    def preprocessing_fn(inputs):
        result = {}
        for feature in feats:
            result.update(feature.transform(inputs))
        return result

    with tft_beam.Context(temp_dir=os.path.join(out, "tmp")):
        transform_fn = (train, meta) | tft_beam.AnalyzeDataset(preprocessing_fn)
        _ = transform_fn | tft_beam.WriteTransformFn(out)
    metadata_io.write_metadata(meta, os.path.join(out, "metadata"))
    config = types.SimpleNamespace(features=tuple(feats), label=None, preprocessing_fn=None)
    model = keras_layers.keras_preprocessing_model(out, config)
    return config, tft.TFTransformOutput(out), None, model, [
        r for r, e in zip(rows, ev) if e]


@pytest.fixture(scope="module")
def small_both(small_run):
    from tests.test_keras_parity import CRAFTED as PARITY_CRAFTED  # pylint: disable=import-outside-toplevel
    _, tft_output, label, model, rows = small_run
    result = {}
    for source, source_rows in (("eval", rows), ("crafted", PARITY_CRAFTED)):
        arrays = to_arrays(source_rows, tft_output.raw_feature_spec(), label)
        result[source] = (source_rows, model_outputs(model, arrays),
                          graph_outputs(tft_output, arrays, label))
    return result


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("source", ["eval", "crafted"])
def test_every_option_equals_the_graph(small_both, source):
    rows, ours, graph = small_both[source]
    assert_equal_outputs(ours, graph, rows)


SMALL_LAYERS = {
    "x_inv": "Normalization", "price_rescaled": "Rescaling", "x_bins": "Discretization",
    "city_mask": "StringLookup", "code_mask": "IntegerLookup", "cat_onehot": "CategoryEncoding",
    "city_hash_salt2": "Hashing", "city_x_code_onehot": "HashedCrossing",
    "text_char_count": "TextVectorization",
}


@pytest.mark.parametrize("feature,layer", sorted(SMALL_LAYERS.items()))
def test_each_option_is_its_keras_layer(small_run, feature, layer):
    names = [type(l).__name__ for l in small_run[3].layers if l.name.startswith(f"{feature}__")]
    assert layer in names


def test_model_takes_one_input_per_raw_column(run):
    config, tft_output, label, model = run
    spec = tft_output.raw_feature_spec()
    assert sorted(model.input) == sorted(n for n in spec if n != label)
    for name, tensor in model.input.items():
        assert tensor.dtype == spec[name].dtype.name
        assert tuple(tensor.shape) == (None,)


def test_built_from_builtin_keras_layers_only(run):
    model = run[3]
    for layer in model.layers:
        assert type(layer).__module__.startswith("keras."), layer
        assert type(layer).__name__ != "Lambda"


@pytest.mark.parametrize("source", ["eval", "crafted"])
def test_every_output_equals_the_graph(both, source):
    rows, ours, graph = both[source]
    assert_equal_outputs(ours, graph, rows)


def test_eval_rows_cover_the_cases(both, eval_rows):
    """The fixture's eval rows do hold missing and OOV values, so parity covers them."""
    assert len(eval_rows) > 300
    _, _, graph = both["eval"]
    assert (graph["f_missing_missing"] == 1).any()
    assert (graph["cat_mid"] < 1).any()  # OOV (min_frequency leaves values out)


KIND_LAYERS = {
    "f_normal": "Normalization", "f_missing": "Normalization", "cat_small": "StringLookup",
    "int_cat": "IntegerLookup", "text": "TextVectorization", "text_tf_idf": "TextVectorization",
    "f_uniform_bins": "Discretization", "f_uniform_scaled": "Rescaling",
    "cat_big_hash": "Hashing", "cat_small_x_int_cat": "HashedCrossing",
}


@pytest.mark.parametrize("feature,layer", sorted(KIND_LAYERS.items()))
def test_each_kind_is_its_keras_layer(run, feature, layer):
    """The layer that replaces adapt() carries the learned state."""
    model = run[3]
    names = [type(l).__name__ for l in model.layers if l.name.startswith(f"{feature}__")]
    assert layer in names


def test_learned_state_is_the_runs(run):
    """Vocabularies are the run's files, in order; idf weights and bins are set."""
    from beam_pipeline.outputs import summary  # pylint: disable=import-outside-toplevel
    _, tft_output, _, model = run
    lookup = model.get_layer("cat_small__string_lookup")
    vocab = [e["token"] for e in summary.read_vocabulary(
        tft_output.vocabulary_file_by_name("cat_small"))]
    assert lookup.get_vocabulary() == ["[UNK]"] + vocab
    ints = model.get_layer("int_cat__integer_lookup").get_vocabulary()
    assert ints[3:] == [e["token"] for e in summary.read_vocabulary(
        tft_output.vocabulary_file_by_name("int_cat"), integer=True)]
    assert len(model.get_layer("f_uniform_bins__discretization").bin_boundaries) == 4


@pytest.mark.parametrize("which", ["pipeline_run", "small"])
def test_keras_round_trip_in_a_fresh_process(which, request, tmp_path):
    """Saved as .keras, reloaded where neither tensorflow_transform nor beam_pipeline is
    imported: the outputs are the graph's."""
    if which == "small":
        tft_output, label, model = request.getfixturevalue("small_run")[1:4]
        rows = request.getfixturevalue("small_both")["eval"][0][:150]
    else:
        tft_output, label, model = request.getfixturevalue("run")[1:]
        rows = request.getfixturevalue("both")["eval"][0][:150] + CRAFTED
    path = str(tmp_path / "preprocessing.keras")
    model.save(path)
    arrays = to_arrays(rows, tft_output.raw_feature_spec(), label)
    np.savez(tmp_path / "raw.npz", **{k: (v.astype(str) if v.dtype == object else v)
                                       for k, v in arrays.items()})
    script = f"""
import json, sys
import numpy as np
import keras, tensorflow as tf
model = keras.saving.load_model({path!r})
raw = dict(np.load({str(tmp_path / 'raw.npz')!r}))
out = model({{k: tf.constant(v.astype(object) if v.dtype.kind == 'U' else v)
              for k, v in raw.items()}})
np.savez({str(tmp_path / 'out.npz')!r}, **{{k: np.asarray(v) for k, v in out.items()}})
heavy = sorted(m for m in sys.modules if m.split('.')[0] in
               ('tensorflow_transform', 'beam_pipeline', 'apache_beam'))
print(json.dumps(heavy))
"""
    env = dict(os.environ, PYTHONPATH="")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=str(tmp_path), env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
    reloaded = dict(np.load(tmp_path / "out.npz"))
    graph = graph_outputs(tft_output, arrays, label)
    assert_equal_outputs(reloaded, graph, rows)


def test_not_expressible_raises_naming_the_feature(run):
    """A kind no built-in layer reproduces exactly raises, never returns something close."""
    from beam_pipeline import features  # pylint: disable=import-outside-toplevel
    from beam_pipeline.serving.keras_layers import NotExpressible, compose, kinds
    config, _, _, model = run
    cases = [
        features.MinMax(name="m", column="f_uniform", column_type="float", log1p=True),
        features.StringLookup(name="t", column="tags", column_type="string", separator="|"),
        features.TextVectorization(name="w", column="text", column_type="string",
                                   split="none"),
        features.Image(name="img", column="image", column_type="string"),
    ]
    for feature in cases:
        with pytest.raises(NotExpressible, match=f"feature {feature.name!r}"):
            kinds.BUILDERS[feature.KIND](model.input, feature, None,
                                         compose.Steps(compose.Namer(), feature.name))
