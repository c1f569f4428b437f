"""Converts CSV shards to Parquet or TFRecord (tf.Example) shards with the config's column types.

    python scripts/csv_to.py parquet --config examples/sample/config.yaml --out /tmp/parquet
    python scripts/csv_to.py tfrecord --config examples/sample/config.yaml --out /tmp/tfrecord

The same rows in another format: for trying the other inputs on the bundled sample (the
config's CSV input gives the files and column types). Each shard is streamed in batches.
"""

import argparse
import os

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import csv as pacsv

ARROW_TYPES = {"int": pa.int64(), "float": pa.float32(), "string": pa.string()}


def _batches(path, columns, delimiter):
    reader = pacsv.open_csv(
        path, parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={c.name: ARROW_TYPES[c.read_type] for c in columns}))
    yield from reader


def _example(row, columns) -> bytes:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    feature = {}
    for column in columns:
        value = row[column.name]
        if value is None or value == "":
            continue
        if column.read_type == "int":
            feature[column.name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        elif column.read_type == "float":
            feature[column.name] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
        else:
            feature[column.name] = tf.train.Feature(
                bytes_list=tf.train.BytesList(value=[value.encode()]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def main():
    from beam_pipeline.config import load_config  # pylint: disable=import-outside-toplevel
    from beam_pipeline.sources import matching_files  # pylint: disable=import-outside-toplevel
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("format", choices=("parquet", "tfrecord"))
    parser.add_argument("--config", required=True, help="a config with one CSV input")
    parser.add_argument("--out", required=True, help="output folder")
    args = parser.parse_args()
    config = load_config(args.config)
    (item,) = config.inputs
    os.makedirs(args.out, exist_ok=True)
    for path in matching_files(item.file_pattern):
        name = os.path.basename(path).split(".")[0]
        target = os.path.join(args.out, f"{name}.{args.format}")
        if args.format == "parquet":
            writer = None
            for batch in _batches(path, config.columns, item.delimiter):
                writer = writer or pq.ParquetWriter(target, batch.schema)
                writer.write_batch(batch)
            if writer:
                writer.close()
        else:
            import tensorflow as tf  # pylint: disable=import-outside-toplevel
            with tf.io.TFRecordWriter(target) as writer:
                for batch in _batches(path, config.columns, item.delimiter):
                    for row in batch.to_pylist():
                        writer.write(_example(row, config.columns))
        print(f"wrote {target}")


if __name__ == "__main__":
    main()
