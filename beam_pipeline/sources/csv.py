"""Sharded CSV (plain or gzip) read as Arrow record batches through tfx_bsl's CsvTFXIO."""

from typing import List

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from tfx_bsl.public import tfxio

from beam_pipeline import schema
from beam_pipeline.config import Config, ConfigError

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
                raise ConfigError(
                    f"columns: the header of {path} is {names}, but the config declares "
                    f"{expected} (names and order must match, or set input.header: false)")
    return files


def _first_line(path: str):
    with FileSystems.open(path, compression_type=CompressionTypes.AUTO) as f:
        line = f.readline()
    if not line:
        return None
    return line.decode("utf-8-sig", "replace").rstrip("\r\n")


def csv_tfxio(config: Config) -> tfxio.CsvTFXIO:
    """The TFXIO that reads the configured shards.

    (tfx_bsl 1.21's `raw_record_column_name` appends to the decoder's column names on
    every batch, so the raw line cannot ride along; the split hashes values instead.)
    """
    return tfxio.CsvTFXIO(
        file_pattern=config.input.file_pattern,
        column_names=[c.name for c in config.columns],
        delimiter=config.input.delimiter,
        schema=schema.raw_metadata(config.columns).schema,
        skip_header_lines=1 if config.input.header else 0,
        telemetry_descriptors=["beam_pipeline"])
