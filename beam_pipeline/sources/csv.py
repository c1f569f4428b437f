"""Sharded CSV (plain or gzip) read as Arrow record batches, bad records set aside.

`csv_records` finds the records and rejects malformed ones, `csv_values` types them;
this module checks the input before the job and wires the reading into Beam.
"""

import json
import zlib
from typing import List

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from tfx_bsl.public import tfxio

from beam_pipeline import schema
from beam_pipeline.config import Config, ConfigError
from beam_pipeline.sources import csv_records, csv_values
from beam_pipeline.split import METRICS_NAMESPACE

def matching_files(file_pattern: str) -> List[str]:
    """Paths matching the glob, through Beam's file systems (local, gs://, ...)."""
    try:
        return sorted(m.path for m in FileSystems.match([file_pattern])[0].metadata_list)
    except (IOError, OSError, beam.io.filesystem.BeamIOError):
        return []


def check_input(config: Config) -> List[str]:
    """Fails before any pipeline starts if no file matches or a header disagrees.

    Returns the matching files.
    """
    pattern = config.input.file_pattern
    files = matching_files(pattern)
    if not files:
        raise ConfigError(f"input.file_pattern: no file matches {pattern!r}")
    if config.input.header:
        expected = [c.name for c in config.columns]
        for path in files:
            header = _first_line(path)
            if header is None:
                continue  # an empty shard has no rows to misread
            names = [n.strip().strip('"') for n in header.split(config.input.delimiter)]
            if names != expected:
                hint = next((f"; it splits into the declared names on {d!r}: set "
                             f"input.delimiter" for d in (",", ";", "\t", "|")
                             if d != config.input.delimiter
                             and [n.strip().strip('"') for n in header.split(d)] == expected),
                            " (names and order must match, or set input.header: false)")
                raise ConfigError(
                    f"columns: the header of {path} is {names}, but the config declares "
                    f"{expected}{hint}")
    return files


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


def csv_tfxio(config: Config) -> tfxio.CsvTFXIO:
    """The TFXIO describing the raw columns; tf.Transform takes its TensorAdapterConfig.

    Its own reader is not used: it splits records at every line break (so a quoted field
    holding one fails) and stops the job at the first bad line. `ReadCsv` produces the
    same Arrow layout instead.
    """
    return tfxio.CsvTFXIO(
        file_pattern=config.input.file_pattern,
        column_names=[c.name for c in config.columns],
        delimiter=config.input.delimiter,
        schema=schema.raw_metadata(config.columns).schema,
        skip_header_lines=1 if config.input.header else 0,
        telemetry_descriptors=["beam_pipeline"])


REJECTED = "rejected"


class _ReadCsvFile(beam.DoFn):
    """A CSV file path -> record batches, plus its rejects as JSON lines (tagged `rejected`).

    With `count`, the Beam counters `rows_rejected` and `rows_rejected_<reason>` record
    the rejects (only one of the pipeline's two reads counts, so nothing counts twice).
    """

    def __init__(self, config: Config, count: bool):
        self._columns = config.columns
        self._input = config.input
        self._count = count

    def process(self, path: str):
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            for chunk, rejects in csv_records.read_records(
                    f, path, [c.name for c in self._columns], self._input.delimiter,
                    self._input.header,
                    gzipped=path.endswith(".gz")):
                if chunk is not None:
                    batch, bad_values = csv_values.to_record_batch(
                        chunk, path, self._columns, self._input.delimiter,
                        self._input.non_finite)
                    rejects = rejects + bad_values
                    if batch.num_rows:
                        yield batch
                for reject in rejects:
                    if self._count:
                        beam.metrics.Metrics.counter(METRICS_NAMESPACE, "rows_rejected").inc()
                        beam.metrics.Metrics.counter(
                            METRICS_NAMESPACE, f"rows_rejected_{reject.reason}").inc()
                    yield beam.pvalue.TaggedOutput(
                        REJECTED, json.dumps(reject.to_json(), ensure_ascii=False))


class ReadCsv(beam.PTransform):
    """The configured CSV shards -> Arrow record batches (main output) and rejects.

    Files are matched when the pipeline runs and spread over workers; each file is read
    as a stream, so memory does not grow with its size. The `rejected` output holds one
    JSON line per record that is not a valid row (see `csv_records.Reject`).
    """

    def __init__(self, config: Config, count_rejects: bool = False):
        super().__init__()
        self._config = config
        self._count = count_rejects

    def expand(self, pbegin):
        return (pbegin
                | "Pattern" >> beam.Create([self._config.input.file_pattern])
                | "Match" >> fileio.MatchAll()
                | "Path" >> beam.Map(lambda metadata: metadata.path)
                | "Spread" >> beam.Reshuffle()
                | "Read" >> beam.ParDo(_ReadCsvFile(self._config, self._count)).with_outputs(
                    REJECTED, main="batches"))
