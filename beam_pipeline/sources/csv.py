"""Sharded CSV (plain or gzip) read as Arrow record batches, bad records set aside.

`csv_records` finds the records and rejects malformed ones, `csv_values` types them;
this module checks the files before the job and is the reader the pipeline calls.
"""

import zlib
from typing import List, Sequence

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from beam_pipeline.config import ConfigError, Input
from beam_pipeline.outputs import storage
from beam_pipeline.sources import csv_records, csv_values

DELIMITERS_TO_SUGGEST = (",", ";", "\t", "|")


def check_headers(item: Input, files: Sequence[str], columns: Sequence, where: str) -> None:
    """Fails before any pipeline starts if a file's header lacks a declared column or
    names one twice. The header may order the columns any way and hold others."""
    if not item.header:
        return
    expected = [c.name for c in columns]
    for path in files:
        header = _first_line(path, item.max_record_bytes)
        if header is None:
            continue  # an empty or damaged shard has no header to misread
        if len(header) > item.max_record_bytes:
            raise ConfigError(f"{where}.max_record_bytes: the first line of {path} is longer "
                              f"than {item.max_record_bytes:,} bytes (is it a header?)")
        names = csv_records.header_names(header, item.delimiter)
        _, problem = csv_records.header_layout(names, expected)
        if problem is None:
            continue
        hint = next((f"; it splits into the declared names on {d!r}: set {where}.delimiter"
                     for d in DELIMITERS_TO_SUGGEST if d != item.delimiter and
                     csv_records.header_layout(csv_records.header_names(header, d),
                                               expected)[1] is None),
                    f" (columns are matched by header name; set {where}.header: false for "
                    "files without a header)")
        raise ConfigError(f"columns: the header of {path} {problem}: it is {names}, and the "
                          f"config declares {expected}{hint}")


def _first_line(path: str, limit: int):
    """The file's first line (up to `limit` + 1 bytes, its end stripped), or None when it is
    empty or cannot be read."""
    pieces, size = [], 0
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.AUTO) as f:
            while size <= limit:  # (a gzip file's readline has no size limit)
                piece = f.read(min(1 << 16, limit + 1 - size))
                if not piece:
                    break
                end = piece.find(b"\n")
                pieces.append(piece if end < 0 else piece[:end])
                size += len(pieces[-1])
                if end >= 0:
                    break
    except Exception as e:  # pylint: disable=broad-except
        # A damaged file (or, on GCS, one deleted since it was listed: NotFound): the
        # reader rejects what it cannot read.
        if isinstance(e, (OSError, EOFError, zlib.error)) or storage.is_missing(e):
            return None
        raise
    if not pieces:
        return None
    line = b"".join(pieces)
    return line[:-1] if line.endswith(b"\r") else line


class CsvReader:
    """A CSV file path -> `(record batch, rejects, each row's line)`, streaming the file.

    The file is read as bytes (gzip by its `.gz` name) and never held whole; with a header,
    each file's own header says where the declared columns are.
    """

    def __init__(self, item: Input, columns: Sequence):
        self._input = item
        self._columns = list(columns)

    def __call__(self, path: str):
        names: List[str] = [c.name for c in self._columns]
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            for chunk, rejects in csv_records.read_records(
                    f, path, names, self._input.delimiter, self._input.header,
                    gzipped=path.endswith(".gz"),
                    max_record_bytes=self._input.max_record_bytes):
                batch, lines = None, []
                if chunk is not None:
                    batch, bad_values = csv_values.to_record_batch(
                        chunk, path, self._columns, self._input.delimiter,
                        self._input.non_finite)
                    rejects = rejects + bad_values
                    # A record's line is where it starts, so lines name records uniquely.
                    bad = {r.line for r in bad_values}
                    lines = [n for n in chunk.lines if n not in bad]
                yield batch, rejects, lines
