"""Messy shards on the default path: what a README reader's config makes of real-looking data.

The shards (tests/messy_data.py) hold empty labels, empty and all-OOV text, Unicode,
quoted line breaks, bare CRs, NaN/inf and empty cells, int64 overflows, a CRLF shard with a
BOM, a gzip shard, a shard with reordered and extra header columns and a 3 MB field. Every
expectation here comes from an independent reference: Python's csv module over the files
(`messy.read_reference`), pandas/numpy over its rows, Keras layers for the lookups.
Each run is checked twice: without a `split` section (the default, the whole row hashed)
and with `split: {key: id}`.
"""

import collections
import glob
import json
import os
import re
import shutil
import string

import numpy as np
import pandas as pd
import pytest

from tests import messy_data as messy
from tests import reference
from tests.conftest import COLUMNS, MESSY_FEATURES, run_messy

SPLITS = ("train", "eval")
RUNS = ("messy_run", "messy_keyed_run")
EVAL_FRACTION = 0.2  # the documented default


# Reading a run -------------------------------------------------------------------------------

def read_split(out, split):
    """The split's transformed columns; a split without files has no rows."""
    if not glob.glob(os.path.join(out, "data", split, "part-*.tfrecord.gz")):
        return {}
    return reference.read_transformed(out, split)


def read_rejected(out):
    records = []
    for path in sorted(glob.glob(os.path.join(out, "rejected", "*.jsonl"))):
        with open(path, encoding="utf-8") as f:
            records += [json.loads(line) for line in f if line.strip()]
    return records


class Run:
    """One finished run: config, summary, written columns per split, rejected records."""

    def __init__(self, name, config, summary):
        self.name, self.config, self.summary = name, config, summary
        self.out = config.output.dir
        self.written = {s: read_split(self.out, s) for s in SPLITS}
        self.rejected = read_rejected(self.out)

    def ids(self, split):
        columns = self.written[split]
        return [int(i) for i in columns["id"]] if columns else []

    def split_of(self):
        """{id: split} of every written row (ids written twice are caught elsewhere)."""
        return {i: s for s in SPLITS for i in self.ids(s)}

    def vocabulary(self, name, integer=False):
        import tensorflow_transform as tft
        from beam_pipeline.outputs.summary import read_vocabulary
        path = tft.TFTransformOutput(self.out).vocabulary_file_by_name(name)
        return read_vocabulary(path, integer=integer)


@pytest.fixture(scope="module", params=RUNS)
def run(request):
    config, summary = request.getfixturevalue(request.param)
    return Run(request.param, config, summary)


@pytest.fixture(scope="module")
def expected(messy_csv_dir):
    """The reference outcome of every record, from Python's csv module."""
    return messy.read_reference(messy_csv_dir)


def _key(values):
    """The written id of a row: an empty id is passed through as 0."""
    return 0 if values["id"] is None else values["id"]


@pytest.fixture(scope="module")
def kept(expected):
    """{written id: reference values} of every row that must be kept."""
    rows = {}
    for outcome in expected:
        if outcome.reason is None:
            assert _key(outcome.values) not in rows, "ids must identify kept rows"
            rows[_key(outcome.values)] = outcome.values
    return rows


def _frame(kept, ids):
    """The reference rows of `ids`, in that order, as a DataFrame."""
    return pd.DataFrame([kept[i] for i in ids], columns=[c["name"] for c in COLUMNS],
                        dtype=object)


def _floats(series):
    return np.array([np.nan if v is None else v for v in series], np.float64)


# The fixture itself -------------------------------------------------------------------------

def test_generator_description_equals_the_csv_module_reading(messy_data, expected):
    described = [(r.file, r.line, r.values, r.reason) for r in messy_data.records]
    read = [(o.file, o.line, o.values, o.reason) for o in expected]
    assert sorted(read, key=lambda t: t[:2]) == sorted(described, key=lambda t: t[:2])


def test_fixture_holds_every_messy_case(messy_data):
    counts = messy_data.cases()
    assert set(counts) == set(messy.CASES) | {"clean", "big_field"}
    assert 1500 <= len(messy_data.records) <= 3000
    shards = {r.file for r in messy_data.records}
    assert {s.name for s in messy.DEFAULT_SHARDS} | {messy.BIG_SHARD} == shards
    spelled = {(r.case, c, r.cells[c]) for r in messy_data.records for c in messy.FLOATS}
    for column in messy.FLOATS:
        for spelling in messy.MISSING_FLOAT_SPELLINGS:
            assert ("missing_float", column, spelling) in spelled
    big = [r for r in messy_data.records if r.case == "big_field"]
    assert len(big) == 1 and big[0].nbytes >= 3 << 20
    folder = messy_data.folder
    with open(os.path.join(folder, "part-00001-crlf.csv"), "rb") as f:
        crlf = f.read()
    assert crlf.startswith(b"\xef\xbb\xbf") and crlf.count(b"\r\n") > 400
    with open(os.path.join(folder, "part-00000-plain.csv"), "rb") as f:
        plain = f.read()
    assert b"\n\n" in plain and re.search(rb"[a-z]\r[a-z]", plain)  # blank lines, bare CRs
    with open(os.path.join(folder, "part-00003-reordered.csv"), "rb") as f:
        header = f.readline().decode().strip().split(",")
    assert sorted(header) == sorted(messy.NAMES + messy.EXTRA_COLUMNS)
    assert header[:len(messy.NAMES)] != messy.NAMES


# Counts and rejects -------------------------------------------------------------------------

def test_counts_add_up(run, expected):
    rows = run.summary["rows"]
    rejects = [o for o in expected if o.reason]
    assert rows["read"] == len(expected)
    assert rows["read"] == rows["written"]["train"] + rows["written"]["eval"] + rows["rejected"]
    assert rows["rejected"] == len(rejects) == len(run.rejected)
    assert rows["rejected_by_reason"] == dict(collections.Counter(o.reason for o in rejects))
    for split in SPLITS:
        assert rows["written"][split] == len(run.ids(split)), split
    with open(os.path.join(run.out, "run_summary.json"), encoding="utf-8") as f:
        assert json.load(f)["rows"] == rows


def test_rejects_are_exactly_the_expected_records(run, expected):
    got = sorted((os.path.basename(r["file"]), r["line"], r["reason"]) for r in run.rejected)
    assert got == sorted((o.file, o.line, o.reason) for o in expected if o.reason)


def test_every_kept_row_is_written_exactly_once_to_one_split(run, kept):
    written = collections.Counter(run.ids("train") + run.ids("eval"))
    assert not {i: n for i, n in written.items() if n > 1}, "rows written twice"
    assert set(written) == set(kept)


def test_labels_are_never_made_up(run, kept, messy_data):
    """An empty label is a reject, never a 0 or -1 in the written data."""
    for split in SPLITS:
        ids = run.ids(split)
        labels = run.written[split]["label"] if ids else []
        assert [int(v) for v in labels] == [kept[i]["label"] for i in ids], split
        assert set(int(v) for v in labels) <= {0, 1}
    missing = {(r.file, r.line) for r in messy_data.records if r.reason == "missing_label"}
    assert missing and {(os.path.basename(r["file"]), r["line"]) for r in run.rejected
                        if r["reason"] == "missing_label"} == missing
    distribution = run.summary["statistics"]["labels"]
    for split in SPLITS:
        counts = collections.Counter(kept[i]["label"] for i in run.ids(split))
        assert distribution.get(split, {}) == {str(k): v for k, v in sorted(counts.items())}


# The split ----------------------------------------------------------------------------------

def _is_eval(keys, fraction):
    import tensorflow as tf
    buckets = tf.strings.to_hash_bucket_fast(np.array(keys, dtype=object),
                                             reference.HASH_BUCKETS).numpy()
    return buckets < int(round(fraction * reference.HASH_BUCKETS))


def test_keyed_split_follows_the_documented_hash_rule(messy_keyed_run, kept):
    run = Run("messy_keyed_run", *messy_keyed_run)
    ids = sorted(kept)
    keys = [b"" if kept[i]["id"] is None else str(kept[i]["id"]).encode() for i in ids]
    expected_eval = {i for i, e in zip(ids, _is_eval(keys, EVAL_FRACTION)) if e}
    assert set(run.ids("eval")) == expected_eval
    assert set(run.ids("train")) == set(ids) - expected_eval


def test_default_split_sends_about_a_fifth_to_eval(messy_run, kept):
    run = Run("messy_run", *messy_run)
    share = len(run.ids("eval")) / len(kept)
    # n = 2,000: one standard deviation of the share is 0.009
    assert abs(share - EVAL_FRACTION) < 0.04, share


def test_default_split_does_not_depend_on_shards_or_order(messy_run, messy_resharded_cli_run):
    """The same records, in other shards, another order, other line ends and header order
    (and without the extra columns), through the console script: every row keeps its split."""
    proc, out, _ = messy_resharded_cli_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    first = Run("messy_run", *messy_run).split_of()
    with open(os.path.join(out, "run_summary.json"), encoding="utf-8") as f:
        summary = json.load(f)
    second = {i: s for s in SPLITS for i in (
        [int(v) for v in read_split(out, s)["id"]] if summary["rows"]["written"][s] else [])}
    assert second == first
    assert summary["rows"]["read"] == messy_run[1]["rows"]["read"]


# Values -------------------------------------------------------------------------------------

def _train(run, kept):
    return _frame(kept, run.ids("train"))


@pytest.mark.parametrize("split", SPLITS)
def test_passthrough_id(run, split):
    if run.ids(split):
        assert run.written[split]["id"].dtype == np.int64


LOOKUPS = [(name, spec) for name, spec in MESSY_FEATURES.items()
           if spec["kind"] in ("string_lookup", "integer_lookup")]


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("name,spec", LOOKUPS, ids=[n for n, _ in LOOKUPS])
def test_lookup_ids_equal_keras_layers_on_the_written_vocabulary(run, kept, split, name, spec):
    import keras
    ids = run.ids(split)
    assert ids
    integer = spec["kind"] == "integer_lookup"
    vocab = [e["token"] for e in run.vocabulary(name, integer=integer)]
    oov = spec.get("num_oov_indices", 1)
    layer = (keras.layers.IntegerLookup if integer else keras.layers.StringLookup)(
        vocabulary=vocab, num_oov_indices=oov)
    values = [kept[i][name] for i in ids]
    got = run.written[split][name]
    present = np.array([v is not None for v in values])
    if present.any():
        inputs = np.array([v for v in values if v is not None],
                          dtype=np.int64 if integer else object)
        expected = np.asarray(layer(inputs)).reshape(-1)
        np.testing.assert_array_equal(got[present], expected, err_msg=name)
    assert (got[~present] < oov).all(), f"{name}: a missing cell is OOV"


@pytest.mark.parametrize("name,spec", LOOKUPS, ids=[n for n, _ in LOOKUPS])
def test_vocabularies_are_pandas_counts_of_the_train_rows(run, kept, name, spec):
    integer = spec["kind"] == "integer_lookup"
    train = _train(run, kept)
    counts = {(int(k) if integer else k): int(v)
              for k, v in train[name].dropna().value_counts().items()}
    order = [t for t in reference.keras_order(counts)
             if counts[t] >= spec.get("min_frequency", 1)]
    if spec.get("max_tokens"):
        order = order[:spec["max_tokens"] - spec.get("num_oov_indices", 1)]
    entries = run.vocabulary(name, integer=integer)
    assert [e["token"] for e in entries] == order
    assert [e["count"] for e in entries] == [counts[t] for t in order]


def test_unicode_categories_are_counted_as_written(run, kept):
    """Precomposed and combining accents, NBSP, zero-width space and emoji stay distinct."""
    train = _train(run, kept)
    entries = {e["token"]: e["count"] for e in run.vocabulary("cat_small")}
    counted = 0
    for value in messy.UNICODE_CATEGORIES:
        n = int((train["cat_small"] == value).sum())
        assert entries.get(value, 0) == n, value
        counted += n > 0
    assert counted >= len(messy.UNICODE_CATEGORIES) - 1


_PUNCTUATION = re.compile("[" + re.escape(string.punctuation) + "]")
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _tokens(text):
    """Keras's default standardize and split, in plain Python: ASCII lower-case, ASCII
    punctuation deleted, split on ASCII whitespace."""
    text = _PUNCTUATION.sub("", (text or "").translate(_ASCII_LOWER))
    return [t for t in re.split("[ \t\n\v\f\r]+", text) if t]


TEXT = MESSY_FEATURES["text"]


def _text_vocabulary(train):
    counts = collections.Counter(t for text in train["text"] for t in _tokens(text))
    return counts, reference.keras_order(counts)[:TEXT["max_tokens"] - 2]


def test_text_vocabulary_is_python_token_counts_of_the_train_rows(run, kept):
    counts, order = _text_vocabulary(_train(run, kept))
    entries = run.vocabulary("text")
    assert [e["token"] for e in entries] == order
    assert [e["count"] for e in entries] == [counts[t] for t in order]
    text = run.summary["statistics"]["text"]["text"]
    train = _train(run, kept)
    total = sum(len(_tokens(t)) for t in train["text"])
    assert text["tokens"] == total  # an empty text has no token, "a b\n" two
    coverage = run.summary["statistics"]["vocabularies"]["text"]["coverage"]
    assert coverage == pytest.approx(sum(counts[t] for t in order) / total)


def test_text_vocabulary_equals_keras_adapt(run, kept):
    import keras
    train = _train(run, kept)
    layer = keras.layers.TextVectorization(max_tokens=TEXT["max_tokens"])
    layer.adapt(np.array([t or "" for t in train["text"]], dtype=object), batch_size=256)
    assert ["", "[UNK]"] + [e["token"] for e in run.vocabulary("text")] \
        == layer.get_vocabulary()


def _expected_text_ids(run, kept, ids):
    _, order = _text_vocabulary(_train(run, kept))
    index = {t: k + 2 for k, t in enumerate(order)}
    length = TEXT["output_sequence_length"]
    out = np.zeros((len(ids), length), np.int64)
    for row, i in enumerate(ids):
        tokens = [index.get(t, 1) for t in _tokens(kept[i]["text"])][:length]
        out[row, :len(tokens)] = tokens
    return out


@pytest.mark.parametrize("split", SPLITS)
def test_text_ids(run, kept, split):
    ids = run.ids(split)
    np.testing.assert_array_equal(run.written[split]["text"], _expected_text_ids(run, kept, ids))


@pytest.mark.parametrize("split", SPLITS)
def test_normalization_uses_train_statistics(run, kept, split):
    train = _train(run, kept)
    ids = run.ids(split)
    rows = _frame(kept, ids)
    for name in ("f_normal", "f_missing"):
        present = train[name].dropna().to_numpy(np.float64)
        mean, std = present.mean(), present.std()
        values = _floats(rows[name])
        expected = np.where(np.isnan(values), 0.0, (values - mean) / max(std, 1e-7))
        np.testing.assert_allclose(run.written[split][name], expected, rtol=1e-4, atol=1e-5,
                                   err_msg=name)
    np.testing.assert_array_equal(run.written[split]["f_missing_missing"],
                                  rows["f_missing"].isna().to_numpy().astype(np.int64))


@pytest.mark.parametrize("column", ["f_normal", "f_uniform", "f_missing", "int_cat"])
def test_numeric_statistics_are_numpy_over_the_train_rows(run, kept, column):
    values = _floats(_train(run, kept)[column])
    present = values[~np.isnan(values)]
    stats = run.summary["statistics"]["numeric"][column]
    assert stats["count"] == present.size
    assert stats["missing"] == values.size - present.size
    if column == "int_cat":
        return  # +-2**63 cancel in any float sum: only the counts are exact
    np.testing.assert_allclose(stats["mean"], present.mean(), rtol=1e-5)
    np.testing.assert_allclose(stats["variance"], present.var(), rtol=1e-5)


# The cases one by one -----------------------------------------------------------------------

def _ids_of(messy_data, case):
    return {_key(r.values) for r in messy_data.records if r.case == case and r.kept}


def test_big_field_row_is_kept_and_its_tokens_appear(run, kept, messy_data):
    (big,) = _ids_of(messy_data, "big_field")
    split = run.split_of()[big]
    at = run.ids(split).index(big)
    got = run.written[split]["text"][at]
    assert (got > 1).all(), "a full sequence of in-vocabulary tokens"
    np.testing.assert_array_equal(got, _expected_text_ids(run, kept, [big])[0])


@pytest.mark.parametrize("case", ["bare_cr", "quoted_cr", "quoted_multiline"])
def test_rows_with_line_breaks_in_a_field_are_kept(run, kept, messy_data, case):
    ids = _ids_of(messy_data, case)
    assert ids and ids <= set(run.split_of())
    breaks = [("\n" if case == "quoted_multiline" else "\r") in kept[i]["text"] for i in ids]
    assert all(breaks) if case != "quoted_multiline" else sum(breaks) >= 3


def test_empty_and_oov_text(run, kept, messy_data):
    split_of = run.split_of()
    for i in _ids_of(messy_data, "empty_text") | _ids_of(messy_data, "all_missing"):
        split = split_of[i]
        assert (run.written[split]["text"][run.ids(split).index(i)] == 0).all()
    for i in _ids_of(messy_data, "oov_text"):
        split = split_of[i]
        ids = run.written[split]["text"][run.ids(split).index(i)]
        assert set(ids.tolist()) <= {0, 1} and (ids == 1).sum() == len(_tokens(kept[i]["text"]))


def test_int64_extremes_are_values_and_overflows_are_rejected(run, kept, messy_data):
    extremes = _ids_of(messy_data, "int_extremes")
    assert extremes <= set(run.split_of())
    assert {kept[i]["int_cat"] for i in extremes} == {messy.INT64_MAX, messy.INT64_MIN}
    overflow = {(r.file, r.line) for r in messy_data.records if r.case == "int_overflow"}
    got = {(os.path.basename(r["file"]), r["line"]) for r in run.rejected
           if r["reason"] == "bad_int"}
    assert got == overflow
    for r in run.rejected:
        if r["reason"] == "bad_int":
            assert "int_cat" in r["detail"]


def test_reordered_shard_rows_are_read_by_name(run, kept, messy_data):
    """The shard's columns are in another order with two extra columns: its rows must carry
    their own values (checked in full above); here, that none is lost."""
    ids = {_key(r.values) for r in messy_data.files["part-00003-reordered.csv"] if r.kept}
    assert ids <= set(run.split_of())


# A field over input.max_record_bytes ----------------------------------------------------

def test_record_over_max_record_bytes_is_rejected(messy_data, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in (messy.BIG_SHARD, "part-00002-gzip.csv.gz"):
        shutil.copy(os.path.join(messy_data.folder, name), data / name)
    limit = 1 << 20
    config, summary = run_messy(str(data), tmp_path,
                                input={"file_pattern": str(data / "part-*"),
                                       "max_record_bytes": limit})
    records = messy_data.files[messy.BIG_SHARD] + messy_data.files["part-00002-gzip.csv.gz"]
    too_large = [(r.file, r.line, "record_too_large") for r in records if r.nbytes > limit]
    assert len(too_large) == 1
    expected = sorted(too_large + [(r.file, r.line, r.reason) for r in records
                                   if r.reason and r.nbytes <= limit])
    got = sorted((os.path.basename(r["file"]), r["line"], r["reason"])
                 for r in read_rejected(config.output.dir))
    assert got == expected
    rows = summary["rows"]
    assert rows["read"] == len(records)
    assert rows["read"] == rows["written"]["train"] + rows["written"]["eval"] + rows["rejected"]
