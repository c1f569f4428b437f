"""Keras parity: every feature kind against the Keras layer it replaces, adapted in the test.

One pipeline run over tests/parity_data.py's CSV serves every test. For each feature the
Keras layer (keras 3, adapted here on the train rows with its own `adapt()`) or numpy is
the reference, and the pipeline's result is compared two ways:
  * "eval": the written eval-split TFRecords, rows matched by the `id` passthrough;
  * "crafted": hand-written raw rows (OOV, mask, empty and missing cells) run through
    the transform graph (`TFTransformOutput.transform_features_layer()`).
Where docs/feature-kinds.md states a deliberate difference from Keras, the test checks
the documented behaviour and a comment names the Keras difference.
"""

import math

import numpy as np
import pytest
import tensorflow as tf

from tests import parity_data as pdata
from tests import reference
from tests.conftest import write_config

FEATURES = pdata.FEATURES
TOL = dict(rtol=1e-5, atol=1e-5)
MEDIAN_RANK_ERROR = 0.001  # docs: "rank error at most 0.001 of the rows"
UNCHECKED = "__unchecked_rows__"  # rows an expected() result leaves to another test
ATOL = "__atol__"  # an expected() result's own absolute tolerance

# Raw rows run through the transform graph. A key left out is an empty (missing) cell;
# `cat_id` and `price` are always given (the spec names no missing-value default for
# category_encoding and rescaling).
CRAFTED = [
    {"cat_id": "3", "price": "10.0"},  # everything else missing
    {"id": "1", "x": "nan", "const": "6.0", "vec": "1.0|2.0", "price": "0.0", "city": "N/A",
     "tags": "a|b", "code": "0", "code_list": "0|0|7", "cat_id": "7", "text": "b a c",
     "doc": "b a c"},
    {"id": "2", "x": "-50.0", "const": "4.0", "vec": "1.0|2.0|3.0|4.0", "price": "1000000.0",
     "city": "[UNK]", "tags": "c|c|d", "code": "-1", "code_list": "-1|8|3", "cat_id": "8",
     "text": "CAFÉ ÉCOLE", "doc": "a b d"},
    {"id": "3", "x": "2.5", "const": "5.0", "vec": "0.5|nan|-3.0", "price": "20.0",
     "city": "Tokyo", "tags": "", "code": "999", "code_list": "", "cat_id": "-1",
     "text": "U.S.A. e-mail [UNK]", "doc": "zzz"},
    {"id": "4", "x": "0.0", "vec": "0.1|9.0|-3.1", "price": "35.5", "city": "Zürich",
     "tags": "x y|zz|[UNK]", "code": "111", "code_list": "11|10|9", "cat_id": "0",
     "text": "foo\u00a0bar line\u2028sep “quoted” — ¿qué?"},
    {"id": "5", "x": "1.5", "price": "0.001", "city": "ÉCOLE", "tags": "a|a|a|e|f|g",
     "code": "3", "code_list": "15|-3", "cat_id": "9", "text": "the the cat zzz zzz",
     "doc": "c"},
    {"id": "6", "x": "80.0", "price": "300.0", "city": "Athens", "tags": "q r", "code": "2",
     "code_list": "1|2|3|4|5|6|7", "cat_id": "1", "text": "  tabs\tand   spaces  ",
     "doc": "e e e e e e"},
    {"id": "7", "x": "6.0", "price": "7.0", "city": "Oslo", "code": "-5", "cat_id": "5",
     "text": "Hello, World! say \"hi\" ICE snow Snow", "doc": "a"},
    {"id": "8", "x": "3.0", "price": "50.0", "city": "Zug", "code": "42", "cat_id": "2",
     "text": "[UNK]", "code_list": "-1"},
]


# ---------------------------------------------------------------- raw values, parsed


def _column(name):
    return next(c for c in pdata.COLUMNS if c["name"] == name)


def _float(cell):
    """A float cell as float32 (the CSV reader's type); empty or NaN -> NaN (missing)."""
    return np.float32(cell) if cell != "" else np.float32("nan")


def floats(rows, col):
    return np.array([_float(r.get(col, "")) for r in rows], np.float32)


def ints(rows, col, missing):
    return np.array([int(r[col]) if r.get(col, "") != "" else missing for r in rows], np.int64)


def strings(rows, col):
    """A string column; a missing cell is "" (it is never a vocabulary token)."""
    return np.array([r.get(col, "") for r in rows], dtype=object)


def lists(rows, col):
    """A multivalent column as lists of raw text values; an empty cell is no value."""
    sep = _column(col)["separator"]
    return [r.get(col, "").split(sep) if r.get(col, "") != "" else [] for r in rows]


def ragged(values, dtype):
    flat = [v for row in values for v in row]
    flat = tf.constant(flat, dtype) if flat else tf.zeros([0], dtype)
    return tf.RaggedTensor.from_row_lengths(flat, [len(row) for row in values])


def int_lists(rows, col):
    return [[int(v) for v in row] for row in lists(rows, col)]


def vectors(rows, col):
    """A fixed-length vector column: extra values dropped, absent/NaN positions NaN."""
    length = _column(col)["length"]
    out = np.full((len(rows), length), np.nan, np.float32)
    for i, row in enumerate(lists(rows, col)):
        for j, v in enumerate(row[:length]):
            out[i, j] = _float(v)
    return out


def present(values):
    return values[~np.isnan(values)]


def as_np(x):
    if isinstance(x, tf.RaggedTensor):
        x = x.to_tensor()
    return np.asarray(x)


# ---------------------------------------------------------------- Keras references


class KerasReference:
    """Keras layers adapted on the train rows (cached), and the outputs they give."""

    def __init__(self, train):
        self.train = train
        self._layers = {}

    def layer(self, name):
        if name not in self._layers:
            self._layers[name] = self._build(name, FEATURES[name])
        return self._layers[name]

    def _build(self, name, o):
        import keras  # pylint: disable=import-outside-toplevel
        layers = keras.layers
        kind, col, train = o["kind"], o.get("column"), self.train
        if kind == "normalization":
            if _column(col).get("length"):
                data = vectors(train, col)
                assert not np.isnan(data).any(), "train vectors are complete by design"
            else:
                data = present(floats(train, col)).reshape(-1, 1)  # (batch, 1), as Keras needs
            layer = layers.Normalization(axis=o.get("axis", -1), invert=o.get("invert", False))
            layer.adapt(data)
            return layer
        if kind == "string_lookup":
            layer = layers.StringLookup(**self._lookup_args(o))
            layer.adapt(self._lookup_train(col, "string"))
            return layer
        if kind == "integer_lookup":
            layer = layers.IntegerLookup(**self._lookup_args(o))
            layer.adapt(self._lookup_train(col, "int"))
            return layer
        if kind == "text_vectorization":
            args = {k: o[k] for k in ("max_tokens", "standardize", "split", "output_mode",
                                      "output_sequence_length") if k in o}
            if "ngrams" in o:
                args["ngrams"] = tuple(o["ngrams"]) if isinstance(o["ngrams"], list) \
                    else o["ngrams"]
            for key in ("standardize", "split"):
                if args.get(key) == "none":
                    args[key] = None  # Keras spells the config's "none" as None
            mode = o.get("output_mode", "int")
            if mode == "int":
                args.setdefault("output_sequence_length", 32)
            else:
                args["pad_to_max_tokens"] = True  # spec: fixed [max_tokens] width
            layer = layers.TextVectorization(**args)
            layer.adapt(strings(train, col))  # a missing text is empty, and counts as a row
            return layer
        raise KeyError(f"no adapted Keras layer for {name}")

    @staticmethod
    def _lookup_args(o):
        args = {k: o[k] for k in ("max_tokens", "num_oov_indices", "mask_token", "oov_token",
                                  "min_frequency") if k in o}
        mode = o.get("output_mode", "int")
        args["output_mode"] = mode
        if mode != "int":
            args["pad_to_max_tokens"] = True  # spec: always [max_tokens] columns
        return args

    def _lookup_train(self, col, ctype):
        if _column(col).get("separator"):
            values = lists(self.train, col)
            if ctype == "int":
                return ragged([[int(v) for v in r] for r in values], tf.int64)
            return ragged(values, tf.string)
        cells = [r[col] for r in self.train if r[col] != ""]  # missing is not a token
        if ctype == "int":
            return np.array([int(c) for c in cells], np.int64)
        return np.array(cells, dtype=object)

    # -- expected outputs ---------------------------------------------------------------

    def expected(self, name, rows):
        """{output feature name: expected array} of feature `name` on raw `rows`."""
        import keras  # pylint: disable=import-outside-toplevel
        layers = keras.layers
        o = FEATURES[name]
        kind, col = o["kind"], o.get("column", name)
        out = {}
        if kind == "passthrough":
            ctype = _column(col)["type"]
            if ctype == "float":
                values = floats(rows, col).astype(np.float64)
                missing = np.isnan(values)
                values[missing] = self.impute_value(o, col)
                out[name] = values.astype(np.float32)
            else:
                cells = [r.get(col, "") for r in rows]
                missing = np.array([c == "" for c in cells])
                fill = self.impute_value(o, col)
                out[name] = np.array([int(c) if c != "" else fill for c in cells], np.int64)
            if o.get("missing_indicator"):
                out[f"{name}_missing"] = missing.astype(np.int64)
            return out
        if kind == "normalization":
            layer = self.layer(name)
            mean = np.asarray(layer.mean).reshape(-1)
            std = np.maximum(np.sqrt(np.asarray(layer.variance, np.float64).reshape(-1)), 1e-7)
            # Both sides hold the mean in float32 (Keras's is a few ulps off the exact mean
            # too), and z = (x - mean) / std magnifies that by 1 / std: a column with mean -3
            # and std 0.1 agrees to ~1e-5, not better. Tolerance: 8 ulps of the mean / std.
            eps = 8 * np.finfo(np.float32).eps * np.abs(mean.astype(np.float64))
            out[ATOL] = 1e-5 + (eps if o.get("invert") else eps / std)
            if _column(col).get("length"):
                x = vectors(rows, col)
                # Imputation (spec default `mean`): each missing position gets its mean.
                x = np.where(np.isnan(x), np.broadcast_to(mean, x.shape), x)
                out[name] = as_np(layer(x))
            else:
                x = floats(rows, col)
                missing = np.isnan(x)  # spec: NaN is missing (Keras would propagate it)
                x = np.where(missing, mean[0], x).reshape(-1, 1)
                out[name] = as_np(layer(x)).reshape(-1)
                if o.get("missing_indicator"):
                    out[f"{name}_missing"] = missing.astype(np.int64)
            return out
        if kind == "min_max":
            x = floats(rows, col).astype(np.float64)
            missing = np.isnan(x)
            if o.get("impute") == "median":
                # The learned median is approximate: those rows are checked by rank in
                # test_impute_median_within_rank_error, not here.
                out[UNCHECKED] = missing
            else:
                x[missing] = self.impute_value(o, col)
            lo, hi = o.get("output_min", 0.0), o.get("output_max", 1.0)
            t = present(floats(self.train, col)).astype(np.float64)
            if o.get("log1p"):
                t, x = np.log1p(t), np.log1p(x)
            if t.max() == t.min():
                # Spec: a constant train column maps every value to the midpoint (Keras
                # Rescaling with scale = 1 / 0 would give inf/NaN).
                out[name] = np.full(len(rows), (lo + hi) / 2, np.float32)
            else:
                scale = (hi - lo) / (t.max() - t.min())
                offset = lo - t.min() * scale
                y = as_np(layers.Rescaling(scale, offset)(x.astype(np.float32)))
                if o.get("clip", True):  # spec default; Keras Rescaling does not clip
                    y = np.clip(y, lo, hi)
                out[name] = y
            if o.get("missing_indicator"):
                out[f"{name}_missing"] = missing.astype(np.int64)
            return out
        if kind == "rescaling":
            layer = layers.Rescaling(o["scale"], o.get("offset", 0.0))
            out[name] = as_np(layer(floats(rows, col)))
            return out
        if kind == "discretization":
            boundaries = o.get("bin_boundaries")
            if boundaries is None:
                raise KeyError("learned boundaries: see test_discretization_num_bins_*")
            # A missing cell is NaN: Keras puts NaN in the last bucket. Keras gives int32.
            layer = layers.Discretization(bin_boundaries=boundaries)
            out[name] = as_np(layer(floats(rows, col))).astype(np.int64)
            return out
        if kind in ("string_lookup", "integer_lookup"):
            layer = self.layer(name)
            mode = o.get("output_mode", "int")
            if _column(col).get("separator"):
                if kind == "integer_lookup":
                    x = ragged(int_lists(rows, col), tf.int64)
                else:
                    x = ragged(lists(rows, col), tf.string)
                y = layer(x)
                if mode == "int":
                    # Keras gives a ragged result; spec: padded with the mask id 0 / cut.
                    y = y.to_tensor(default_value=0,
                                    shape=[len(rows), o["output_sequence_length"]])
                out[name] = as_np(y)
            else:
                if kind == "integer_lookup":
                    # A missing cell is OOV: -1 is Keras's oov_token (floormod(-1, n)).
                    fill = self.impute_value(o, col) if o.get("impute") else -1
                    x = ints(rows, col, missing=fill)
                else:
                    x = strings(rows, col)
                    fill = self.impute_value(o, col) if o.get("impute") else ""
                    x = np.array([v if v != "" else fill for v in x], dtype=object)
                out[name] = as_np(layer(x))
            if mode != "int":
                out[name] = out[name].astype(np.float32)  # Keras: int64 for lookups
            return out
        if kind == "text_vectorization":
            out[name] = as_np(self.layer(name)(strings(rows, col)))
            if o.get("output_mode", "int") != "int":
                out[name] = out[name].astype(np.float32)
            return out
        if kind == "hashing":
            args = {"num_bins": o["num_bins"], "output_mode": o.get("output_mode", "int")}
            if "salt" in o:
                args["salt"] = tuple(o["salt"]) if isinstance(o["salt"], list) else o["salt"]
            if "mask_value" in o:
                args["mask_value"] = o["mask_value"]
            layer = layers.Hashing(**args)
            ctype = _column(col)["type"]
            if _column(col).get("separator"):
                x = ragged(lists(rows, col), tf.string) if ctype == "string" else \
                    ragged(int_lists(rows, col), tf.int64)
            elif ctype == "string":
                x = strings(rows, col)  # missing hashes as ""
            elif ctype == "int":
                x = ints(rows, col, missing=0)  # missing hashes as 0
            else:
                # Keras truncates floats to int64; missing (and NaN) hash as 0 by the spec
                # (Keras would cast NaN to an undefined int).
                x = np.nan_to_num(floats(rows, col), nan=0.0)
            y = as_np(layer(x))
            out[name] = y if args["output_mode"] == "int" else y.astype(np.float32)
            return out
        if kind == "hashed_crossing":
            inputs = []
            for c in o["columns"]:
                if _column(c)["type"] == "string":
                    inputs.append(tf.constant(strings(rows, c).astype(str)))
                else:
                    inputs.append(tf.constant(ints(rows, c, missing=0)))
            mode = o.get("output_mode", "int")
            layer = layers.HashedCrossing(num_bins=o["num_bins"], output_mode=mode)
            y = as_np(layer(tuple(inputs)))
            out[name] = y.reshape(-1).astype(np.int64) if mode == "int" else y.astype(np.float32)
            return out
        if kind == "category_encoding":
            n, mode = o["num_tokens"], o["output_mode"]
            layer = layers.CategoryEncoding(num_tokens=n, output_mode=mode)
            if _column(col).get("separator"):
                # Spec: ids outside [0, n) are dropped. Keras drops ids >= n and raises on
                # negative ones, so they are filtered before Keras sees them.
                values = [[v for v in row if 0 <= v < n] for row in int_lists(rows, col)]
                out[name] = as_np(layer(ragged(values, tf.int64))).astype(np.float32)
            else:
                ids = ints(rows, col, missing=-1)
                valid = (ids >= 0) & (ids < n)
                y = as_np(layer(np.where(valid, ids, 0)))
                out[name] = np.where(valid[:, None], y, 0.0).astype(np.float32)
            return out
        raise KeyError(kind)

    def impute_value(self, o, col):
        """The spec's imputation value, computed by numpy from the train rows."""
        strategy = o.get("impute")
        kind = o["kind"]
        if strategy is None:
            strategy = {"passthrough": "constant", "min_max": "mean",
                        "normalization": "mean"}.get(kind)
        ctype = _column(col)["type"]
        if strategy == "constant":
            return o.get("fill_value", 0)
        cells = [r[col] for r in self.train if r[col] != ""]
        if strategy == "most_frequent":
            # first vocabulary entry: count descending, ties by largest value / bytes.
            from collections import Counter  # pylint: disable=import-outside-toplevel
            counts = Counter(int(c) if ctype == "int" else c for c in cells)
            if o["kind"] in ("string_lookup", "integer_lookup"):
                # the oov_token and the mask are never counted into the vocabulary
                counts.pop(o.get("oov_token", "[UNK]" if ctype == "string" else -1), None)
                counts.pop(o.get("mask_token"), None)
            return reference.keras_order(counts)[0]
        values = present(floats(self.train, col)).astype(np.float64)
        if strategy == "mean":
            return values.mean()
        raise KeyError(strategy)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def parity_run(tmp_path_factory):
    """The CSV, and one in-process pipeline run over it."""
    from beam_pipeline.job import preprocess  # pylint: disable=import-outside-toplevel
    from beam_pipeline.config import load_config  # pylint: disable=import-outside-toplevel

    root = tmp_path_factory.mktemp("parity")
    csv_path = str(root / "data" / "parity.csv")
    pdata.write_csv(csv_path)
    out = str(root / "out")
    path = write_config(root / "config.yaml", pdata.make_config(csv_path, out))
    preprocess.run(load_config(path), preprocess.pipeline_options([]))
    return csv_path, out


@pytest.fixture(scope="module")
def rows(parity_run):
    all_rows = pdata.read_rows(parity_run[0])
    ids = np.array([int(r["id"]) for r in all_rows])
    ev = reference.is_eval(ids, pdata.EVAL_FRACTION)
    return {"all": all_rows,
            "train": [r for r, e in zip(all_rows, ev) if not e],
            "eval": [r for r, e in zip(all_rows, ev) if e]}


@pytest.fixture(scope="module")
def keras_ref(rows):
    return KerasReference(rows["train"])


@pytest.fixture(scope="module")
def tft_output(parity_run):
    import tensorflow_transform as tft  # pylint: disable=import-outside-toplevel
    return tft.TFTransformOutput(parity_run[1])


def raw_sparse(tft_output, raw_rows):
    """Raw rows -> {column: [batch, 1] VarLen SparseTensor}, as serving builds them:
    an empty cell is no entry, a multivalent column is its delimited text."""
    spec = tft_output.raw_feature_spec()
    batch = {}
    for name, feature in spec.items():
        idx, values = [], []
        for i, r in enumerate(raw_rows):
            cell = r.get(name, "")
            if cell == "":
                continue
            idx.append([i, 0])
            if feature.dtype == tf.string:
                values.append(cell)
            elif feature.dtype.is_floating:
                values.append(float(cell))
            else:
                values.append(int(cell))
        batch[name] = tf.SparseTensor(
            indices=tf.constant(idx, tf.int64, shape=[len(idx), 2]),
            values=tf.constant(values, feature.dtype, shape=[len(values)]),
            dense_shape=[len(raw_rows), 1])
    return batch


def run_graph(tft_output, raw_rows, layer=None):
    layer = layer or tft_output.transform_features_layer()
    result = layer(raw_sparse(tft_output, raw_rows))
    return {k: as_np(v) for k, v in result.items()}


@pytest.fixture(scope="module")
def transform_layer(tft_output):
    return tft_output.transform_features_layer()


@pytest.fixture(scope="module")
def ours(parity_run, rows, tft_output, transform_layer):
    """{source: (raw rows, {output: array})} for the eval TFRecords and crafted rows."""
    data = reference.read_transformed(parity_run[1], "eval")
    by_id = {int(r["id"]): r for r in rows["all"]}
    eval_rows = [by_id[int(i)] for i in data["id"]]
    assert len(eval_rows) == len(rows["eval"])
    return {"eval": (eval_rows, data),
            "crafted": (CRAFTED, run_graph(tft_output, CRAFTED, transform_layer))}


def vocabulary(tft_output, name, integer=False):
    from beam_pipeline.outputs.summary import read_vocabulary  # pylint: disable=import-outside-toplevel
    return read_vocabulary(tft_output.vocabulary_file_by_name(name), integer=integer)


def tokens(tft_output, name, integer=False):
    return [e["token"] for e in vocabulary(tft_output, name, integer)]


def _norm_tokens(vocab):
    return [v.decode() if isinstance(v, bytes) else (int(v) if isinstance(v, (int, np.integer))
                                                      else str(v)) for v in vocab]


def keras_learned_vocabulary(name, layer):
    """Keras's get_vocabulary() without its leading mask/OOV entries."""
    o = FEATURES[name]
    vocab = _norm_tokens(layer.get_vocabulary())
    mode = o.get("output_mode", "int")
    if o["kind"] == "text_vectorization":
        special = 2 if mode == "int" else 1
    else:
        special = o.get("num_oov_indices", 1) + (
            1 if "mask_token" in o and mode == "int" else 0)
    return vocab[:special], vocab[special:]


def assert_same(name, got, expected, what, atol=TOL["atol"]):
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != Keras {expected.shape}"
    if np.issubdtype(expected.dtype, np.floating):
        tol = np.asarray(atol, np.float64)
        if got.ndim == 1 and tol.size == 1:
            tol = tol.reshape(())
        err = np.abs(got.astype(np.float64) - expected)
        bad = ~(err <= tol + TOL["rtol"] * np.abs(expected))
        bad &= ~(np.isnan(got) & np.isnan(expected))
        assert not bad.any(), (f"{what}: {bad.sum()} values differ beyond {TOL}, first at "
                               f"{np.argwhere(bad)[:3].tolist()}: got {got[bad][:3].tolist()}, "
                               f"expected {expected[bad][:3].tolist()}")
    else:
        bad = np.nonzero((got != expected).reshape(len(got), -1).any(axis=1))[0]
        assert not len(bad), (f"{what}: {len(bad)} rows differ, first rows "
                              f"{bad[:5].tolist()}: got {got[bad[:3]].tolist()}, "
                              f"expected {expected[bad[:3]].tolist()}")


# ---------------------------------------------------------------- the tests

OUTPUT_DTYPES = {"normalization": np.float32, "min_max": np.float32, "rescaling": np.float32,
                 "discretization": np.int64, "category_encoding": np.float32}

COMPARED = [n for n, o in FEATURES.items()
            if n != "id" and not (o["kind"] == "discretization" and "num_bins" in o)]


@pytest.mark.parametrize("source", ["eval", "crafted"])
@pytest.mark.parametrize("name", COMPARED)
def test_outputs_equal_keras(keras_ref, ours, name, source):
    raw_rows, data = ours[source]
    expected = keras_ref.expected(name, raw_rows)
    checked = ~expected.pop(UNCHECKED, np.zeros(len(raw_rows), bool))
    atol = expected.pop(ATOL, TOL["atol"])
    kind, mode = FEATURES[name]["kind"], FEATURES[name].get("output_mode", "int")
    for out_name, exp in expected.items():
        assert out_name in data, f"{out_name}: not among the outputs {sorted(data)}"
        got = data[out_name]
        if out_name.endswith("_missing"):
            want_dtype = np.int64
        elif kind == "passthrough":
            want_dtype = exp.dtype
        elif kind in OUTPUT_DTYPES:
            want_dtype = OUTPUT_DTYPES[kind]
        else:
            want_dtype = np.int64 if mode == "int" else np.float32
        assert got.dtype == want_dtype, f"{out_name}: dtype {got.dtype}, spec {want_dtype}"
        assert_same(name, got[checked], exp[checked],
                    f"{out_name} ({source} rows) vs Keras/numpy", atol=atol)


VOCABULARY_FEATURES = [n for n, o in FEATURES.items()
                       if o["kind"] in ("string_lookup", "integer_lookup", "text_vectorization")]


@pytest.mark.parametrize("name", VOCABULARY_FEATURES)
def test_vocabulary_equals_keras(keras_ref, tft_output, name):
    o = FEATURES[name]
    layer = keras_ref.layer(name)
    special, learned = keras_learned_vocabulary(name, layer)
    got = tokens(tft_output, name, integer=o["kind"] == "integer_lookup")
    if got != learned:
        first = next((i for i, (a, b) in enumerate(zip(got, learned)) if a != b),
                     min(len(got), len(learned)))
        pytest.fail(f"{name}: vocabulary differs from Keras at position {first}: ours "
                    f"{got[first:first + 6]} (size {len(got)}), Keras "
                    f"{learned[first:first + 6]} (size {len(learned)})")
    # The special entries are Keras's layout, which the spec adopts.
    if o["kind"] != "text_vectorization":
        assert special.count("[UNK]") + special.count(-1) == o.get("num_oov_indices", 1)


def test_vocabulary_counts_are_keras_counts(tft_output, rows):
    """The stored counts are Keras's: occurrences, the literal [UNK] and -1 never counted."""
    from collections import Counter  # pylint: disable=import-outside-toplevel
    train = rows["train"]
    city = Counter(r["city"] for r in train if r["city"] not in ("", "[UNK]"))
    got = {e["token"]: e["count"] for e in vocabulary(tft_output, "city_int")}
    assert got == dict(city)
    tags = Counter(t for r in lists(train, "tags") for t in r if t != "[UNK]")
    got = {e["token"]: e["count"] for e in vocabulary(tft_output, "tags_count")}
    assert got == dict(tags)  # max_tokens 12 keeps all 8 tags
    code = Counter(int(r["code"]) for r in train if r["code"] not in ("", "-1"))
    got = {e["token"]: e["count"] for e in vocabulary(tft_output, "code_int", integer=True)}
    assert got == dict(code)


def test_literal_test_vectors(tft_output, keras_ref):
    """keras-parity.md's vectors with their stated expected values."""
    # `["b a c", "a b d"]` -> ['', '[UNK]', 'b', 'a', 'd', 'c'] (the doc column has only
    # these two train values).
    assert ["", "[UNK]"] + tokens(tft_output, "doc_tie") == pdata.DOC_TIE_VOCABULARY
    assert _norm_tokens(keras_ref.layer("doc_tie").get_vocabulary()) == \
        pdata.DOC_TIE_VOCABULARY
    # IntegerLookup tie {3, 2, 111, 10, 9} (equal counts by design): numeric descending.
    code = tokens(tft_output, "code_int", integer=True)
    assert [v for v in code if v in pdata.CODE_TIE] == [111, 10, 9, 3, 2]
    # ASCII-only lower-casing: "CAFÉ ÉCOLE" -> "cafÉ", "École" (standardize: lower).
    lower = tokens(tft_output, "text_ngrams")
    assert "cafÉ" in lower and "École" in lower and "CAFÉ" not in lower
    assert "hello," in lower and "[unk]" in lower  # lower keeps punctuation
    # Punctuation deleted, not replaced by a space: U.S.A. -> USA, e-mail -> email, a_b,
    # 3.14 (standardize: strip_punctuation keeps the case).
    strip = tokens(tft_output, "text_strip")
    for token in ("USA", "email", "ab", "314", "Hello", "UNK"):
        assert token in strip, token
    # Unicode punctuation kept; NBSP and U+2028 do not split.
    assert "“quoted”" in strip and "—" in strip and "¿qué" in strip
    assert "foo\u00a0bar" in strip and "line\u2028sep" in strip
    # The literal "[UNK]" is never counted (standardize: none keeps it literal).
    none = tokens(tft_output, "text_none")
    assert "[UNK]" not in none and "[unk]" in none and "Hello," in none
    default = lower
    # ngrams [1, 3] means widths 1 and 3, never 2.
    assert any(len(t.split(" ")) == 3 for t in default)
    assert not any(len(t.split(" ")) == 2 for t in default)


def test_top_k_cut_inside_count_tie(tft_output, rows):
    """max_tokens 7 keeps 6 tokens: the cut falls inside the Oslo/Berlin/Athens tie."""
    got = tokens(tft_output, "city_onehot")
    assert len(got) == pdata.CITY_ONE_HOT_MAX_TOKENS - 1
    counts = {e["token"]: e["count"] for e in vocabulary(tft_output, "city_int")}
    tie = counts[got[-1]]
    tied = [t for t, c in counts.items() if c == tie]
    assert len([t for t in tied if t in got]) < len(tied), "the cut must split a tie"
    assert got[-len([t for t in tied if t in got]):] == sorted(
        tied, key=lambda t: t.encode(), reverse=True)[:len([t for t in tied if t in got])]


def test_tf_idf_weights_equal_keras(keras_ref, ours):
    """idf per column from our outputs (tf_idf / count) = Keras's idf weights."""
    raw_rows, data = ours["eval"]
    layer = keras_ref.layer("text_tfidf")
    idf = np.asarray(layer._lookup_layer.idf_weights)  # pylint: disable=protected-access
    # Counts from Keras's own count mode with the same vocabulary (asserted equal to ours
    # by test_vocabulary_equals_keras[text_tfidf]).
    import keras  # pylint: disable=import-outside-toplevel
    counter = keras.layers.TextVectorization(
        max_tokens=FEATURES["text_tfidf"]["max_tokens"], output_mode="count",
        pad_to_max_tokens=True, vocabulary=layer.get_vocabulary()[1:])
    tfidf = data["text_tfidf"]
    count = as_np(counter(strings(raw_rows, "text")))
    seen = 0
    for j in range(tfidf.shape[1]):
        hit = count[:, j] > 0
        if hit.any():
            seen += 1
            np.testing.assert_allclose(tfidf[hit, j] / count[hit, j], idf[j], err_msg=f"col {j}",
                                       **TOL)
    assert seen >= 10
    # The OOV column's idf is the mean of the learned idfs (Keras, index_lookup.py:752).
    vocab_size = len(layer.get_vocabulary())
    assert math.isclose(idf[0], idf[1:vocab_size].mean(), rel_tol=1e-5)
    train_rows = keras_ref.train
    n_docs = len(train_rows)
    # The formula, by numpy: idf = ln(1 + N / (1 + df)) for a learned token.
    text = [set(t for t in
                tf.strings.split(tf.strings.regex_replace(tf.strings.lower(s),
                                                          r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']',
                                                          "")).numpy().tolist())
            for s in strings(train_rows, "text")]
    vocab = layer.get_vocabulary()
    for j in range(1, vocab_size):
        token = vocab[j].encode() if isinstance(vocab[j], str) else vocab[j]
        df = sum(token in d for d in text)
        assert math.isclose(idf[j], math.log(1 + n_docs / (1 + df)), rel_tol=1e-5), vocab[j]


@pytest.mark.parametrize("name", ["x_norm", "x_inv", "const_norm", "vec_norm", "vec_norm_all"])
def test_normalization_statistics_equal_keras(keras_ref, tft_output, transform_layer, name):
    """Mean and variance recovered from the graph's outputs at 0 and 1 = Keras's, 1e-5."""
    o = FEATURES[name]
    col = o["column"]
    layer = keras_ref.layer(name)
    k_mean = np.asarray(layer.mean, np.float64).reshape(-1)
    k_var = np.asarray(layer.variance, np.float64).reshape(-1)
    length = _column(col).get("length") or 1
    probe = [{"cat_id": "0", "price": "1.0",
              col: "|".join([str(v)] * length)} for v in (0.0, 1.0)]
    y = run_graph(tft_output, probe, transform_layer)[name].astype(np.float64).reshape(2, -1)
    if o.get("invert"):
        mean, std = y[0], y[1] - y[0]  # mean + x * std
    else:
        std = 1.0 / (y[1] - y[0])  # (x - mean) / std
        mean = -y[0] * std
    if col == "const":
        # var == 0: Keras divides by 1e-7 (tft.scale_to_z_score would not).
        assert k_var[0] == 0
        np.testing.assert_allclose(std, 1e-7, rtol=1e-3)
        np.testing.assert_allclose(mean, k_mean, rtol=1e-5)
        return
    np.testing.assert_allclose(mean, np.broadcast_to(k_mean, mean.shape), **TOL)
    np.testing.assert_allclose(std ** 2, np.broadcast_to(k_var, std.shape), **TOL)
    # And Keras's statistics are numpy's population mean/variance of the present values.
    data = vectors(keras_ref.train, col) if length > 1 else present(floats(keras_ref.train, col))
    axis = 0 if (length > 1 and o.get("axis", -1) is not None) else None
    np.testing.assert_allclose(k_mean, np.mean(data.astype(np.float64), axis=axis).reshape(-1),
                               **TOL)
    np.testing.assert_allclose(k_var, np.var(data.astype(np.float64), axis=axis).reshape(-1),
                               rtol=1e-4)


def test_impute_mean_most_frequent_constant(keras_ref, ours):
    """Imputed values by numpy: the mean, the most frequent value, the constant."""
    raw_rows, data = ours["eval"]
    x = floats(raw_rows, "x")
    missing = np.isnan(x)
    assert missing.sum() >= 5, "the eval split needs missing x cells"
    train_x = present(floats(keras_ref.train, "x")).astype(np.float64)
    np.testing.assert_allclose(data["x_mean"][missing], train_x.mean(), **TOL)
    np.testing.assert_array_equal(data["x_fill"][missing], np.float32(-1.5))
    np.testing.assert_array_equal(data["x_fill_missing"], missing.astype(np.int64))
    np.testing.assert_array_equal(data["x_norm_missing"], missing.astype(np.int64))
    np.testing.assert_array_equal(data["x_median_missing"], missing.astype(np.int64))
    np.testing.assert_allclose(data["x_norm"][missing], 0.0, atol=1e-6)  # mean -> z = 0
    # most_frequent: the first vocabulary entry (Keras order), here on the lookups.
    from collections import Counter  # pylint: disable=import-outside-toplevel
    code_missing = np.array([r["code"] == "" for r in raw_rows])
    assert code_missing.any()
    counts = Counter(int(r["code"]) for r in keras_ref.train if r["code"] not in ("", "-1", "0"))
    top = max(counts.values())
    mode = max(v for v, c in counts.items() if c == top)  # ties: the largest value
    mode_id = as_np(keras_ref.layer("code_mask")(np.array([mode], np.int64)))[0]
    np.testing.assert_array_equal(data["code_mask"][code_missing], mode_id)
    city_missing = np.array([r["city"] == "" for r in raw_rows])
    assert city_missing.any()
    counts = Counter(r["city"] for r in keras_ref.train if r["city"] not in ("", "[UNK]", "N/A"))
    mode = reference.keras_order(counts)[0]
    mode_id = as_np(keras_ref.layer("city_mask")(np.array([mode], dtype=object)))[0]
    assert mode_id >= 2  # a vocabulary id, not the mask (0) or OOV (1)
    np.testing.assert_array_equal(data["city_mask"][city_missing], mode_id)


@pytest.mark.parametrize("source", ["eval", "crafted"])
def test_impute_median_within_rank_error(keras_ref, ours, source):
    """Missing x -> the learned median: within 0.001 * rows ranks of the exact median."""
    raw_rows, data = ours[source]
    x = floats(raw_rows, "x")
    missing = np.isnan(x)
    assert missing.any()
    train_x = np.sort(present(floats(keras_ref.train, "x")).astype(np.float64))
    lo, hi = train_x.min(), train_x.max()
    # min_max output back to x (clip cannot bite: the median is inside the range).
    values = data["x_median"][missing].astype(np.float64) * (hi - lo) + lo
    assert np.ptp(values) < 1e-4 * (hi - lo), "every missing row gets the same median"
    m = values[0]
    slack = 1e-5 * (hi - lo)
    below = np.searchsorted(train_x, m - slack, side="left")
    upto = np.searchsorted(train_x, m + slack, side="right")
    n = len(train_x)
    target = 0.5 * n
    err = MEDIAN_RANK_ERROR * n + 1  # +1: order statistic convention
    assert below - err <= target <= upto + err, (
        f"median {m}: ranks [{below}, {upto}] of {n}, exact median {np.median(train_x)}")


# ---------------------------------------------------------------- discretization, learned


def learned_boundaries(bucket_of, values):
    """Exact float32 boundaries of a bucketing function: bisection between the sorted
    float32 values where the bucket changes (bucket i holds b[i-1] <= x < b[i])."""
    v = np.unique(values.astype(np.float32))
    b = bucket_of(v)
    assert (np.diff(b) >= 0).all(), "buckets must be monotone in x"
    out = []
    for i in range(1, int(b.max()) + 1):
        hi_i = int(np.argmax(b >= i))
        lo, hi = v[hi_i - 1], v[hi_i]  # bucket(lo) < i <= bucket(hi)
        lo_bits = lo.view(np.int32).astype(np.int64)
        hi_bits = hi.view(np.int32).astype(np.int64)
        assert lo > 0, "bisection on bit patterns needs positive values"
        while hi_bits - lo_bits > 1:
            mid = (lo_bits + hi_bits) // 2
            probe = np.array([mid], np.int32).view(np.float32)
            if bucket_of(probe)[0] >= i:
                hi_bits = mid
            else:
                lo_bits = mid
        out.append(np.array([hi_bits], np.int32).view(np.float32)[0])
    return np.array(out, np.float32)


def graph_buckets(tft_output, layer, name, column):
    def bucket_of(values):
        probe = [{"cat_id": "0", "price": "1.0", column: repr(float(v))} for v in values]
        return run_graph(tft_output, probe, layer)[name]
    return bucket_of


@pytest.fixture(scope="module")
def price_boundaries(tft_output, transform_layer, keras_ref):
    train = present(floats(keras_ref.train, "price"))
    return learned_boundaries(graph_buckets(tft_output, transform_layer, "price_bins", "price"),
                              train)


def test_discretization_num_bins_within_rank_error(price_boundaries, keras_ref):
    o = FEATURES["price_bins"]
    n_bins, eps = o["num_bins"], o.get("epsilon", 0.01)
    train = np.sort(present(floats(keras_ref.train, "price")).astype(np.float64))
    n = len(train)
    assert len(price_boundaries) == n_bins - 1
    for i, b in enumerate(price_boundaries.astype(np.float64), start=1):
        q = i / n_bins
        below = np.searchsorted(train, b, side="left")
        upto = np.searchsorted(train, b, side="right")
        exact = np.quantile(train, q)
        assert below - eps * n - 1 <= q * n <= upto + eps * n + 1, (
            f"boundary {i} = {b}: ranks [{below}, {upto}] of {n}; numpy's quantile {q} = "
            f"{exact}, allowed {eps * n:.1f} ranks")
    # They are Keras's own adapt() on the one array of train values (no batching).
    import keras  # pylint: disable=import-outside-toplevel
    layer = keras.layers.Discretization(num_bins=n_bins, epsilon=eps)
    layer.adapt(train.astype(np.float32))
    np.testing.assert_array_equal(price_boundaries, np.array(layer.bin_boundaries, np.float32))


@pytest.mark.parametrize("source", ["eval", "crafted"])
def test_discretization_num_bins_outputs_equal_keras(price_boundaries, ours, source):
    import keras  # pylint: disable=import-outside-toplevel
    raw_rows, data = ours[source]
    x = floats(raw_rows, "price")
    layer = keras.layers.Discretization(bin_boundaries=price_boundaries.tolist())
    expected = as_np(layer(x)).astype(np.int64)
    assert data["price_bins"].dtype == np.int64  # Keras: int32
    assert_same("price_bins", data["price_bins"], expected, f"price_bins ({source})")


def test_discretization_does_not_depend_on_batching(tmp_path):
    """tft_beam.AnalyzeDataset over the same 20,000 values, batches of 100 and of 5,000:
    identical boundaries, Keras's adapt() of the one array (adapt over batches would
    differ, keras-parity.md §1.4)."""
    import apache_beam as beam  # pylint: disable=import-outside-toplevel
    import tensorflow_transform as tft  # pylint: disable=import-outside-toplevel
    import tensorflow_transform.beam as tft_beam  # pylint: disable=import-outside-toplevel
    from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils  # noqa
    from beam_pipeline.features import KINDS  # pylint: disable=import-outside-toplevel

    feature = KINDS["discretization"].from_options("price_bins", "price", "float",
                                                   {"num_bins": 4})
    rng = np.random.RandomState(3)
    values = rng.lognormal(3.0, 1.0, 20_000).astype(np.float32)
    instances = [{"price": np.array([v], np.float32)} for v in values]
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(
        {"price": tf.io.VarLenFeature(tf.float32)}))

    def preprocessing_fn(inputs):
        return feature.transform(inputs)

    results = []
    for batch_size in (100, 5000):
        out = str(tmp_path / f"b{batch_size}")
        with beam.Pipeline() as p, tft_beam.Context(temp_dir=str(tmp_path / "tmp"),
                                                    desired_batch_size=batch_size):
            data = p | beam.Create(instances, reshuffle=False)
            transform_fn = (data, metadata) | tft_beam.AnalyzeDataset(preprocessing_fn)
            _ = transform_fn | tft_beam.WriteTransformFn(out)
        output = tft.TFTransformOutput(out)
        layer = output.transform_features_layer()

        def bucket_of(v, layer=layer):
            n = len(v)
            sparse = tf.SparseTensor(tf.constant([[i, 0] for i in range(n)], tf.int64),
                                     tf.constant(v, tf.float32), [n, 1])
            return as_np(layer({"price": sparse})["price_bins"])

        results.append(learned_boundaries(bucket_of, values))
    assert len(results[0]) == 3
    np.testing.assert_array_equal(results[0], results[1])
    import keras  # pylint: disable=import-outside-toplevel
    layer = keras.layers.Discretization(num_bins=4)
    layer.adapt(values)
    np.testing.assert_array_equal(results[0], np.array(layer.bin_boundaries, np.float32))
    # And both are the quantiles within epsilon * rows ranks.
    sorted_v = np.sort(values.astype(np.float64))
    for i, b in enumerate(results[0], start=1):
        below = np.searchsorted(sorted_v, b, side="left")
        assert abs(below - i / 4 * len(values)) <= 0.01 * len(values) + 1


def test_every_feature_is_compared():
    """Guards the suite: each feature of the config has a reference here."""
    covered = set(COMPARED) | {"id", "price_bins"}
    assert covered == set(FEATURES)
    kinds = {o["kind"] for o in FEATURES.values()}
    assert kinds == {"passthrough", "normalization", "min_max", "rescaling", "discretization",
                     "string_lookup", "integer_lookup", "text_vectorization", "hashing",
                     "hashed_crossing", "category_encoding"}


def test_eval_rows_cover_held_out_cases(ours):
    """The eval split really holds OOV, mask and missing inputs."""
    raw_rows, _ = ours["eval"]
    city = strings(raw_rows, "city")
    for value in ("", "N/A", "[UNK]", "Tokyo"):
        assert (city == value).any(), value
    code = [r["code"] for r in raw_rows]
    for value in ("", "0", "-1", "999"):
        assert value in code, value
    assert any(r["x"] in ("nan", "NaN") for r in raw_rows)
    assert any(r["x"] == "" for r in raw_rows)
    assert any(r["tags"] == "" for r in raw_rows)
    assert any(r["text"] == "" for r in raw_rows)
    assert any(len(v) != 3 for v in lists(raw_rows, "vec"))
