"""One CSV file -> chunks of well-formed records with their line numbers, and the rejects.

This is the structural half of CSV reading, in plain Python on bytes: it finds record
boundaries (a quoted field may hold line breaks), strips a BOM and Windows line endings,
and rejects what cannot be a row: invalid UTF-8, a wrong number of fields, an unterminated
quote, a truncated compressed file. Typing the values is `csv_values`' job.

A block whose lines are all plain records (no quotes, the right field count, valid UTF-8)
is checked in one vectorized pass and passed on whole; otherwise each record costs a few
C-level bytes operations, and only records with quotes go through Python's csv module.
"""

import collections
import csv
import dataclasses
import io
import zlib
from typing import IO, Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from beam_pipeline.sources.dead_letter import Reject

BOM = b"\xef\xbb\xbf"


@dataclasses.dataclass
class Chunk:
    """Well-formed records (without line ends) and the line number each starts on."""

    records: List[bytes]
    lines: List[int]
    multiline: bool  # whether some record holds a line break inside quotes


STEP = 16 << 10  # compressed bytes decompressed per call
BLOCK_BYTES = 1 << 20  # stored bytes read per call


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


def _lines(chunks: Iterator[bytes], file: str, fields: int = 0, delimiter: bytes = b","
           ) -> Iterator[Tuple[int, object, Optional[Reject]]]:
    """(line number, line without its end, reject) for each physical line, or
    (first line number, CleanRun, None) for a block's lines that `_clean` passes.

    A read error ends the file with a reject carrying the partial last line, if any.
    """
    number = 0
    pending = b""
    while True:
        try:
            block = next(chunks, None)
        except (Unreadable, OSError, EOFError) as e:
            yield number + 1, pending, Reject(file, number + 1, "unreadable_file",
                                              str(e), pending)
            return
        if block is None:
            break
        if number == 0 and not pending and block.startswith(BOM):
            block = block[len(BOM):]
        data = pending + block
        cut = data.rfind(b"\n")
        if cut < 0:
            pending = data
            continue
        body, pending = data[:cut], data[cut + 1:]
        if _clean(body, fields, delimiter):
            run = CleanRun(body.split(b"\n"))
            yield number + 1, run, None
            number += len(run.lines)
            continue
        for part in body.split(b"\n"):
            number += 1
            yield number, part[:-1] if part.endswith(b"\r") else part, None
    if pending:
        yield number + 1, pending[:-1] if pending.endswith(b"\r") else pending, None


def _field_count(record: bytes, delimiter: str) -> Tuple[int, Optional[str]]:
    """Number of fields, and a problem with the quoting if there is one."""
    if b'"' not in record:
        return record.count(delimiter.encode()) + 1, None
    text = record.decode("utf-8")
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True))
    except csv.Error as e:
        return -1, str(e)
    if len(rows) != 1:
        return -1, "the quoted field does not close where the record ends"
    return len(rows[0]), None


MAX_RECORD_LINES = 64  # a quoted field spanning more lines is taken as an unclosed quote


def _records(lines: Iterator[Tuple[int, bytes, Optional[Reject]]], file: str,
             check: Callable[[bytes, int], Optional[Reject]]
             ) -> Iterator[Tuple[int, bytes, bool, Optional[Reject]]]:
    """(first line, record, spans lines, reject) from physical lines.

    A line with an odd number of quotes opens a field that continues on the next lines
    until the quotes balance. If they never do (end of file, or MAX_RECORD_LINES), or the
    joined record fails `check`, the opening line is rejected alone and the lines after
    it are read again as records, so one stray quote costs one row, not the rows after it.
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
            return
        if isinstance(line, CleanRun):
            yield number, line, False, None
            continue
        if line.count(b'"') % 2 == 0:
            yield number, line, False, None
            continue
        taken, record, closed = [], line, False
        while len(taken) < MAX_RECORD_LINES:
            nxt = queue.popleft() if queue else next(source, None)
            if nxt is None:
                break
            if isinstance(nxt[1], CleanRun):  # the quoted field may run into these lines
                queue.extendleft(reversed([(nxt[0] + i, part, None)
                                           for i, part in enumerate(nxt[1].lines)]))
                nxt = queue.popleft()
            taken.append(nxt)
            if nxt[2] is not None:
                break
            record += b"\n" + nxt[1]
            if record.count(b'"') % 2 == 0:
                closed = True
                break
        if closed and check(record, number) is None:
            yield number, record, True, None
            continue
        yield number, line, False, Reject(
            file, number, "unterminated_quote",
            "a quoted field is not closed (within the line or the next "
            f"{MAX_RECORD_LINES} lines)", line)
        queue.extendleft(reversed(taken))


def read_records(stream: IO[bytes], file: str, column_names: Sequence[str], delimiter: str = ",",
                 header: bool = True, gzipped: bool = False, chunk_records: int = 8192
                 ) -> Iterator[Tuple[Optional[Chunk], List[Reject]]]:
    """Splits a CSV byte stream into chunks of records with one field per column.

    Args:
      stream: the file's bytes as stored.
      file: its path, for the rejects.
      gzipped: whether to decompress them.
      header: skip the first record (its check is done before the pipeline).
      chunk_records: records per chunk.

    Yields:
      (chunk or None, rejects found since the previous chunk). Blank lines are skipped:
      they hold no row.
    """
    records, lines, rejects, multiline = [], [], [], False
    seen_header = not header
    def check(record: bytes, number: int) -> Optional[Reject]:
        return _check(record, number, file, column_names, delimiter)

    physical = _lines(blocks(stream, gzipped), file, len(column_names), delimiter.encode())
    for number, record, spans, reject in _records(physical, file, check):
        if isinstance(record, CleanRun):
            run = record.lines
            if not seen_header:
                seen_header, run, number = True, run[1:], number + 1
            records += run
            lines += range(number, number + len(run))
            if len(records) >= chunk_records:
                yield Chunk(records, lines, multiline), rejects
                records, lines, rejects, multiline = [], [], [], False
            continue
        if reject is None and not seen_header:
            seen_header = True
            continue
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
        if len(records) >= chunk_records:
            yield Chunk(records, lines, multiline), rejects
            records, lines, rejects, multiline = [], [], [], False
    if records or rejects:
        yield (Chunk(records, lines, multiline) if records else None), rejects


def _check(record: bytes, line: int, file: str, column_names: Sequence[str],
           delimiter: str) -> Optional[Reject]:
    """The reason a record cannot be a row, or None."""
    try:
        record.decode("utf-8")
    except UnicodeDecodeError as e:
        field = record[:e.start].count(delimiter.encode())  # where the bad byte sits
        where = (f"column {column_names[field]!r}" if field < len(column_names)
                 else f"field {field + 1}")
        return Reject(file, line, "invalid_utf8",
                      f"{where}: byte {e.start + 1} of the line is not valid UTF-8", record)
    count, problem = _field_count(record, delimiter)
    if problem is not None:
        return Reject(file, line, "bad_quoting", problem, record)
    if count != len(column_names):
        return Reject(file, line, "wrong_field_count",
                      f"expected {len(column_names)} fields, found {count}", record)
    return None
