"""Seeded CSV shards as messy as real exports, with the outcome every record must have.

    data = write_messy_csv(folder, seed=11)
    data.records        # every record written, in file order
    data.files["part-00001-crlf.csv"][0].line, .case, .values, .reason

Beside clean rows (the columns of `tests/conftest.py`: id, f_normal, f_uniform, f_missing,
cat_small, cat_mid, cat_big, int_cat, text, label) the shards hold the cases listed in
CASES: empty labels, empty text, all-OOV text, Unicode punctuation and non-Latin text,
quoted fields with line breaks, delimiters and doubled quotes, every field quoted, bare
CRs inside unquoted (and quoted) text, NaN/inf/empty cells in every float column, empty
cells in every int and string column, number spellings, int64 extremes and overflows.
The shards themselves are messy too: a plain LF shard with blank lines, a CRLF shard
with a BOM, a gzip shard, a shard whose header has the columns in another order plus two
extra columns (with junk in them), and one small shard holding a multi-megabyte text
field.

Expected outcomes, by the project's rules:
  * an empty label cell (also `""`, or spaces in an int label) -> rejected `missing_label`;
  * an empty cell elsewhere -> a missing value (None here), the row is kept;
  * NaN / inf / Infinity (any case, any sign) in a float column -> missing (the default
    `input.non_finite: missing`);
  * an int cell outside int64 -> rejected `bad_int`;
  * a bare CR inside a field -> part of that field's value (the row is kept);
  * header columns are matched by name; extra columns are ignored.
A record's `line` is the 1-based line it starts on, counting `\\n` line ends (the header
is line 1; a bare CR does not end a line). `values` are typed as the config's columns:
int, float (finite) or str, None for missing.

Same seed and arguments, same bytes.
"""

import csv
import dataclasses
import glob
import gzip
import io
import math
import os
import re
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

COLUMN_TYPES = {
    "id": "int", "f_normal": "float", "f_uniform": "float", "f_missing": "float",
    "cat_small": "string", "cat_mid": "string", "cat_big": "string", "int_cat": "int",
    "text": "string", "label": "int",
}
NAMES = list(COLUMN_TYPES)
FLOATS = [n for n, t in COLUMN_TYPES.items() if t == "float"]
EXTRA_COLUMNS = ["extra_note", "extra_score"]
MISSING_FLOAT_SPELLINGS = ["", "NaN", "nan", "inf", "-inf", "Infinity", "-Infinity"]
INT64_MAX, INT64_MIN = 2**63 - 1, -2**63
STRING_LABELS = ("no", "yes")
RARE_STRING_LABEL = "perhaps"  # a class a few rows have: it may land in eval only

SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "shi", "pa", "de", "gu", "ze"]
UNICODE_TOKENS = [
    "\u201ccurly\u201d", "\u2018single\u2019", "caf\u00e9", "cafe\u0301", "na\u00efve",
    "\u6771\u4eac", "\u5927\u962a\u5e9c", "\u3053\u3093\u306b\u3061\u306f", "\U0001f642",
    "\U0001f680\U0001f525", "\u043f\u0440\u0438\u0432\u0435\u0442",
    "\u0645\u0631\u062d\u0628\u0627", "a\u00a0b", "\u2014", "\u2026", "\u00abguillemets\u00bb",
    "Stra\u00dfe", "\u00c5ngstr\u00f6m", "x\u200by", "\u00bd", "\u2116",
]
UNICODE_CATEGORIES = ["caf\u00e9", "cafe\u0301", "\u6771\u4eac", "a\u00a0b", "\U0001f642",
                      "\u00c4\u00d6\u00dc", "m\u200b1", "\u201cm1\u201d"]


@dataclasses.dataclass
class Record:
    """One record as written and what must become of it.

    Attributes:
      file: the shard's file name (no folder).
      line: the 1-based line the record starts on (the header is line 1).
      case: "clean" or the name of the messy case it holds.
      cells: each column's cell exactly as written (quotes included), extra columns too.
      values: the typed values of the declared columns when the row is kept, else None.
      reason: the reject reason when it is rejected, else None.
      nbytes: the record's size in bytes as written (without its line end).
    """

    file: str
    line: int
    case: str
    cells: Dict[str, str]
    values: Optional[Dict[str, Any]]
    reason: Optional[str]
    nbytes: int = 0

    @property
    def kept(self) -> bool:
        return self.reason is None


@dataclasses.dataclass(frozen=True)
class Shard:
    """How one shard is written."""

    name: str  # file name; .gz is gzip
    crlf: bool = False
    bom: bool = False
    reordered: bool = False  # header in another order plus EXTRA_COLUMNS
    blank_lines: bool = False  # a few empty lines between records and at the end
    share: float = 1.0  # its part of the rows


DEFAULT_SHARDS = (
    Shard("part-00000-plain.csv", blank_lines=True, share=0.35),
    Shard("part-00001-crlf.csv", crlf=True, bom=True, share=0.25),
    Shard("part-00002-gzip.csv.gz", share=0.25),
    Shard("part-00003-reordered.csv", reordered=True, share=0.15),
)
BIG_SHARD = "part-00004-big.csv"


@dataclasses.dataclass
class MessyData:
    """What `write_messy_csv` wrote: per file, its records in order."""

    folder: str
    files: Dict[str, List[Record]]
    big_field_bytes: int = 0

    @property
    def records(self) -> List[Record]:
        return [r for records in self.files.values() for r in records]

    @property
    def kept(self) -> List[Record]:
        return [r for r in self.records if r.kept]

    @property
    def rejected(self) -> List[Record]:
        return [r for r in self.records if not r.kept]

    def expected_rejects(self) -> List[tuple]:
        """Sorted (file name, line, reason) of every record that must be rejected."""
        return sorted((r.file, r.line, r.reason) for r in self.rejected)

    def cases(self) -> Dict[str, int]:
        """How many records of each case were written."""
        out: Dict[str, int] = {}
        for r in self.records:
            out[r.case] = out.get(r.case, 0) + 1
        return out


def quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _words(n: int) -> List[str]:
    words = []
    for i in range(n):
        parts, j = [], i
        while True:
            parts.append(SYLLABLES[j % len(SYLLABLES)])
            j //= len(SYLLABLES)
            if j == 0:
                break
        words.append("".join(parts))
    return words


WORDS = _words(400)


def _zipf(rng, n: int, a: float = 1.3, size=None):
    return (rng.zipf(a, size=size) - 1) % n


def _text(rng, low: int = 3, high: int = 16) -> str:
    tokens = [WORDS[i] for i in _zipf(rng, len(WORDS), 1.25, size=int(rng.integers(low, high)))]
    text = " ".join(tokens)
    mark = rng.random()
    if mark < 0.1:
        text = text.capitalize() + "."
    elif mark < 0.13:
        text = text.upper() + "!"
    elif mark < 0.16:
        text += "?"
    return text


class _Row:
    """A row being made: each column's cell text and its expected typed value."""

    def __init__(self, row_id: int, rng, string_labels: bool):
        self.case = "clean"
        self.reason: Optional[str] = None
        f_normal = float(f"{rng.normal(3.0, 2.0):.6g}")
        f_uniform = float(f"{rng.uniform(0, 100):.6g}")
        f_missing = None if rng.random() < 0.05 else float(f"{rng.lognormal(1.0, 0.5):.6g}")
        cat_small = f"c{_zipf(rng, 10)}"
        logit = 0.8 * (f_normal - 3.0) / 2.0 + 1.2 * (cat_small in ("c0", "c3")) - 0.5
        label_id = int(rng.random() < 1 / (1 + np.exp(-logit)))
        self.values: Dict[str, Any] = {
            "id": row_id, "f_normal": f_normal, "f_uniform": f_uniform, "f_missing": f_missing,
            "cat_small": cat_small, "cat_mid": f"m{_zipf(rng, 200)}",
            "cat_big": f"b{_zipf(rng, 5000, 1.1)}",
            "int_cat": int(rng.integers(0, 50)) * 7 + 3, "text": _text(rng),
            "label": STRING_LABELS[label_id] if string_labels else label_id,
        }
        self.cells = {n: self._plain(v) for n, v in self.values.items()}

    @staticmethod
    def _plain(value) -> str:
        if value is None:
            return ""
        if isinstance(value, float):
            return f"{value:.6g}"
        return str(value)

    def set(self, name: str, cell: str, value) -> None:
        self.cells[name], self.values[name] = cell, value

    def reject(self, reason: str) -> None:
        self.reason = reason


# The messy cases: name -> (share of the rows, variants, how a variant changes a row).
# Each case's rows cycle through its variants (shuffled), so with enough rows every
# variant is written at least once.

def _missing_float(row, rng, variant):
    column, spelling = variant
    row.set(column, spelling, None)


def _missing_string(row, rng, column):
    row.set(column, "", None)


def _missing_int(row, rng, _):
    row.set("int_cat", "", None)


def _missing_id(row, rng, _):
    row.set("id", "", None)


def _all_missing(row, rng, _):
    for name in NAMES:
        if name not in ("id", "label"):
            row.set(name, "", None)


def _empty_label(row, rng, cell):
    row.set("label", cell, None)
    row.reject("missing_label")


def _empty_text(row, rng, _):
    row.set("text", "", None)


def _oov_text(row, rng, _):
    # Words that occur in no other row: OOV wherever the row lands.
    text = " ".join(f"zq{row.values['id']}x{k}" for k in range(int(rng.integers(2, 7))))
    row.set("text", text, text)


def _unicode_text(row, rng, _):
    picks = rng.choice(len(UNICODE_TOKENS), size=int(rng.integers(2, 6)), replace=False)
    tokens = [WORDS[i] for i in _zipf(rng, len(WORDS), size=3)] + [UNICODE_TOKENS[i] for i in picks]
    order = rng.permutation(len(tokens))
    text = " ".join(tokens[i] for i in order)
    row.set("text", text, text)


def _unicode_category(row, rng, value):
    row.set("cat_small", value, value)  # cat_small's vocabulary has no size limit


def _quoted_multiline(row, rng, variant):
    a, b, c, d = (WORDS[i] for i in _zipf(rng, len(WORDS), size=4))
    text = {
        "newline": f"{a} {b}\n{c} {d}",
        "newlines_delimiters_quotes": f'{a}, {b}\n"{c}" said {d},\n\nthen left',
        "doubled_quotes": f'{a} "{b}" {c}"',
        "delimiter_only": f"{a},{b}, {c}",
        "trailing_newline": f"{a} {b}\n",
    }[variant]
    row.set("text", quote(text), text)


def _quoted_delimiter(row, rng, variant):
    value = {"cat_mid": "m1,5", "cat_small": 'c"q', "cat_big": "b, \"x\""}[variant]
    row.set(variant, quote(value), value)


def _quote_all(row, rng, _):
    for name in NAMES:
        row.cells[name] = quote(row.cells[name])


def _bare_cr(row, rng, variant):
    a, b, c = (WORDS[i] for i in _zipf(rng, len(WORDS), size=3))
    text = {"between_words": f"{a}\r{b} {c}", "spaced": f"{a} \r {b}",
            "double": f"{a}\r\r{b}\r{c}"}[variant]
    row.set("text", text, text)


def _quoted_cr(row, rng, _):
    a, b = (WORDS[i] for i in _zipf(rng, len(WORDS), size=2))
    text = f"{a}\r{b}, \"{a}\""
    row.set("text", quote(text), text)


NUMBER_SPELLINGS = [("f_normal", "+1.5", 1.5), ("f_normal", " 2.5 ", 2.5),
                    ("f_uniform", "1e-3", 1e-3), ("f_uniform", "1E2", 100.0),
                    ("f_missing", ".5", 0.5), ("f_missing", "5.", 5.0),
                    ("f_normal", "-0.0", -0.0), ("f_uniform", "-0", -0.0),
                    ("f_missing", "1e-400", 0.0),  # underflows to 0: a value
                    # overflows to +-inf: non-finite, so missing as NaN/inf are
                    ("f_uniform", "1e999", None), ("f_normal", "-1e999", None),
                    ("int_cat", " 10 ", 10), ("int_cat", "+17", 17), ("int_cat", "-0", 0)]


def _number_formats(row, rng, variant):
    column, cell, value = variant
    row.set(column, cell, value)


def _int_extremes(row, rng, value):
    row.set("int_cat", str(value), value)


def _int_overflow(row, rng, cell):
    row.set("int_cat", cell, None)
    row.reject("bad_int")


CASES = {
    "missing_float": (0.012, [(c, s) for c in FLOATS for s in MISSING_FLOAT_SPELLINGS],
                      _missing_float),
    "missing_string": (0.006, ["cat_small", "cat_mid", "cat_big"], _missing_string),
    "missing_int": (0.004, [None], _missing_int),
    "missing_id": (None, [None], _missing_id),  # one row: its id is written as 0
    "all_missing": (0.0015, [None], _all_missing),
    "empty_label": (0.004, ["", '""', " "], _empty_label),
    "empty_text": (0.01, [None], _empty_text),
    "oov_text": (0.01, [None], _oov_text),
    "unicode_text": (0.02, [None], _unicode_text),
    "unicode_category": (0.02, UNICODE_CATEGORIES, _unicode_category),
    "quoted_multiline": (0.01, ["newline", "newlines_delimiters_quotes", "doubled_quotes",
                                "delimiter_only", "trailing_newline"], _quoted_multiline),
    "quoted_delimiter": (0.005, ["cat_mid", "cat_small", "cat_big"], _quoted_delimiter),
    "quote_all": (0.01, [None], _quote_all),
    "bare_cr": (0.01, ["between_words", "spaced", "double"], _bare_cr),
    "quoted_cr": (0.003, [None], _quoted_cr),
    "number_formats": (0.008, NUMBER_SPELLINGS, _number_formats),
    "int_extremes": (0.002, [INT64_MAX, INT64_MIN], _int_extremes),
    "int_overflow": (0.0015, [str(INT64_MAX + 1), str(INT64_MIN - 1),
                              "123456789012345678901234"], _int_overflow),
}


def _case_rows(rng, cases: Sequence[str], rows: int, next_id, string_labels: bool,
               ) -> List[_Row]:
    out = []
    for name in cases:
        share, variants, apply = CASES[name]
        if name == "empty_label" and string_labels:
            variants = ["", '""']  # spaces are text in a string column: a class, not missing
        count = 1 if share is None else max(1, int(round(share * rows)))
        order = [variants[i] for i in rng.permutation(len(variants))]
        for k in range(count):
            row = _Row(next_id(), rng, string_labels)
            row.case = name
            apply(row, rng, order[k % len(order)])
            out.append(row)
    return out


def _extra_cells(rng) -> Dict[str, str]:
    """Junk in the extra columns: it must be ignored, never typed or rejected."""
    note = rng.choice(["", "ok", quote("see, also \"this\""), "n/a", quote("two\nlines")])
    score = rng.choice(["", "n/a", "1e999", "-", f"{rng.normal():.3f}", "9" * 30])
    return {"extra_note": str(note), "extra_score": str(score)}


def _render(row: _Row, names: Sequence[str]) -> str:
    return ",".join(row.cells[n] for n in names)


def _write_shard(folder: str, shard: Shard, rows: List[_Row], rng) -> List[Record]:
    names = list(NAMES)
    if shard.reordered:
        names = [names[i] for i in rng.permutation(len(names))]
        for extra, at in zip(EXTRA_COLUMNS, (2, len(names) - 1)):
            names.insert(at, extra)
    end = "\r\n" if shard.crlf else "\n"
    pieces = [("\ufeff" if shard.bom else "") + ",".join(names) + end]
    line = 2
    records = []
    blanks = set(rng.choice(len(rows), size=min(3, len(rows)), replace=False).tolist()) \
        if shard.blank_lines and rows else set()
    for i, row in enumerate(rows):
        if i in blanks:
            pieces.append(end)
            line += 1
        if shard.reordered:
            row.cells.update(_extra_cells(rng))
        text = _render(row, names)
        records.append(Record(shard.name, line, row.case, dict(row.cells),
                              None if row.reason else dict(row.values), row.reason,
                              len(text.encode("utf-8"))))
        pieces.append(text + end)
        line += text.count("\n") + 1
    if shard.blank_lines:
        pieces.append(end + end)
    data = "".join(pieces).encode("utf-8")
    path = os.path.join(folder, shard.name)
    if shard.name.endswith(".gz"):
        with gzip.GzipFile(path, "wb", compresslevel=6, mtime=0) as f:
            f.write(data)
    else:
        with open(path, "wb") as f:
            f.write(data)
    return records


def _big_text(rng, nbytes: int) -> str:
    # Ordinary words (so its tokens are in the vocabulary), a few MB of them.
    count = nbytes // 5 + 1
    words = np.array(WORDS[:100], dtype=object)[rng.integers(0, 100, size=count)]
    text = " ".join(words.tolist())
    while len(text) < nbytes:
        text += " " + text[:nbytes - len(text)]
    return text[:nbytes].rstrip()


def write_messy_csv(folder: str, seed: int, rows: int = 2000,
                    shards: Optional[Sequence[Shard]] = None,
                    cases: Optional[Sequence[str]] = None, string_labels: bool = False,
                    big_field_bytes: int = 3 << 20, rare_labels: int = 0) -> MessyData:
    """Writes messy CSV shards into `folder` and returns what each record must become.

    Args:
      folder: where the shards go (created if needed).
      seed: the random seed; the same arguments write the same bytes.
      rows: about how many rows the ordinary shards hold (clean ones plus the cases).
      shards: the ordinary shards (DEFAULT_SHARDS: plain LF with blank lines, CRLF with a
        BOM, gzip, reordered header with two extra columns).
      cases: names from CASES to include (all by default).
      string_labels: labels are the strings "no"/"yes" instead of 0/1 (for a string
        column with `label.kind: string_lookup`).
      big_field_bytes: with > 0, one more shard (BIG_SHARD) of a few rows, one of them
        with a text field of this many bytes.
      rare_labels: with string labels, rows whose label is the rare class
        RARE_STRING_LABEL.
    """
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    shards = list(DEFAULT_SHARDS if shards is None else shards)
    cases = list(CASES if cases is None else cases)
    counter = iter(range(1, 10**9))
    next_id = lambda: next(counter)  # noqa: E731  ids start at 1: 0 is the empty id's output
    special = _case_rows(rng, cases, rows, next_id, string_labels)
    plain = [_Row(next_id(), rng, string_labels) for _ in range(max(0, rows - len(special)))]
    if string_labels:
        for row in plain[:rare_labels]:
            row.case = "rare_label"
            row.set("label", RARE_STRING_LABEL, RARE_STRING_LABEL)
    everything = special + plain
    everything = [everything[i] for i in rng.permutation(len(everything))]
    shares = np.array([s.share for s in shards], dtype=np.float64)
    bounds = np.round(np.cumsum(shares / shares.sum()) * len(everything)).astype(int)
    files: Dict[str, List[Record]] = {}
    start = 0
    for shard, stop in zip(shards, bounds):
        files[shard.name] = _write_shard(folder, shard, everything[start:stop], rng)
        start = stop
    if big_field_bytes > 0:
        big = [_Row(next_id(), rng, string_labels) for _ in range(3)]
        text = _big_text(rng, big_field_bytes)
        big[1].case = "big_field"
        big[1].set("text", text, text)
        files[BIG_SHARD] = _write_shard(folder, Shard(BIG_SHARD), big, rng)
    return MessyData(folder, files, big_field_bytes)


def reshard(data: MessyData, folder: str, seed: int, count: int = 5) -> MessyData:
    """The same records (the declared columns' cells, unchanged) written again in another
    order, in `count` other shards, LF line ends, the declared header order, the last
    shard gzipped: a row's split must not depend on where it sits."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    records = data.records
    order = rng.permutation(len(records))
    files: Dict[str, List[Record]] = {}
    for k in range(count):
        name = f"part-{k:05d}-of-{count:05d}.csv" + (".gz" if k == count - 1 else "")
        rows = []
        for i in order[k::count]:
            r = records[int(i)]
            row = _Row.__new__(_Row)
            row.case, row.reason = r.case, r.reason
            row.cells = {n: r.cells[n] for n in NAMES}
            row.values = dict(r.values) if r.values is not None else {}
            rows.append(row)
        files[name] = _write_shard(folder, Shard(name), rows, rng)
    return MessyData(folder, files, data.big_field_bytes)


# The reference reader -------------------------------------------------------------------
# Independent of how the shards were made: Python's csv module over the files as they are
# on disk. Python's csv (like pandas) would end a record at a bare CR, which the rules keep
# inside the field, so bare CRs are swapped for a private-use character before parsing
# and swapped back in the values.

_CR_STAND_IN = "\ue000"


@dataclasses.dataclass
class Outcome:
    """What a record must become: its file, first line, and typed values or reject reason."""

    file: str
    line: int
    values: Optional[Dict[str, Any]]
    reason: Optional[str]


def _typed(cell: str, column_type: str):
    """(value, reject reason) of one cell by the rules in this module's docstring."""
    if column_type == "string":
        return (cell if cell else None), None
    text = cell.strip()
    if not text:
        return None, None
    if column_type == "int":
        if not re.fullmatch(r"[+-]?[0-9]+", text):
            return None, "bad_int"
        value = int(text)
        return (value, None) if INT64_MIN <= value <= INT64_MAX else (None, "bad_int")
    if not re.fullmatch(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?"
                        r"|[+-]?(?i:nan|inf|infinity)", text):
        return None, "bad_float"
    value = float(text)
    return (value if math.isfinite(value) else None), None


def read_reference(folder: str, pattern: str = "part-*",
                   types: Optional[Dict[str, str]] = None, label: str = "label"
                   ) -> List[Outcome]:
    """Every record of the shards under `folder` with the outcome the rules give it."""
    types = dict(COLUMN_TYPES if types is None else types)
    csv.field_size_limit(1 << 30)  # the multi-megabyte field
    out = []
    for path in sorted(glob.glob(os.path.join(folder, pattern))):
        with open(path, "rb") as f:
            data = f.read()
        if path.endswith(".gz"):
            data = gzip.decompress(data)
        text = re.sub("\r(?!\n)", _CR_STAND_IN, data.decode("utf-8-sig"))
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        header = next(reader)
        previous = reader.line_num
        for cells in reader:
            line, previous = previous + 1, reader.line_num
            if not cells:
                continue  # a blank line holds no record
            row = dict(zip(header, (c.replace(_CR_STAND_IN, "\r") for c in cells)))
            assert len(row) == len(header) == len(cells), (path, line)
            values, reason = {}, None
            for name, column_type in types.items():
                values[name], problem = _typed(row[name], column_type)
                reason = reason or problem
            if reason is None and values[label] is None:
                reason = "missing_label"
            out.append(Outcome(os.path.basename(path), line, None if reason else values, reason))
    return out
