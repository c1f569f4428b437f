"""CSV files as real exports write them: bare CRs, huge fields, headers in another order.

The rules under test (see the README, "When data is bad"):
  * a record ends at \\n or \\r\\n; a bare \\r anywhere else is a character of the value
    (pandas and R write it unquoted), and a \\r\\n inside quotes is part of the value too;
  * a record up to `input.max_record_bytes` is read whatever its size; a longer one is a
    `record_too_large` dead letter, and the lines after it are read as usual;
  * with a header, the declared columns are found by name in each file (any order, other
    columns not read); a declared column absent or twice is a ConfigError before the job.

Most tests call the reader directly; one module-scoped pipeline run reads a folder of such
files and is checked value by value against an independent reference reader.
"""

import csv
import glob
import gzip
import io
import json
import os
import re
import tracemalloc

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from beam_pipeline.config import Column, ConfigError, parse_config
from beam_pipeline.sources import csv_records, csv_values
from beam_pipeline.sources.csv_records import Chunk, read_records
from beam_pipeline.sources.csv_values import to_record_batch
from beam_pipeline.sources.dead_letter import RAW_CAP
from tests import reference
from tests.conftest import write_config

COLUMNS = [Column("id", "int"), Column("city", "string"), Column("text", "string"),
           Column("x", "float"), Column("label", "int")]
NAMES = [c.name for c in COLUMNS]
HEADER = b"id,city,text,x,label"
MiB = 1 << 20


def _read(data, header=True, max_record_bytes=64 * MiB, gzipped=False, columns=COLUMNS):
    """(rows as dicts of plain values, [(line, reason, detail)]) of a file's bytes."""
    rows, rejects = [], []
    for chunk, bad in read_records(io.BytesIO(data), "f.csv", [c.name for c in columns],
                                   header=header, gzipped=gzipped,
                                   max_record_bytes=max_record_bytes):
        rejects += bad
        if chunk is not None:
            batch, bad_values = to_record_batch(chunk, "f.csv", columns, ",")
            rejects += bad_values
            rows += [{k: (v[0] if v else None) for k, v in row.items()}
                     for row in batch.to_pylist()]
    return rows, [(r.line, r.reason, r.detail) for r in rejects]


def _reasons(rejects):
    return [(line, reason) for line, reason, _ in rejects]


# Bare CRs ------------------------------------------------------------------------------

PANDAS_FRAME = pd.DataFrame({
    "id": [1, 2, 3, 4, 5, 6],
    "city": ["a\rb", "paris", "x", "y", "z", "w"],
    "text": ["pandas\rbare", "two\r\rcrs", "ends with cr\r", "quoted, with cr\r and comma",
             "crlf\r\ninside quotes", "plain"],
    "x": ["0.5", "1.5", "2.5", "3.5", "4.5", "5.5"],
    "label": [0, 1, 0, 1, 0, 1],
})


def _pandas_bytes():
    # pandas quotes a field with the delimiter, a quote or a \n, not one with a bare \r.
    return PANDAS_FRAME.to_csv(index=False, lineterminator="\n").encode()


def test_pandas_file_with_bare_crs_reads_every_value_unchanged():
    data = _pandas_bytes()
    assert b"1,a\rb,pandas\rbare,0.5,0\n" in data  # unquoted bare CRs, as pandas writes them
    rows, rejects = _read(data)
    assert rejects == []
    # The reference: pandas with lineterminator="\n", which (like the rule) ends a record at
    # \n only. Its default C parser would end one at a bare \r too, so it is not used.
    ref = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, lineterminator="\n")
    assert ref.to_dict("records") == PANDAS_FRAME.astype(str).to_dict("records")
    assert [(r["id"], r["city"].decode(), r["text"].decode(), str(r["x"]), r["label"])
            for r in rows] == [(int(r["id"]), r["city"], r["text"], r["x"], int(r["label"]))
                               for r in ref.to_dict("records")]


def test_a_bare_cr_ends_no_record_and_shifts_no_line_number():
    data = HEADER + b"\n1,a,x\ry,1,0\n2,b\rc\r,\"q\r\",2,1\n3,c,short\rrow\n4,d,e,4,0\n"
    rows, rejects = _read(data)
    assert [(r["id"], r["city"], r["text"]) for r in rows] == [
        (1, b"a", b"x\ry"), (2, b"b\rc\r", b"q\r"), (4, b"d", b"e")]
    assert rejects == [(4, "wrong_field_count", "expected 5 fields, found 3")]


def test_crlf_file_drops_its_line_ends_but_not_the_crs_in_values():
    data = (b"\xef\xbb\xbf" + HEADER + b"\r\n1,a,bare\rcr,1,0\r\n2,b,\"in quotes\r\nbreak\",2,1"
            b"\r\n3,c\r,d,3,0\r\n")
    rows, rejects = _read(data)
    assert rejects == []
    assert [(r["id"], r["city"], r["text"], r["label"]) for r in rows] == [
        (1, b"a", b"bare\rcr", 0), (2, b"b", b"in quotes\r\nbreak", 1), (3, b"c\r", b"d", 0)]


def test_a_chunk_arrow_refuses_is_read_record_by_record():
    """A record that passed the structural checks but that pyarrow cannot read costs
    its own row, with its line and a reason, never the job."""
    records = [b"1,a,b,1,0", b"2,a,b", b"3,a,\"c\",3,1"]  # the second: 3 fields of 5
    chunk = Chunk(records, [2, 5, 6], False)
    batch, rejects = to_record_batch(chunk, "f.csv", COLUMNS, ",")
    assert batch.column("id").to_pylist() == [[1], [3]]
    assert [(r.line, r.reason) for r in rejects] == [(5, "unparsable_record")]
    assert "Expected 5 columns, got 3" in rejects[0].detail
    assert rejects[0].raw == b"2,a,b"


def test_arrow_reading_another_row_count_falls_back_to_record_by_record(monkeypatch):
    real = csv_values._read
    calls = []

    def short(data, *args):
        table = real(data, *args)
        calls.append(table.num_rows)
        return table.slice(1) if len(calls) == 1 else table  # the whole chunk: a row short

    monkeypatch.setattr(csv_values, "_read", short)
    chunk = Chunk([b"1,a,b,1,0", b"2,a,b,2,1"], [2, 3], False)
    batch, rejects = to_record_batch(chunk, "f.csv", COLUMNS, ",")
    assert batch.column("id").to_pylist() == [[1], [2]] and rejects == []
    assert calls == [2, 1, 1]


# Large records --------------------------------------------------------------------------

def test_a_quoted_field_of_several_megabytes_is_read():
    value = (b'word, ""quoted"" ' * (3 * MiB // 17)) + b"\nend"
    data = HEADER + b"\n1,a,\"" + value + b"\",1.5,1\n2,b,after,2.5,0\n"
    rows, rejects = _read(data)
    assert rejects == []
    assert rows[0]["text"] == value.replace(b'""', b'"') and rows[1]["text"] == b"after"


@pytest.mark.parametrize("gzipped", [False, True])
@pytest.mark.parametrize("block", [64, 1 << 20])
def test_a_record_over_the_limit_is_rejected_and_the_next_lines_are_read(
        monkeypatch, gzipped, block):
    monkeypatch.setattr(csv_records, "BLOCK_BYTES", block)
    long = b"2,b," + b"y" * 5000 + b",2,0"
    data = (HEADER + b"\n1,a,before,1,1\n" + long + b"\n3,c,after,3,0\n4,d,\"q\nq\",4,1\n"
            + b"5,e," + b"z" * 3000)  # the last one over the limit too, and no line end
    if gzipped:
        data = gzip.compress(data)
    rows, rejects = _read(data, max_record_bytes=1000, gzipped=gzipped)
    assert [(r["id"], r["text"]) for r in rows] == [(1, b"before"), (3, b"after"),
                                                   (4, b"q\nq")]
    assert _reasons(rejects) == [(3, "record_too_large"), (7, "record_too_large")]
    assert f"{len(long):,} bytes" in rejects[0][2] and "input.max_record_bytes (1,000)" in \
        rejects[0][2]


def test_a_record_over_the_limit_is_not_held_in_memory():
    data = HEADER + b"\n1,a,b,1,0\n2,a," + b"y" * (40 * MiB) + b",2,0\n3,c,d,3,1\n"
    stream = io.BytesIO(data)
    tracemalloc.start()
    try:
        out = [(c and c.lines, [(r.line, r.reason, len(r.raw)) for r in bad])
               for c, bad in read_records(stream, "f.csv", NAMES, max_record_bytes=MiB)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out == [([2, 4], [(3, "record_too_large", RAW_CAP + 1)])]  # shown cut at RAW_CAP
    assert peak < 6 * MiB, peak  # about the limit plus a block, not the 40 MB line


def test_a_quoted_field_with_hundreds_of_line_breaks_is_read():
    value = b"\n".join(b"line %d of a long review" % i for i in range(300))
    data = HEADER + b"\n1,a,\"" + value + b"\",1,0\n2,b,c,2,1\n"
    rows, rejects = _read(data)
    assert rejects == [] and rows[0]["text"] == value and rows[1]["id"] == 2


def test_two_stray_quotes_far_apart_do_not_swallow_the_rows_between():
    middle = b"".join(b"%d,c,t,1,0\n" % i for i in range(10, 210))
    data = HEADER + b'\n5,a,"unclosed,1,0\n' + middle + b'9,b,oops",1,1\n'
    rows, rejects = _read(data)
    assert [r["id"] for r in rows] == list(range(10, 210))
    assert _reasons(rejects) == [(2, "unterminated_quote"), (203, "unterminated_quote")]


# Headers by name ------------------------------------------------------------------------

def test_header_columns_are_found_by_name_and_extra_columns_are_not_read():
    data = (b"extra,label,text,x,junk,city,id\n"
            b"\xff\xfe,1,one,0.5,\"a,b\",c1,31\n"           # not UTF-8 in a column not read
            b"e,0,two,not a number?,,c2,32\n"                # a bad float in a column read
            b"e,0,three,2.5,,c\xe93,33\n"                    # not UTF-8 in a column read
            b"1,few\n")
    rows, rejects = _read(data)
    assert rows == [{"id": 31, "city": b"c1", "text": b"one", "x": 0.5, "label": 1}]
    assert sorted(rejects) == [
        (3, "bad_float", "column 'x': 'not a number?' is not a number"),
        (4, "invalid_utf8", "column 'city': byte 17 of the line is not valid UTF-8"),
        (5, "wrong_field_count", "expected 7 fields (the header's), found 2")]


@pytest.mark.parametrize("header,problem", [
    (b"id,city,text,x", "has no column 'label'"),
    (b"id,city,text,x,label,city", "has the column 'city' 2 times"),
])
def test_a_header_without_a_declared_column_reads_no_row(header, problem):
    rows, rejects = _read(header + b"\n1,a,b,1,0,c\n")
    assert rows == [] and [(r[0], r[1]) for r in rejects] == [(1, "bad_header")]
    assert problem in rejects[0][2]


def test_header_names_lose_bom_quotes_and_spaces():
    assert csv_records.header_names(b'\xef\xbb\xbf"id", city ,"te,xt"', ",") == [
        "id", "city", "te,xt"]


# Preflight and config --------------------------------------------------------------------

def _preflight(tmp_path, files, **input_options):
    from beam_pipeline.job import preprocess
    from beam_pipeline.config import load_config
    data = tmp_path / "data"
    data.mkdir()
    for name, content in files.items():
        (data / name).write_bytes(content)
    config = _config([{"file_pattern": str(data / "*.csv"), **input_options}],
                     str(tmp_path / "out"))
    preprocess.preflight(load_config(write_config(tmp_path / "c.yaml", config)),
                         overwrite=False)


def test_preflight_accepts_headers_in_any_order_with_extra_columns(tmp_path):
    _preflight(tmp_path, {"a.csv": HEADER + b"\n1,a,b,1,0\n",
                          "b.csv": b"more,label,x,text,id,city\n,0,1,b,2,a\n"})


def test_preflight_names_the_file_and_the_absent_column(tmp_path):
    with pytest.raises(ConfigError, match=r"b\.csv has no column 'label'"):
        _preflight(tmp_path, {"a.csv": HEADER + b"\n", "b.csv": b"id,city,text,x,lbl\n"})


def test_preflight_refuses_a_column_named_twice(tmp_path):
    with pytest.raises(ConfigError, match=r"a\.csv has the column 'x' 2 times"):
        _preflight(tmp_path, {"a.csv": HEADER + b",x\n"})


def test_preflight_still_suggests_the_delimiter(tmp_path):
    with pytest.raises(ConfigError, match=r"has no column 'id'.*on ';': set input\.delimiter"):
        _preflight(tmp_path, {"a.csv": b"label;id;x;city;text;extra\n"})


@pytest.mark.parametrize("value,message", [
    (0, "input.max_record_bytes: expected a positive integer, got 0"),
    ("1MB", "input.max_record_bytes: expected int, got '1MB'"),
])
def test_max_record_bytes_is_validated(value, message):
    raw = _config([{"file_pattern": "x.csv", "max_record_bytes": value}], "out")
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(dict(raw, input=raw["input"][0]))
    assert parse_config(dict(raw, input={"file_pattern": "x.csv"})).inputs[0] \
        .max_record_bytes == 64 * MiB


# Number cells that crashed the typing step ------------------------------------------------

def test_int64_edges_a_plus_sign_and_float_overflow():
    data = (HEADER + b"\n9223372036854775807,a,b,1e999,+17\n-9223372036854775808,a,b,-1e999,1"
            b"\n9223372036854775808,a,b,1,0\n")
    rows, rejects = _read(data)
    assert [(r["id"], r["x"], r["label"]) for r in rows] == [
        (2**63 - 1, None, 17), (-2**63, None, 1)]
    assert _reasons(rejects) == [(4, "bad_int")]


# One pipeline run over a folder of such files ---------------------------------------------

STAND_IN = "\ue000"


def _reference(path, header, limit):
    """(rows {id: values}, [(line, reason)]) of one file by Python's csv module.

    csv (like pandas' default parser) would end a record at a bare \\r, which the rule
    keeps inside the value, so bare CRs are swapped for a private-use character while
    parsing and put back in the values. A record's line is counted from csv's line_num.
    """
    with open(path, "rb") as f:
        raw = f.read()
    physical = raw.split(b"\n")
    text = raw.decode("utf-8", "surrogateescape").lstrip("\ufeff")
    reader = csv.reader(io.StringIO(re.sub("\r(?!\n)", STAND_IN, text), newline=""))
    rows, rejects, where, start = {}, [], None, 1
    for fields in reader:
        line, start = start, reader.line_num + 1
        fields = [f.replace(STAND_IN, "\r") for f in fields]
        if where is None:
            where = {n: fields.index(n) for n in NAMES} if header else \
                {n: i for i, n in enumerate(NAMES)}
            width = len(fields)
            if header:
                continue
        size = len(b"\n".join(physical[line - 1:reader.line_num]).rstrip(b"\r"))
        if size > limit:
            rejects.append((line, "record_too_large"))
        elif len(fields) != width:
            rejects.append((line, "wrong_field_count"))
        else:
            v = {n: fields[i] for n, i in where.items()}
            rows[int(v["id"])] = {"id": int(v["id"]), "x": np.float32(v["x"]),
                                  "label": int(v["label"]),
                                  "city": v["city"].encode("utf-8", "surrogateescape"),
                                  "text": v["text"].encode("utf-8", "surrogateescape")}
    return rows, rejects


def _config(inputs, out):
    return {
        "input": [{"max_rejected_fraction": 1.0, **i} for i in inputs],
        "columns": [{"name": c.name, "type": c.type} for c in COLUMNS],
        "label": {"column": "label"},
        "split": {"eval_fraction": 0.3, "key": "id"},
        # passthrough keeps the strings as they were read, so the output shows every value
        "features": {n: {"kind": "passthrough"} for n in ("id", "city", "text", "x")},
        "output": {"dir": out},
    }


BIG_VALUE = (b'an 8 MB field, with ""quotes"", commas\nand line breaks ' * (8 * MiB // 50))


def _files():
    windows = (b"\xef\xbb\xbfid,city,text,x,label\r\n"
               b"11,r,plain text,1.5,0\r\n"
               b"12,r,bare\rcr unquoted,2.5,1\r\n"
               b"13,r,\"quoted\rcr, and comma\",3.5,0\r\n"
               b"14,r,\"quoted line\r\nbreak\",4.5,1\r\n"
               b"15,r\rx,short\r\n"
               b"16,r,after,6.5,0\r\n")
    reordered = (b"extra_a,label,text,x,extra_b,city,id\n"
                 b"junk,1,reordered one,0.5,\"x,y\",c1,31\n"
                 b"\xff\xfe,0,reordered two,1.5,,c2,32\n"
                 b",1,\"reordered, three\",2.5,nan,c3,33\n"
                 b"1,too,few\n")
    headerless = b"41,h,no header\rhere,1.25,1\n42,h,second,2.25,0\n"
    too_large = (b"51,t,small before,1.0,0\n52,t," + b"y" * (2 * MiB) + b",2.0,1\n"
                 b"53,t,small after,3.0,0\n55,t," + b"z" * (MiB + 10) + b",5.0,1")
    return {
        "data/pandas_cr.csv": _pandas_bytes(),
        "data/windows_cr.csv": windows,
        "data/big.csv": HEADER + b"\n21,big,\"" + BIG_VALUE + b"\",1.0,1\n22,big,after,2.0,0\n",
        "data/reordered.csv": reordered,
        "nohead/headerless.csv": headerless,
        "nohead/too_large.csv": too_large,
    }


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """One run: input[0] data/*.csv with headers (default max_record_bytes), input[1]
    nohead/*.csv without headers and max_record_bytes 1 MiB."""
    from beam_pipeline.job import preprocess
    from beam_pipeline.config import load_config
    root = tmp_path_factory.mktemp("real_data")
    for name, content in _files().items():
        (root / name).parent.mkdir(exist_ok=True)
        (root / name).write_bytes(content)
    out = str(root / "out")
    inputs = [{"file_pattern": str(root / "data" / "*.csv")},
              {"file_pattern": str(root / "nohead" / "*.csv"), "header": False,
               "max_record_bytes": MiB}]
    path = write_config(root / "config.yaml", _config(inputs, out))
    summary = preprocess.run(load_config(path), preprocess.pipeline_options([]))
    rejected = []
    for p in sorted(glob.glob(os.path.join(out, "rejected", "*.jsonl"))):
        with open(p, encoding="utf-8") as f:
            rejected += [json.loads(line) for line in f]
    written = {}
    for split in ("train", "eval"):
        columns = reference.read_transformed(out, split)
        for i, row_id in enumerate(columns["id"]):
            written[int(row_id)] = {k: v[i] for k, v in columns.items()}
    expected_rows, expected_rejects = {}, []
    for name in _files():
        header, limit = (False, MiB) if name.startswith("nohead/") else (True, 64 * MiB)
        rows, rejects = _reference(str(root / name), header, limit)
        expected_rows.update(rows)
        expected_rejects += [(os.path.basename(name), line, why) for line, why in rejects]
    return summary, rejected, written, expected_rows, sorted(expected_rejects)


def test_every_row_read_has_exactly_its_values(real_run):
    _, _, written, expected, _ = real_run
    assert sorted(written) == sorted(expected)
    assert len(expected) == 6 + 5 + 2 + 3 + 2 + 2
    for row_id, want in expected.items():
        got = written[row_id]
        assert {k: got[k] for k in want} == want, row_id
    assert written[21]["text"] == BIG_VALUE.replace(b'""', b'"')
    assert written[12]["text"] == b"bare\rcr unquoted" and written[1]["city"] == b"a\rb"
    assert written[14]["text"] == b"quoted line\r\nbreak"


def test_rejects_are_exactly_the_bad_records_at_their_lines(real_run):
    _, rejected, _, _, expected = real_run
    assert sorted((os.path.basename(r["file"]), r["line"], r["reason"]) for r in rejected) \
        == expected == [("reordered.csv", 5, "wrong_field_count"),
                        ("too_large.csv", 2, "record_too_large"),
                        ("too_large.csv", 4, "record_too_large"),
                        ("windows_cr.csv", 7, "wrong_field_count")]
    big = next(r for r in rejected if r["line"] == 2)
    size = len(b"52,t,") + 2 * MiB + len(b",2.0,1")
    assert f"{size:,} bytes" in big["detail"] and "(1,048,576)" in big["detail"]
    assert big["raw_truncated"] and big["raw"].startswith("52,t,yyy")


def test_read_is_written_plus_rejected(real_run):
    summary, rejected, written, _, _ = real_run
    rows = summary["rows"]
    assert rows["read"] == sum(rows["written"].values()) + rows["rejected"]
    assert rows["rejected"] == len(rejected) == 4
    assert sum(rows["written"].values()) == len(written)
    assert summary["status"] == "complete"
