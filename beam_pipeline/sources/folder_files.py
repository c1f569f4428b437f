"""Class-per-folder files -> record batches of (path, text or image bytes, label).

Work items are groups of (path, label) pairs, so thousands of small files make a few
hundred items and no worker holds more than one group's bytes. A file that cannot be a
row is set aside with its reason: an empty file, text that is not UTF-8, an image that
does not decode to the configured channels (the same decode Keras's loader runs).
"""

from typing import List, Sequence, Tuple

import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

from beam_pipeline.config import Input, folder_columns
from beam_pipeline.sources import batches, folders
from beam_pipeline.outputs import storage
from beam_pipeline.sources.dead_letter import Reject

FILES_PER_ITEM = 64
CHANNELS = {"grayscale": 1, "rgb": 3, "rgba": 4}


def work_items(paths: Sequence[str], labels: Sequence[int]) -> List[Tuple[Tuple[str, int], ...]]:
    """(path, label) pairs grouped FILES_PER_ITEM at a time."""
    pairs = list(zip(paths, labels))
    return [tuple(pairs[i:i + FILES_PER_ITEM]) for i in range(0, len(pairs), FILES_PER_ITEM)]


def listing(item: Input):
    """(paths, labels, class names) of a folder input, exactly as Keras's loader lists them."""
    extensions = (folders.TEXT_EXTENSIONS if item.format == "text_directory"
                  else folders.IMAGE_EXTENSIONS)
    return folders.list_labelled_files(item.directory, extensions, item.class_names,
                                       item.follow_links)


class FolderReader:
    """A group of (path, label) -> one `(record batch, rejects)` pair."""

    def __init__(self, item: Input, color_modes: Sequence[str] = ("rgb",)):
        """`color_modes`: every mode the job's image features decode with; a file must
        decode in each, or the job would fail on it later."""
        self._input = item
        self._color_modes = tuple(color_modes)
        self._columns = folder_columns(item.format)
        self._content = self._columns[1].name

    def _problem(self, data: bytes) -> Tuple[str, str]:
        """(reason, detail) when the bytes cannot be a row, else ("", "")."""
        if not data:
            return "empty_file", "the file is empty"
        if self._content == "text":
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as e:
                return "invalid_utf8", f"byte {e.start + 1} is not valid UTF-8"
            return "", ""
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        for mode in self._color_modes:
            try:
                tf.io.decode_image(data, channels=CHANNELS[mode], expand_animations=False)
            except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as e:
                return "undecodable_image", (f"does not decode as a {mode} image: "
                                             f"{e.message.splitlines()[0]}")
        return "", ""

    def __call__(self, group):
        paths, contents, labels, rejects = [], [], [], []
        for path, label in group:
            try:
                with FileSystems.open(path) as f:
                    data = f.read()
            except Exception as e:  # pylint: disable=broad-except
                # Deleted since it was listed: OSError locally, NotFound on GCS.
                if not (isinstance(e, OSError) or storage.is_missing(e)):
                    raise
                rejects.append(Reject(path, 0, "unreadable_file", str(e), b""))
                continue
            reason, detail = self._problem(data)
            if reason:
                rejects.append(Reject(path, 0, reason, detail, data))
                continue
            if self._input.max_length is not None:
                data = data[:self._input.max_length]  # bytes, as Keras's tf.strings.substr
            paths.append(path.encode())
            contents.append(data)
            labels.append(label)
        batch = batches.record_batch(self._columns, {
            "path": pa.array(paths, pa.large_binary()),
            self._content: pa.array(contents, pa.large_binary()),
            "label": pa.array(labels, pa.int64())}) if paths else None
        yield batch, rejects
