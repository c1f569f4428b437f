"""One CSV file -> chunks of well-formed records with their line numbers, and the rejects.

This is the structural half of CSV reading, in plain Python on bytes: it finds record
boundaries (a quoted field may hold line breaks), strips a BOM and Windows line endings,
finds the declared columns in the file's header, and rejects what cannot be a row: invalid
UTF-8, a wrong number of fields, an unterminated quote, a record longer than the limit, a
truncated compressed file. Typing the values is `csv_values`' job.

A record ends at \\n (or \\r\\n): a bare \\r anywhere else, quoted or not, is a character of
the value, as pandas and R write it. `split_fields` reads fields by that rule.

A block whose lines are all plain records (no quotes, the right field count, valid UTF-8)
is checked in one vectorized pass and passed on whole; otherwise each record costs a few
C-level bytes operations, and only records with quotes go through Python's csv module.
"""

import bisect
import collections
import csv
import dataclasses
import io
import re
import zlib
from typing import IO, Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from beam_pipeline.sources.dead_letter import RAW_CAP, Reject

HEAD = RAW_CAP + 1  # bytes kept of a record too large to hold: the dead letter shows it cut

BOM = b"\xef\xbb\xbf"


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where the declared columns are in a file's records.

    Attributes:
      width: the number of fields of every record (the header's, or the declared columns').
      positions: the field index of each declared column, in declared order.
      names: the name of each field (the header's, or the declared names).
    """

    width: int
    positions: Tuple[int, ...]
    names: Tuple[str, ...]

    @classmethod
    def positional(cls, column_names: Sequence[str]) -> "Layout":
        """A file without a header: the declared columns, in that order."""
        return cls(len(column_names), tuple(range(len(column_names))), tuple(column_names))


def header_layout(names: Sequence[str], column_names: Sequence[str]
                  ) -> Tuple[Optional[Layout], Optional[str]]:
    """(layout, None) when every declared column is in the header exactly once, else
    (None, what is wrong). The header may order them any way and hold other columns."""
    for name in column_names:
        found = sum(1 for n in names if n == name)
        if found != 1:
            return None, (f"has no column {name!r}" if not found else
                          f"has the column {name!r} {found} times")
    return Layout(len(names), tuple(list(names).index(n) for n in column_names),
                  tuple(names)), None


def header_names(header: bytes, delimiter: str) -> List[str]:
    """The column names of a header line: quotes, spaces and a BOM around them stripped."""
    header = header[len(BOM):] if header.startswith(BOM) else header
    try:
        fields = split_fields(header, delimiter)
    except csv.Error:
        fields = header.split(delimiter.encode())
    return [f.decode("utf-8", "replace").strip().strip('"').strip() for f in fields]


def split_fields(record: bytes, delimiter: str) -> List[bytes]:
    """The record's field values, as Python's csv module reads them (strict), except that a
    bare \\r is part of a value, as every CSV line of this reader (csv would end the record
    there). Bytes that are not UTF-8 come back unchanged.

    Raises:
      csv.Error: the quoting is broken.
    """
    text = record.decode("utf-8", "surrogateescape")
    cr = None
    if "\r" in text:
        cr = next(chr(c) for c in range(0xE000, 0xF900) if chr(c) not in text)
        text = text.replace("\r", cr)
    if len(text) > csv.field_size_limit():
        csv.field_size_limit(len(text))  # a record within max_record_bytes is readable
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True))
    if len(rows) != 1:
        raise csv.Error("the quoted field does not close where the record ends")
    fields = rows[0] if cr is None else [f.replace(cr, "\r") for f in rows[0]]
    return [f.encode("utf-8", "surrogateescape") for f in fields]


@dataclasses.dataclass
class Chunk:
    """Well-formed records (without line ends) and the line number each starts on."""

    records: List[bytes]
    lines: List[int]
    multiline: bool  # whether some record holds a line break inside quotes
    layout: Optional[Layout] = None  # None: the declared columns, in that order


STEP = 16 << 10  # compressed bytes decompressed per call
BLOCK_BYTES = 1 << 20  # stored bytes read per call
MAX_RECORD_BYTES = 64 << 20  # input.max_record_bytes' default
CHUNK_BYTES = 16 << 20  # a chunk is passed on once its records hold this many bytes
UNREADABLE = "unreadable_file"
TOO_LARGE = "record_too_large"


class Unreadable(Exception):
    """The bytes of a file end early or are corrupt."""


def blocks(stream: IO[bytes], gzipped: bool, size: Optional[int] = None) -> Iterator[bytes]:
    """The file's bytes in blocks, decompressing gzip (several members too) as it goes.

    Everything that decompresses is yielded before `Unreadable` is raised for a
    truncated or corrupt file, so the rows before the damage are kept.
    """
    decoder = zlib.decompressobj(wbits=31) if gzipped else None
    size = size or BLOCK_BYTES
    while True:
        block = stream.read(size)
        if decoder is None:
            if not block:
                return
            yield block
            continue
        if not block:
            if not decoder.eof:
                raise Unreadable("the compressed stream ends before its end marker "
                                 "(a truncated .gz file)")
            return
        while block:
            # Small steps: zlib drops a call's output when it raises, so a corrupt spot
            # costs at most the rows of one step.
            piece, block = block[:STEP], block[STEP:]
            try:
                out = decoder.decompress(piece)
            except zlib.error as e:
                raise Unreadable(f"corrupt compressed data: {e}") from None
            if out:
                yield out
            if decoder.eof:
                block = decoder.unused_data + block
            if decoder.eof and block:
                decoder = zlib.decompressobj(wbits=31)  # the next gzip member


@dataclasses.dataclass
class CleanRun:
    """Consecutive lines known to be well-formed records (see `_clean`)."""

    lines: List[bytes]
    size: int = 0  # their bytes, line ends included


def _clean(body: bytes, fields: int, delimiter: bytes) -> bool:
    """True when every line of `body` (lines joined by \\n) is a plain well-formed record:
    no quote, no carriage return, valid UTF-8, exactly `fields` fields on every line.

    One vectorized pass over the bytes instead of a few Python calls per line; any doubt
    returns False and the lines take the per-line path, which names what is wrong.
    """
    if fields < 2 or len(delimiter) != 1 or b'"' in body or b"\r" in body:
        return False  # with one field a line of spaces would count as a record here
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    data = np.frombuffer(body, np.uint8)
    ends = np.append(np.flatnonzero(data == 10), len(data))
    delimiters = np.concatenate(([0], np.cumsum(data == delimiter[0])))
    per_line = np.diff(delimiters[ends], prepend=0)
    return bool((per_line == fields - 1).all())


def _too_large(file: str, number: int, size: int, head: bytes, limit: int,
               at_least: bool = False) -> Reject:
    return Reject(file, number, TOO_LARGE,
                  f"the record is {'at least ' if at_least else ''}{size:,} bytes, more than "
                  f"input.max_record_bytes ({limit:,}); raise it to read such records", head)


def _longest_line(body: bytes) -> int:
    ends = np.flatnonzero(np.frombuffer(body, np.uint8) == 10)
    return int(np.diff(ends, prepend=-1, append=len(body)).max()) - 1


def _lines(chunks: Iterator[bytes], file: str, fields: int = 0, delimiter: bytes = b",",
           max_bytes: int = MAX_RECORD_BYTES,
           on_header: Optional[Callable[[bytes], Optional[int]]] = None
           ) -> Iterator[Tuple[int, object, Optional[Reject]]]:
    """(line number, line without its end, reject) for each physical line, or
    (first line number, CleanRun, None) for a block's lines that `_clean` passes.

    Lines end at \\n; a \\r right before it stays on the line: it is a Windows line end,
    dropped by `_records` unless the line end is inside a quoted field.
    With `on_header`, the first line is passed to it instead of yielded: it returns the
    field count of the file's records, or None to stop reading the file. A line longer
    than `max_bytes` is (number, its first bytes, a record_too_large reject): no more than
    about `max_bytes` of it is held, and the lines after it are read as usual. A read
    error ends the file with a reject carrying the partial last line, if any.
    """
    number = 0
    pending, size = [], 0  # the pieces of the line not ended yet, and their bytes
    skipped, head = 0, b""  # the bytes of a line over max_bytes being skipped, its start
    started = False
    while True:
        try:
            block = next(chunks, None)
        except (Unreadable, OSError, EOFError) as e:
            if skipped:
                number += 1
                yield number, head, _too_large(file, number, skipped, head, max_bytes, True)
            partial = b"".join(pending)
            yield number + 1, partial, Reject(file, number + 1, UNREADABLE, str(e), partial)
            return
        if block is None:
            break
        if not started:
            started = True
            if block.startswith(BOM):
                block = block[len(BOM):]
        if skipped:
            cut = block.find(b"\n")
            if cut < 0:
                skipped += len(block)
                continue
            number += 1
            yield number, head, _too_large(file, number, skipped + cut, head, max_bytes)
            skipped, block = 0, block[cut + 1:]
            if not block:
                continue
        cut = block.rfind(b"\n")
        if cut < 0:
            pending.append(block)
            size += len(block)
            if size > max_bytes:
                head = b""
                for piece in pending:  # the record's start, for the dead letter
                    head += piece[:HEAD - len(head)]
                if on_header is not None:  # a header that long: the file is not read
                    yield 1, head, _too_large(file, 1, size, head, max_bytes, True)
                    return
                skipped, pending, size = size, [], 0
            continue
        rest = block[cut + 1:]
        body = b"".join(pending + [block[:cut]]) if pending else block[:cut]
        pending, size = ([rest], len(rest)) if rest else ([], 0)
        if on_header is not None:
            first = body.find(b"\n")
            line, body = (body, None) if first < 0 else (body[:first], body[first + 1:])
            number, fields = 1, on_header(_strip_cr(line))
            on_header = None
            if fields is None:
                return
            if body is None:
                continue
        if (len(body) <= max_bytes or _longest_line(body) <= max_bytes) and \
                _clean(body, fields, delimiter):
            run = CleanRun(body.split(b"\n"), len(body) + 1)
            yield number + 1, run, None
            number += len(run.lines)
            continue
        for part in body.split(b"\n"):
            number += 1
            if len(part) - part.endswith(b"\r") > max_bytes:
                yield number, part[:HEAD], _too_large(
                    file, number, len(part) - part.endswith(b"\r"), part[:HEAD], max_bytes)
            else:
                yield number, part, None
    if skipped:
        number += 1
        yield number, head, _too_large(file, number, skipped, head, max_bytes)
    elif pending:
        last = b"".join(pending)
        if on_header is not None:
            on_header(_strip_cr(last))
        elif len(last) > max_bytes:
            yield number + 1, last[:HEAD], _too_large(file, number + 1, len(last),
                                                         last[:HEAD], max_bytes)
        else:
            yield number + 1, last, None


def _strip_cr(line: bytes) -> bytes:
    return line[:-1] if line.endswith(b"\r") else line


def _field_count(record: bytes, delimiter: str) -> Tuple[int, Optional[str]]:
    """Number of fields, and a problem with the quoting if there is one."""
    if b'"' not in record:
        return record.count(delimiter.encode()) + 1, None
    try:
        return len(split_fields(record, delimiter)), None
    except csv.Error as e:
        return -1, str(e)


FREE_LINES = 64  # a quoted field may span this many lines whatever they look like


def _records(lines: Iterator[Tuple[int, bytes, Optional[Reject]]], file: str,
             check: Callable[[bytes, int], Optional[Reject]],
             max_bytes: int = MAX_RECORD_BYTES,
             record_like: Callable[[bytes], bool] = lambda line: False
             ) -> Iterator[Tuple[int, bytes, bool, Optional[Reject]]]:
    """(first line, record, spans lines, reject) from physical lines.

    A line with an odd number of quotes opens a field that continues on the next lines
    until the quotes balance. If they never do (end of file, the record would pass
    `max_bytes`, or past FREE_LINES lines most of them are `record_like`: rows, not the
    text of one field), or the joined record fails `check`, the opening line is rejected
    alone and the lines after it are read again as records, so one stray quote costs one
    row, and two far apart do not swallow the rows between them. A clean run (all record
    like, no quote) is taken or given back whole, with the outcome of taking its lines
    one by one.
    """
    queue = collections.deque()
    source = iter(lines)
    while True:
        if queue:
            number, line, error = queue.popleft()
        else:
            item = next(source, None)
            if item is None:
                return
            number, line, error = item
        if error is not None:
            yield number, line, False, error
            if error.reason == UNREADABLE:
                return
            continue
        if isinstance(line, CleanRun):
            yield number, line, False, None
            continue
        if line.count(b'"') % 2 == 0:
            yield number, _strip_cr(line), False, None
            continue
        taken, size, closed, spanned, like = [], len(line), False, 0, 0
        while not closed:
            nxt = queue.popleft() if queue else next(source, None)
            if nxt is None:
                break
            taken.append(nxt)
            if nxt[2] is not None:
                break
            clean = isinstance(nxt[1], CleanRun)
            size += nxt[1].size if clean else 1 + len(nxt[1])
            spanned += len(nxt[1].lines) if clean else 1
            like += len(nxt[1].lines) if clean else record_like(nxt[1])
            if size > max_bytes or (spanned > FREE_LINES and 2 * like > spanned):
                break
            closed = not clean and nxt[1].count(b'"') % 2 == 1
        if closed:
            parts = [line]  # a \\r\\n inside the quoted field is part of its value
            for _, part, _ in taken:
                parts += part.lines if isinstance(part, CleanRun) else [part]
            record = b"\n".join(parts[:-1] + [_strip_cr(parts[-1])])
            if check(record, number) is None:
                yield number, record, True, None
                continue
        yield number, line, False, Reject(
            file, number, "unterminated_quote",
            "a quoted field is not closed (within the line, or the next lines before "
            f"they look like rows or pass input.max_record_bytes: {max_bytes:,})",
            _strip_cr(line))
        queue.extendleft(reversed(taken))


def read_records(stream: IO[bytes], file: str, column_names: Sequence[str], delimiter: str = ",",
                 header: bool = True, gzipped: bool = False, chunk_records: int = 8192,
                 max_record_bytes: int = MAX_RECORD_BYTES
                 ) -> Iterator[Tuple[Optional[Chunk], List[Reject]]]:
    """Splits a CSV byte stream into chunks of records with one field per file column.

    Args:
      stream: the file's bytes as stored.
      file: its path, for the rejects.
      column_names: the declared columns.
      gzipped: whether to decompress them.
      header: the first line is a header: the declared columns are found in it by name
        (in any order; other columns are not read), and every record has its number of
        fields. Without one, the records are the declared columns in order. (A header
        without the declared columns fails before the pipeline; should the file have
        changed since, it is one `bad_header` reject and the file is not read.)
      chunk_records: records per chunk (fewer when they hold CHUNK_BYTES).
      max_record_bytes: a longer record is a `record_too_large` reject.

    Yields:
      (chunk or None, rejects found since the previous chunk). Blank lines are skipped:
      they hold no row.
    """
    layout = None if header else Layout.positional(column_names)
    bad_header: List[Reject] = []

    def on_header(line: bytes) -> Optional[int]:
        nonlocal layout
        names = header_names(line, delimiter)
        layout, problem = header_layout(names, column_names)
        if layout is None:
            bad_header.append(Reject(file, 1, "bad_header", f"the header {problem} (it is "
                                     f"{names}); the file is not read", line))
            return None
        return layout.width

    def check(record: bytes, number: int) -> Optional[Reject]:
        return _check(record, number, file, layout, delimiter)

    separator = delimiter.encode()

    def record_like(line: bytes) -> bool:
        return b'"' not in line and line.count(separator) == layout.width - 1

    physical = _lines(blocks(stream, gzipped), file, 0 if header else len(column_names),
                      delimiter.encode(), max_record_bytes, on_header if header else None)
    records, lines, rejects, multiline, size = [], [], [], False, 0
    for number, record, spans, reject in _records(physical, file, check, max_record_bytes,
                                                  record_like):
        if isinstance(record, CleanRun):
            records += record.lines
            lines += range(number, number + len(record.lines))
            size += record.size
        else:
            if reject is None and not record.strip():
                continue
            if reject is None and not spans:  # a record that spans lines was checked whole
                reject = check(record, number)
            if reject is not None:
                # An unreadable file tail is one reject even with no partial line: the run
                # must show that the file was cut, though how many rows it held is unknown.
                rejects.append(reject)
                continue
            records.append(record)
            lines.append(number)
            multiline = multiline or spans
            size += len(record) + 1
        if len(records) >= chunk_records or size >= CHUNK_BYTES:
            yield Chunk(records, lines, multiline, layout), rejects
            records, lines, rejects, multiline, size = [], [], [], False, 0
    rejects += bad_header
    if records or rejects:
        yield (Chunk(records, lines, multiline, layout) if records else None), rejects


def _field_starts(record: bytes, delimiter: str) -> List[int]:
    """The offset where each field of the record starts (delimiters in quotes skipped)."""
    starts, quoted = [0], False
    for match in re.finditer(b'"|' + re.escape(delimiter.encode()), record):
        if match.group() == b'"':
            quoted = not quoted
        elif not quoted:
            starts.append(match.end())
    return starts


def _invalid_utf8(record: bytes, line: int, file: str, layout: Layout,
                  delimiter: str) -> Optional[Reject]:
    """The reject of a record with bytes that are not UTF-8 in a column the config reads
    (or past the last one), or None when they are all in columns it does not read."""
    starts = _field_starts(record, delimiter)
    read = set(layout.positions)
    at = 0
    while True:
        try:
            record[at:].decode("utf-8")
            return None
        except UnicodeDecodeError as e:
            byte = at + e.start
            field = bisect.bisect_right(starts, byte) - 1
            if field in read or field >= layout.width:
                where = (f"column {layout.names[field]!r}" if field < len(layout.names)
                         else f"field {field + 1}")
                return Reject(file, line, "invalid_utf8",
                              f"{where}: byte {byte + 1} of the line is not valid UTF-8",
                              record)
            at += e.end


def _check(record: bytes, line: int, file: str, layout: Layout,
           delimiter: str) -> Optional[Reject]:
    """The reason a record cannot be a row, or None."""
    try:
        record.decode("utf-8")
    except UnicodeDecodeError:
        reject = _invalid_utf8(record, line, file, layout, delimiter)
        if reject is not None:
            return reject
    count, problem = _field_count(record, delimiter)
    if problem is not None:
        return Reject(file, line, "bad_quoting", problem, record)
    if count != layout.width:
        header = " (the header's)" if layout.width != len(layout.positions) else ""
        return Reject(file, line, "wrong_field_count",
                      f"expected {layout.width} fields{header}, found {count}", record)
    return None
