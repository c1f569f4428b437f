"""Sharded CSV (plain or gzip) read as Arrow record batches, bad records set aside.

`csv_records` finds the records and rejects malformed ones, `csv_values` types them;
this module checks the files before the job and is the reader the pipeline calls.
"""

import zlib
from typing import List, Sequence

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from beam_pipeline.config import ConfigError, Input
from beam_pipeline.sources import csv_records, csv_values

DELIMITERS_TO_SUGGEST = (",", ";", "\t", "|")


def check_headers(item: Input, files: Sequence[str], columns: Sequence, where: str) -> None:
    """Fails before any pipeline starts if a file's header is not the declared columns."""
    if not item.header:
        return
    expected = [c.name for c in columns]

    def names(header, delimiter):
        return [n.strip().strip('"') for n in header.split(delimiter)]

    for path in files:
        header = _first_line(path)
        if header is None:
            continue  # an empty or damaged shard has no header to misread
        if names(header, item.delimiter) != expected:
            hint = next((f"; it splits into the declared names on {d!r}: set "
                         f"{where}.delimiter" for d in DELIMITERS_TO_SUGGEST
                         if d != item.delimiter and names(header, d) == expected),
                        f" (names and order must match, or set {where}.header: false)")
            raise ConfigError(
                f"columns: the header of {path} is {names(header, item.delimiter)}, but the "
                f"config declares {expected}{hint}")


def _first_line(path: str):
    """The file's first line as text, or None when it is empty or cannot be read."""
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.AUTO) as f:
            line = f.readline()
    except (OSError, EOFError, zlib.error):
        return None  # a damaged file: the reader rejects what it cannot read
    if not line:
        return None
    return line.decode("utf-8-sig", "replace").rstrip("\r\n")


class CsvReader:
    """A CSV file path -> `(record batch, rejects)` pairs, streaming the file.

    The file is read as bytes (gzip by its `.gz` name) and never held whole.
    """

    def __init__(self, item: Input, columns: Sequence):
        self._input = item
        self._columns = list(columns)

    def __call__(self, path: str):
        names: List[str] = [c.name for c in self._columns]
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            for chunk, rejects in csv_records.read_records(
                    f, path, names, self._input.delimiter, self._input.header,
                    gzipped=path.endswith(".gz")):
                batch = None
                if chunk is not None:
                    batch, bad_values = csv_values.to_record_batch(
                        chunk, path, self._columns, self._input.delimiter,
                        self._input.non_finite)
                    rejects = rejects + bad_values
                yield batch, rejects
