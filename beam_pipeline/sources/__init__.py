"""Every input format, read as Arrow record batches in one layout with a dead-letter output.

`plan` turns the config's inputs into reads (work items + a reader + the split the
rows go to, when the input fixes it); `check` is the part a user can fix, run before
any pipeline starts. Formats: csv, tfrecord, parquet, text_directory, image_directory.
"""

import dataclasses
import os
from typing import Any, Callable, List, Optional, Tuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from beam_pipeline.outputs import layout

from beam_pipeline.config import Config, ConfigError, FOLDER_FORMATS, Input


@dataclasses.dataclass(frozen=True)
class Read:
    """One read of the job: its work items, the reader, and the split it feeds (or None)."""

    name: str
    items: Tuple[Any, ...]
    reader: Callable
    split: Optional[str]
    source: Input


def matching_files(file_pattern: str) -> List[str]:
    """Paths matching the glob, through Beam's file systems (local, gs://, ...)."""
    try:
        return sorted(m.path for m in FileSystems.match([file_pattern])[0].metadata_list)
    except (IOError, OSError, beam.io.filesystem.BeamIOError):
        return []


def _where(config: Config, index: int) -> str:
    return f"input[{index}]" if len(config.inputs) > 1 else "input"


def plan(config: Config) -> List[Read]:
    """The reads of every input, with their work items listed now.

    Raises:
      ConfigError: an input matches no file, a header disagrees with the columns, or a
        folder's listing or Keras split is impossible (naming the key and path).
    """
    # Imported here: the readers pull in TensorFlow and tfx_bsl, which config checks do not need.
    from beam_pipeline.sources import (csv, folder_files, parquet,  # pylint: disable=import-outside-toplevel
                                       tfrecord)
    reads = []
    for index, item in enumerate(config.inputs):
        where = _where(config, index)
        name = f"Input{index}" if len(config.inputs) > 1 else "Input"
        if item.format in FOLDER_FORMATS:
            modes = sorted({f.color_mode for f in config.features if f.KIND == "image"}) or ["rgb"]
            reads += _folder_reads(item, where, name, folder_files, modes)
            continue
        files = matching_files(item.file_pattern)
        if not files:
            raise ConfigError(f"{where}.file_pattern: no file matches {item.file_pattern!r}")
        unreadable = [p for p in files if layout.is_local(p) and not os.access(p, os.R_OK)]
        if unreadable:
            raise ConfigError(f"{where}.file_pattern: no permission to read {unreadable[0]}"
                              + (f" and {len(unreadable) - 1} more" if len(unreadable) > 1
                                 else ""))
        if item.format == "csv":
            csv.check_headers(item, files, config.columns, where)
            reader = csv.CsvReader(item, config.columns)
        elif item.format == "tfrecord":
            reader = tfrecord.TFRecordReader(config.columns)
        else:
            reader = parquet.ParquetReader(config.columns)
        reads.append(Read(name, tuple(files), reader, item.split, item))
    return reads


def _folder_reads(item: Input, where: str, name: str, folder_files, color_modes) -> List[Read]:
    try:
        paths, labels, _ = folder_files.listing(item)
    except ValueError as e:
        raise ConfigError(f"{where}.directory: {e}") from None
    reader = folder_files.FolderReader(item, color_modes)
    if item.validation_split is None:
        return [Read(name, tuple(folder_files.work_items(paths, labels)), reader, item.split,
                     item)]
    from beam_pipeline.sources import folders  # pylint: disable=import-outside-toplevel
    try:
        train, validation = folders.validation_subsets(paths, labels, item.validation_split,
                                                       item.seed)
    except ValueError as e:
        raise ConfigError(f"{where}.validation_split: {e}") from None
    return [Read(f"{name}{split.capitalize()}", tuple(folder_files.work_items(
                [paths[i] for i in indices], [labels[i] for i in indices])), reader, split, item)
            for split, indices in (("train", train), ("eval", validation))]


def class_names(item: Input) -> Optional[List[str]]:
    """A folder input's class names (label i is class_names[i]), else None."""
    if item.format not in FOLDER_FORMATS:
        return None
    from beam_pipeline.sources import folder_files  # pylint: disable=import-outside-toplevel
    return folder_files.listing(item)[2]


def tensor_adapter_config(columns):
    """How tf.Transform reads the batches: the Arrow layout of tfx_bsl's CsvTFXIO.

    Every reader produces that layout (see `batches`), so CsvTFXIO's description of the
    raw schema serves every format; its own file reading is not used.
    """
    from tfx_bsl.public import tfxio  # pylint: disable=import-outside-toplevel
    from beam_pipeline.job import schema  # pylint: disable=import-outside-toplevel
    return tfxio.CsvTFXIO(
        file_pattern="(not read)", column_names=[c.name for c in columns],
        schema=schema.raw_metadata(columns).schema,
        telemetry_descriptors=["beam_pipeline"]).TensorAdapterConfig()
