"""A corpus of dirty CSV files, one per case, each with the outcome it must have.

Every case is a file in one folder, with its own id range, so one pipeline run covers
them all. A case lists its lines as valid rows (by id) or bad records (with the reject
reason they must get); `expected()` derives the line numbers, so the test asserts where
each reject is, not just how many there are.
"""

import dataclasses
import gzip
from typing import List, Optional, Tuple, Union

COLUMNS = [
    {"name": "id", "type": "int", "required": True},
    {"name": "x", "type": "float"},
    {"name": "n", "type": "int"},
    {"name": "city", "type": "string"},
    {"name": "note", "type": "string"},
    {"name": "label", "type": "int"},
]
HEADER = b"id,x,n,city,note,label"
FEATURES = {
    "id": {"kind": "passthrough"},
    "x": {"kind": "normalization", "missing_indicator": True},
    "n": {"kind": "integer_lookup"},
    "city": {"kind": "string_lookup"},
    "note": {"kind": "text_vectorization", "output_sequence_length": 6},
}


def values(i: int) -> List[str]:
    """The clean values of row `i` (as CSV text, before quoting)."""
    return [str(i), f"{i * 0.37 - 5:.3f}", str(i % 7), ["a", "b", "ç", "d d"][i % 4],
            f"note {i % 5} word{i % 3}", str(i % 2)]


def line(i: int, note: Optional[str] = None) -> bytes:
    v = values(i)
    if note is not None:
        v[4] = note
    return ",".join(f'"{c}"' if any(ch in c for ch in ',"\n') else c for c in v).encode()


@dataclasses.dataclass
class Bad:
    raw: bytes
    reason: str


@dataclasses.dataclass
class Ok:
    """A valid row; `raw` overrides its text (still valid, e.g. a quoted newline)."""
    id: int
    raw: Optional[bytes] = None


@dataclasses.dataclass
class Blank:
    """An empty line: no row, no reject."""
    raw: bytes = b""


@dataclasses.dataclass
class Case:
    name: str
    entries: List[Union[Ok, Bad, Blank]]
    header: bool = True
    crlf: bool = False
    bom: bool = False
    trailing_newline: bool = True
    gzip: bool = False
    truncate: int = 0  # bytes cut from the end of the (gzipped) file
    raw_file: Optional[bytes] = None  # the whole file, for empty/odd files

    @property
    def filename(self) -> str:
        return f"case_{self.name}.csv" + (".gz" if self.gzip else "")

    def content(self) -> bytes:
        if self.raw_file is not None:
            return self.raw_file
        lines = ([HEADER] if self.header else []) + [self.raw(e) for e in self.entries]
        end = b"\r\n" if self.crlf else b"\n"
        data = end.join(lines) + (end if self.trailing_newline else b"")
        if self.bom:
            data = b"\xef\xbb\xbf" + data
        if self.gzip:
            data = gzip.compress(data, mtime=0)
        return data[:len(data) - self.truncate] if self.truncate else data

    def expected(self) -> Tuple[List[int], List[Tuple[int, str]]]:
        """(valid ids, [(line, reason)] of the rejects)."""
        ids, rejects, number = [], [], 2 if self.header else 1
        for e in self.entries:
            if isinstance(e, Bad):
                rejects.append((number, e.reason))
            elif isinstance(e, Ok):
                ids.append(e.id)
            number += self.raw(e).count(b"\n") + 1
        return ids, rejects

    @staticmethod
    def raw(entry) -> bytes:
        """The entry's text in the file (a valid row's own line unless given)."""
        if isinstance(entry, Ok):
            return entry.raw if entry.raw is not None else line(entry.id)
        return entry.raw


def _ok(base: int, n: int = 3) -> List[Ok]:
    return [Ok(base + k) for k in range(n)]


def cases() -> List[Case]:
    """Every case; ids of case k are in [100 k, 100 k + 100)."""
    out = []

    def add(name, entries_fn, **kw):
        base = 100 * (len(out) + 1)
        out.append(Case(name, entries_fn(base), **kw))

    add("clean", lambda b: _ok(b, 5))
    add("too_few_fields", lambda b: _ok(b, 2) + [Bad(b"9001,1.0,2,a", "wrong_field_count")]
        + _ok(b + 2, 2))
    add("too_many_fields", lambda b: _ok(b, 2)
        + [Bad(line(b + 50) + b",extra", "wrong_field_count")] + _ok(b + 2, 1))
    add("unparsable_float", lambda b: _ok(b, 2)
        + [Bad(f"{b + 50},abc,1,a,n,0".encode(), "bad_float")] + _ok(b + 2, 1))
    add("unparsable_int", lambda b: [Bad(f"{b + 50},1.5,seven,a,n,0".encode(), "bad_int")]
        + _ok(b, 2))
    add("float_in_int_column", lambda b: _ok(b, 1)
        + [Bad(f"{b + 50},1.5,3.5,a,n,0".encode(), "bad_int")] + _ok(b + 1, 1))
    add("int_overflow", lambda b: _ok(b, 1)
        + [Bad(f"{b + 50},1.5,99999999999999999999,a,n,0".encode(), "bad_int")] + _ok(b + 1, 1))
    add("invalid_utf8", lambda b: _ok(b, 1)
        + [Bad(f"{b + 50},1.5,1,".encode() + b"caf\xe9,n,0", "invalid_utf8")] + _ok(b + 1, 2))
    add("latin1_lines", lambda b: [Bad(f"{b + 50},1,1,".encode() + b"\xc7a,n,0", "invalid_utf8"),
                                   Bad(f"{b + 51},1,1,".encode() + b"\xe0,n,0", "invalid_utf8")]
        + _ok(b, 1))
    add("unterminated_quote_middle", lambda b: _ok(b, 1)
        + [Bad(f'{b + 50},1.5,1,a,"never closed,0'.encode(), "unterminated_quote")] + _ok(b + 1, 3))
    add("unterminated_quote_last_line", lambda b: _ok(b, 2)
        + [Bad(f'{b + 50},1.5,1,a,"open to the end,0'.encode(), "unterminated_quote")])
    add("stray_quote_in_field", lambda b: _ok(b, 1)
        + [Bad(f'{b + 50},1.5,1,ab"c,n,0'.encode(), "unterminated_quote")] + _ok(b + 1, 2))
    add("quote_then_text", lambda b: _ok(b, 1)
        + [Bad(f'{b + 50},1.5,1,"q"q,n,0'.encode(), "bad_quoting")] + _ok(b + 1, 1))
    add("quoted_newline_valid", lambda b: [Ok(b, line(b, note="two\nlines")), Ok(b + 1),
                                           Ok(b + 2, line(b + 2, note="a\n\nb c"))])
    add("quoted_delimiter_and_escaped_quote", lambda b: [
        Ok(b, line(b, note='comma, and ""quotes""')), Ok(b + 1)])
    add("empty_file", lambda b: [], raw_file=b"")
    add("header_only", lambda b: [])
    add("header_only_no_newline", lambda b: [], trailing_newline=False)
    add("windows_line_endings", lambda b: _ok(b, 3), crlf=True)
    add("byte_order_mark", lambda b: _ok(b, 2), bom=True)
    add("no_trailing_newline", lambda b: _ok(b, 2), trailing_newline=False)
    add("blank_lines", lambda b: [Ok(b), Blank(), Ok(b + 2), Blank(b"  ")])
    add("nan_and_infinity_are_missing", lambda b: [
        Ok(b, f"{b},nan,1,a,n,0".encode()), Ok(b + 1, f"{b + 1},-inf,1,a,n,0".encode()),
        Ok(b + 2, f"{b + 2},Infinity,1,a,n,0".encode()), Ok(b + 3)])
    add("required_value_missing", lambda b: _ok(b, 1)
        + [Bad(b",1.5,1,a,n,0", "missing_required")] + _ok(b + 1, 1))
    add("optional_values_missing", lambda b: [Ok(b, f"{b},,,,,{b % 2}".encode()), Ok(b + 1)])
    # The label is never optional: a row without one is a dead letter, not class 0.
    add("label_missing", lambda b: _ok(b, 1) + [Bad(f"{b + 1},1.5,1,a,n,".encode(),
                                                     "missing_label")] + _ok(b + 2, 1))
    add("spaces_around_numbers", lambda b: [Ok(b, f" {b} , 1.5 ,3,a,n,1".encode())])
    add("gzip_valid", lambda b: _ok(b, 3), gzip=True)
    add("gzip_truncated", lambda b: _ok(b, 60), gzip=True, truncate=30)
    return out
