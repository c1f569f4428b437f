"""TFRecord files of tf.Example -> record batches of the config's columns, bad records set aside.

The framing (length, its checksum, data, its checksum) is read here rather than by
Beam's TFRecord source, which stops the job at the first bad checksum: a record whose
data checksum fails is rejected and reading goes on (its length is known); a length
whose checksum fails cannot be trusted, so the rest of the file is one reject. Valid
records are decoded by tfx_bsl's C++ decoder in batches; a batch it refuses is decoded
record by record to find the ones at fault.
"""

import struct
from typing import IO, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.tfrecordio import _TFRecordUtil  # pylint: disable=protected-access
from tfx_bsl.coders import example_coder

from beam_pipeline.job import schema
from beam_pipeline.sources import batches
from beam_pipeline.sources.dead_letter import Reject

BATCH_RECORDS = 1024


def _masked_crc(data: bytes) -> bytes:
    return struct.pack("<I", _TFRecordUtil._masked_crc32c(data))  # pylint: disable=protected-access


def records(stream: IO[bytes], file: str) -> Iterator[Tuple[int, Optional[bytes], Optional[Reject]]]:
    """(record number from 1, serialized record or None, reject or None) for each record."""
    number = 0
    while True:
        try:
            header = stream.read(12)
        except (OSError, EOFError) as e:
            yield number + 1, None, Reject(file, number + 1, "unreadable_file", str(e), b"")
            return
        if not header:
            return
        number += 1
        if len(header) < 12 or _masked_crc(header[:8]) != header[8:]:
            yield number, None, Reject(
                file, number, "corrupt_record",
                "the record's length fails its checksum (or the file ends inside it); the "
                "rest of the file cannot be framed", header)
            return
        (length,) = struct.unpack("<Q", header[:8])
        try:
            body = stream.read(length + 4)
        except (OSError, EOFError) as e:
            yield number, None, Reject(file, number, "unreadable_file", str(e), b"")
            return
        data, crc = body[:length], body[length:]
        if len(body) < length + 4:
            yield number, None, Reject(file, number, "corrupt_record",
                                       "the file ends inside the record", data)
            return
        if _masked_crc(data) != crc:
            yield number, None, Reject(file, number, "bad_checksum",
                                       "the record's data fails its checksum", data)
            continue
        yield number, data, None


class TFRecordReader:
    """A file path -> `(record batch, rejects, record numbers)` of the config's columns."""

    def __init__(self, columns: Sequence):
        self._columns = list(columns)
        self._schema = schema.raw_metadata(columns).schema
        self._decoder = None

    def _decode(self, serialized: List[bytes], file: str = "", numbers: Sequence[int] = ()
                ) -> Tuple[pa.RecordBatch, List[Reject]]:
        """Serialized examples -> (record batch, rejects of records lacking a required
        value, the record numbers of the batch's rows)."""
        if self._decoder is None:
            self._decoder = example_coder.ExamplesToRecordBatchDecoder(
                self._schema.SerializeToString())
        decoded = self._decoder.DecodeBatch(serialized)
        values = {}
        for column in self._columns:
            index = decoded.schema.get_field_index(column.name)
            if index < 0:  # no row of the batch has the feature
                values[column.name] = pa.nulls(decoded.num_rows,
                                               batches.ITEM_TYPES[column.read_type])
                continue
            lists = decoded.column(index)
            lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(
                zero_copy_only=False)
            # A feature with several values is not a scalar column: reject (caught below).
            if (lengths > 1).any():
                raise ValueError(f"feature {column.name!r} has {int(lengths.max())} values")
            present = lengths == 1  # an absent feature or an empty list is missing
            where = np.where(present, np.cumsum(present) - 1, 0)
            values[column.name] = pc.list_flatten(lists).take(
                pa.array(where, mask=~present))
        missing = batches.missing_required(self._columns, values)
        if not missing:
            return batches.record_batch(self._columns, values), [], list(numbers)
        keep = np.ones(decoded.num_rows, bool)
        keep[[i for i, _ in missing]] = False
        return batches.record_batch(self._columns, values, keep), [
            Reject(file, numbers[i], column.missing_reason, batches.describe_missing(column),
                   serialized[i]) for i, column in missing], [
            n for n, k in zip(numbers, keep) if k]

    def _decode_all(self, file: str, numbers: List[int], serialized: List[bytes]
                    ) -> Tuple[Optional[pa.RecordBatch], List[Reject], List[int]]:
        try:
            return self._decode(serialized, file, numbers)
        except Exception:  # pylint: disable=broad-except  (find the records at fault)
            good, good_numbers, rejects = [], [], []
            for number, record in zip(numbers, serialized):
                try:
                    self._decode([record], file, [number])
                    good.append(record)
                    good_numbers.append(number)
                except Exception as e:  # pylint: disable=broad-except
                    rejects.append(Reject(file, number, "bad_example",
                                          f"not a tf.Example of the declared columns: {e}",
                                          record))
            if not good:
                return None, rejects, []
            batch, missing, kept = self._decode(good, file, good_numbers)
            return batch, sorted(rejects + missing, key=lambda r: r.line), kept

    def __call__(self, path: str):
        compression = (CompressionTypes.GZIP if path.endswith(".gz")
                       else CompressionTypes.UNCOMPRESSED)
        numbers, serialized, rejects = [], [], []
        with FileSystems.open(path, compression_type=compression) as f:
            for number, record, reject in records(f, path):
                if reject is not None:
                    rejects.append(reject)
                    continue
                numbers.append(number)
                serialized.append(record)
                if len(serialized) >= BATCH_RECORDS:
                    batch, bad, kept = self._decode_all(path, numbers, serialized)
                    yield batch, rejects + bad, kept
                    numbers, serialized, rejects = [], [], []
        if serialized or rejects:
            batch, bad, kept = (self._decode_all(path, numbers, serialized) if serialized
                                else (None, [], []))
            yield batch, rejects + bad, kept
