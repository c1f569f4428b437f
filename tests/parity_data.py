"""Seeded data and config for the Keras-parity tests (tests/test_keras_parity.py).

One small CSV (1,200 rows) whose train split has designed counts: count ties, a top-k
cut inside a tie, the IntegerLookup tie set {3, 2, 111, 10, 9}, a constant column, NaN
and empty cells, the text test vectors of keras-parity.md. The eval rows (the split
rule is `reference.is_eval`) carry the held-out cases: OOV values, the mask value,
empty and missing inputs, values outside the train range.

    write_csv(path)            -> the rows written, as {column: raw text}
    read_rows(path)            -> the same rows read back with the csv module
    make_config(csv, out_dir)  -> the config dict (same shape as conftest.make_config)
"""

import csv
import os

import numpy as np

from tests import reference

ROWS = 1200
SEED = 20260
EVAL_FRACTION = 0.25

COLUMNS = [
    {"name": "id", "type": "int"},
    {"name": "x", "type": "float"},
    {"name": "const", "type": "float"},
    {"name": "vec", "type": "float", "separator": "|", "length": 3},
    {"name": "price", "type": "float"},
    {"name": "city", "type": "string"},
    {"name": "tags", "type": "string", "separator": "|"},
    {"name": "code", "type": "int"},
    {"name": "code_list", "type": "int", "separator": "|"},
    {"name": "cat_id", "type": "int"},
    {"name": "text", "type": "string"},
    {"name": "doc", "type": "string"},
]
NAMES = [c["name"] for c in COLUMNS]

# city, train split: exact counts. Zürich/Zug tie (bytes order: "Zü" > "Zu"), the
# Oslo/Berlin/Athens tie is where `max_tokens: 7` (6 tokens + OOV) cuts, Lima/Rome tie
# again; "N/A" is a normal token except where it is the mask; the literal "[UNK]" is
# never counted; "" is a missing cell.
CITY_TRAIN = {"Paris": 150, "Zürich": 100, "Zug": 100, "ÉCOLE": 70, "Oslo": 50,
              "Berlin": 50, "Athens": 50, "N/A": 40, "[UNK]": 20, "Lima": 25, "Rome": 25,
              "": 20}
CITY_FILLER = [f"c{i:02d}" for i in range(60)]
CITY_EVAL = ["Paris", "Zürich", "Zug", "ÉCOLE", "Oslo", "Berlin", "Athens", "Lima", "Rome",
             "c03", "N/A", "[UNK]", "", "Tokyo", "zürich", "Zurich", "Lyon", "x y"]
CITY_ONE_HOT_MAX_TOKENS = 7

# code, train split: 7 and 42 lead, then the exact tie {3, 2, 111, 10, 9} (Keras order
# 111, 10, 9, 3, 2; tft's string order would be 9, 3, 2, 111, 10); 0 is the mask of one
# feature; -1 is IntegerLookup's oov_token (never counted); None a missing cell.
CODE_TRAIN = {7: 150, 42: 100, 3: 60, 2: 60, 111: 60, 10: 60, 9: 60, 0: 45, -1: 20,
              None: 15}
CODE_TIE = [111, 10, 9, 3, 2]
CODE_EVAL = [7, 42, 3, 2, 111, 10, 9, 0, -1, None, 999, -5, 13, 25]

TAGS = ["a", "b", "c", "d", "e", "f", "g", "x y"]
TAG_WEIGHTS = np.array([8, 8, 6, 5, 4, 2, 1, 3], dtype=float)

# Zipf weights by position: case and punctuation variants are frequent enough to land in
# the max_tokens-limited vocabularies.
WORDS = ["the", "cat", "The", "Hello,", "it's", "sat", "ICE", "on", "mat", "world!", "dog",
         "ran", "far", "away", "and", "then", "came", "back", "home", "to", "its", "warm",
         "bed", "red", "blue", "green", "sun", "moon", "star", "sky", "sea", "tree", "leaf",
         "rock", "sand", "wind", "rain", "Snow", "Fire", "(maybe)", "x-ray"]
# keras-parity.md §1.1 test vectors: non-ASCII upper case, Unicode punctuation, NBSP and
# U+2028 inside tokens, ASCII punctuation deleted (not replaced by a space), the literal
# "[UNK]", ASCII whitespace runs, a comma and a double quote (CSV quoting).
TEXT_VECTORS = [
    "CAFÉ ÉCOLE",
    "CAFÉ ÉCOLE café",
    "“quoted” — ¿qué?",
    "foo\u00a0bar line\u2028sep",
    "U.S.A. e-mail a_b 3.14",
    "[UNK] [unk] the cat",
    "",
    "Hello, World! say \"hi\"",
    "  tabs\tand   spaces  ",
    "b a c",
    "a b d",
]
TEXT_EVAL_ONLY = ["zzz qqq", "CAFÉ unseen-word", "[UNK]", "the the cat zzz zzz",
                  "U.S.A.", "foo\u00a0bar", "“quoted”", "x"]

# doc: only two train rows have a value, keras-parity.md's tie-break example.
DOC_TRAIN = ["b a c", "a b d"]
DOC_TIE_VOCABULARY = ["", "[UNK]", "b", "a", "d", "c"]


def _fmt(v):
    """A float as CSV text: repr round-trips float64, and float32 parsing is what both
    sides see."""
    return repr(float(v))


def _split(rng, n_rows):
    ids = np.arange(n_rows)
    return ids, reference.is_eval(ids, EVAL_FRACTION)


def _multiset(counts, n, rng, filler):
    """`counts` exactly, topped up to n values drawn from `filler()`, shuffled."""
    values = [k for k, c in counts.items() for _ in range(c)]
    assert len(values) <= n, (len(values), n)
    values += [filler() for _ in range(n - len(values))]
    order = rng.permutation(len(values))
    return [values[i] for i in order]


def generate(n_rows=ROWS, seed=SEED):
    """The rows, as {column: raw CSV text} (an empty string is an empty cell)."""
    rng = np.random.RandomState(seed)
    ids, is_eval = _split(rng, n_rows)
    n_train = int((~is_eval).sum())

    filler_w = 1.0 / (np.arange(len(CITY_FILLER)) + 5.0)
    filler_w /= filler_w.sum()
    city_train = _multiset(CITY_TRAIN, n_train, rng,
                           lambda: CITY_FILLER[rng.choice(len(CITY_FILLER), p=filler_w)])
    code_train = _multiset(CODE_TRAIN, n_train, rng, lambda: int(rng.randint(12, 40)))
    text_train = _multiset({t: 2 for t in TEXT_VECTORS}, n_train, rng, lambda: None)
    doc_train = _multiset({d: 1 for d in DOC_TRAIN}, n_train, rng, lambda: "")
    word_w = 1.0 / (np.arange(len(WORDS)) + 1.5)
    word_w /= word_w.sum()
    tag_p = TAG_WEIGHTS / TAG_WEIGHTS.sum()

    rows = []
    t = 0
    for i in ids:
        ev = bool(is_eval[i])
        row = {"id": str(int(i))}
        # x: normal(3, 2); 5% empty cells, a few NaN.
        u = rng.rand()
        if u < 0.05:
            row["x"] = ""
        elif u < 0.06:
            row["x"] = "nan" if rng.rand() < 0.5 else "NaN"
        else:
            row["x"] = _fmt(np.round(rng.normal(3.0, 2.0), 4))
        if ev and rng.rand() < 0.05:
            row["x"] = _fmt(rng.choice([-50.0, 80.0]))  # outside the train range
        if ev and i % 40 == 7:
            row["x"] = "nan"  # held-out NaN cells, whatever the draws
        # const: 5.0 in train; eval also has 4.0 and 6.0 (Keras: (x - mean) * 1e7).
        row["const"] = "5.0" if not ev else _fmt(rng.choice([5.0, 4.0, 6.0]))
        # vec: complete in train; eval has short, long, empty and NaN positions.
        v = np.round(rng.normal([0.0, 10.0, -3.0], [1.0, 5.0, 0.1]), 4)
        row["vec"] = "|".join(_fmt(a) for a in v)
        if ev:
            w = rng.rand()
            if w < 0.1:
                row["vec"] = "|".join(_fmt(a) for a in v[:2])
            elif w < 0.2:
                row["vec"] = "|".join(_fmt(a) for a in np.append(v, 99.0))
            elif w < 0.25:
                row["vec"] = ""
            elif w < 0.3:
                row["vec"] = f"{_fmt(v[0])}|nan|{_fmt(v[2])}"
        # price: lognormal, positive; eval has values outside the train range.
        p = float(np.round(rng.lognormal(3.0, 1.0), 3))
        if ev and rng.rand() < 0.1:
            p = float(rng.choice([0.0, 0.001, 5000.0, 1e5]))
        row["price"] = _fmt(p)
        # city
        row["city"] = CITY_EVAL[rng.randint(len(CITY_EVAL))] if ev else None
        # tags: 0-4 tags, repeats possible ("c|c|d"); empty cell = no tags.
        k = rng.randint(0, 5)
        tags = [TAGS[j] for j in rng.choice(len(TAGS), size=k, p=tag_p)]
        if ev and rng.rand() < 0.2:
            tags = [str(rng.choice(["zz", "[UNK]", "a", "q r"])) for _ in range(rng.randint(1, 4))]
        row["tags"] = "|".join(tags)
        # code
        row["code"] = CODE_EVAL[rng.randint(len(CODE_EVAL))] if ev else None
        # code_list: ids mostly in [0, 8), some 8..11, a few -1; empty cell = no values.
        k = rng.randint(0, 4)
        values = list(rng.choice(12, size=k, p=_code_list_p()))
        if rng.rand() < 0.05:
            values.append(-1)
        if ev and rng.rand() < 0.15:
            values.append(int(rng.choice([15, -3, 99])))
        row["code_list"] = "|".join(str(int(a)) for a in values)
        # cat_id: [0, 10), >= 8 about 7% of rows; eval also has -1 and 12.
        c = int(rng.choice(10, p=_cat_p()))
        if ev and rng.rand() < 0.1:
            c = int(rng.choice([-1, 12]))
        row["cat_id"] = str(c)
        # text
        if ev:
            w = rng.rand()
            if w < 0.3:
                row["text"] = str(rng.choice(TEXT_VECTORS + TEXT_EVAL_ONLY))
            else:
                row["text"] = _random_text(rng, word_w)
            row["doc"] = " ".join(rng.choice(["a", "b", "c", "d", "e"], size=rng.randint(0, 4)))
        else:
            row["text"] = None
            row["doc"] = doc_train[t]
            row["city"] = city_train[t]
            row["code"] = code_train[t]
            row["text"] = text_train[t]
            if row["text"] is None:
                row["text"] = _random_text(rng, word_w)
            t += 1
        row["code"] = "" if row["code"] is None else str(row["code"])
        rows.append(row)
    return rows


def _code_list_p():
    p = np.array([6, 5, 5, 4, 4, 3, 3, 2, 1, 1, 0.5, 0.5])
    return p / p.sum()


def _cat_p():
    p = np.array([10, 9, 8, 7, 6, 5, 4, 3, 2, 1.5])
    return p / p.sum()


def _random_text(rng, word_w):
    n = rng.randint(0, 9)
    return " ".join(WORDS[j] for j in rng.choice(len(WORDS), size=n, p=word_w))


def write_csv(path, n_rows=ROWS, seed=SEED):
    """Writes the seeded CSV (utf-8, header, csv-module quoting); returns the rows."""
    rows = generate(n_rows, seed)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(NAMES)
        for row in rows:
            writer.writerow([row[n] for n in NAMES])
    return rows


def read_rows(path):
    """The CSV read back with the csv module: [{column: raw text}], in file order."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        return [dict(zip(header, r)) for r in reader]


BIN_BOUNDARIES = [-1.0, 1.5, 3.0, 6.0]
HASH_SALT = 1337
HASH_SALT_PAIR = [11, 22]

FEATURES = {
    "id": {"kind": "passthrough"},
    # normalization
    "x_norm": {"kind": "normalization", "column": "x", "missing_indicator": True},
    "x_inv": {"kind": "normalization", "column": "x", "invert": True},
    "const_norm": {"kind": "normalization", "column": "const"},
    "vec_norm": {"kind": "normalization", "column": "vec", "axis": -1},
    "vec_norm_all": {"kind": "normalization", "column": "vec", "axis": None},
    # imputation
    "x_fill": {"kind": "passthrough", "column": "x", "impute": "constant", "fill_value": -1.5,
               "missing_indicator": True},
    "x_mean": {"kind": "passthrough", "column": "x", "impute": "mean"},
    "x_median": {"kind": "min_max", "column": "x", "impute": "median",
                 "missing_indicator": True},
    # min_max, rescaling
    "price_minmax": {"kind": "min_max", "column": "price"},
    "price_minmax_log": {"kind": "min_max", "column": "price", "output_min": -1,
                         "output_max": 1, "log1p": True},
    "const_minmax": {"kind": "min_max", "column": "const"},
    "price_rescaled": {"kind": "rescaling", "column": "price", "scale": 0.01, "offset": -1.0},
    # discretization
    "x_bins": {"kind": "discretization", "column": "x", "bin_boundaries": BIN_BOUNDARIES},
    "price_bins": {"kind": "discretization", "column": "price", "num_bins": 4},
    # string_lookup
    "city_int": {"kind": "string_lookup", "column": "city", "num_oov_indices": 3},
    "city_mask": {"kind": "string_lookup", "column": "city", "mask_token": "N/A",
                  "impute": "most_frequent"},
    "city_onehot": {"kind": "string_lookup", "column": "city", "output_mode": "one_hot",
                    "max_tokens": CITY_ONE_HOT_MAX_TOKENS},
    "tags_multi": {"kind": "string_lookup", "column": "tags", "output_mode": "multi_hot",
                   "max_tokens": 6},
    "tags_count": {"kind": "string_lookup", "column": "tags", "output_mode": "count",
                   "max_tokens": 12},
    "tags_seq": {"kind": "string_lookup", "column": "tags", "mask_token": "",
                 "output_sequence_length": 3},
    # integer_lookup
    "code_int": {"kind": "integer_lookup", "column": "code"},
    "code_oov3": {"kind": "integer_lookup", "column": "code", "num_oov_indices": 3},
    "code_mask": {"kind": "integer_lookup", "column": "code", "mask_token": 0,
                  "impute": "most_frequent"},
    "code_list_multi": {"kind": "integer_lookup", "column": "code_list",
                        "output_mode": "multi_hot", "max_tokens": 10},
    # text_vectorization
    # standardize: "lower" here, default lower_and_strip_punctuation on the limited ones
    "text_ngrams": {"kind": "text_vectorization", "column": "text", "ngrams": [1, 3],
                    "standardize": "lower", "output_sequence_length": 16},
    "text_strip": {"kind": "text_vectorization", "column": "text",
                   "standardize": "strip_punctuation", "output_sequence_length": 8},
    "text_none": {"kind": "text_vectorization", "column": "text", "standardize": "none",
                  "output_sequence_length": 8},
    "text_char_count": {"kind": "text_vectorization", "column": "text", "split": "character",
                        "output_mode": "count", "max_tokens": 40},
    "text_bigram_multi": {"kind": "text_vectorization", "column": "text", "ngrams": 2,
                          "output_mode": "multi_hot", "max_tokens": 30},
    "text_tfidf": {"kind": "text_vectorization", "column": "text", "output_mode": "tf_idf",
                   "max_tokens": 30},
    "doc_tie": {"kind": "text_vectorization", "column": "doc", "output_sequence_length": 4},
    # hashing
    "city_hash": {"kind": "hashing", "column": "city", "num_bins": 16},
    "city_hash_salt": {"kind": "hashing", "column": "city", "num_bins": 16, "salt": HASH_SALT},
    "city_hash_salt2": {"kind": "hashing", "column": "city", "num_bins": 16,
                        "salt": HASH_SALT_PAIR},
    "city_hash_mask": {"kind": "hashing", "column": "city", "num_bins": 16,
                       "mask_value": "N/A"},
    "city_hash_onehot": {"kind": "hashing", "column": "city", "num_bins": 8,
                         "output_mode": "one_hot"},
    "code_hash": {"kind": "hashing", "column": "code", "num_bins": 10},
    "x_hash": {"kind": "hashing", "column": "x", "num_bins": 10},
    "tags_hash": {"kind": "hashing", "column": "tags", "num_bins": 8, "output_mode": "count"},
    # hashed_crossing
    "city_x_code": {"kind": "hashed_crossing", "columns": ["city", "code"], "num_bins": 32},
    "city_x_code_onehot": {"kind": "hashed_crossing", "columns": ["city", "code"],
                           "num_bins": 16, "output_mode": "one_hot"},
    # category_encoding
    "cat_onehot": {"kind": "category_encoding", "column": "cat_id", "num_tokens": 8,
                   "output_mode": "one_hot"},
    "code_list_ce_multi": {"kind": "category_encoding", "column": "code_list",
                           "num_tokens": 8, "output_mode": "multi_hot"},
    "code_list_ce_count": {"kind": "category_encoding", "column": "code_list",
                           "num_tokens": 8, "output_mode": "count"},
}


def make_config(csv_path, out_dir, features=None):
    """The config dict over the CSV at `csv_path` (no label: it is optional)."""
    return {
        "input": {"format": "csv", "file_pattern": csv_path, "header": True},
        "columns": COLUMNS,
        "split": {"eval_fraction": EVAL_FRACTION, "key": "id"},
        "features": FEATURES if features is None else features,
        "output": {"dir": out_dir, "num_shards": 1},
    }
