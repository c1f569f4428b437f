"""TFRecord and Parquet inputs give what the same rows give as CSV; their bad records are set aside.

The CSV baseline is the shared session run. The TFRecord run hashes its rows into splits
as the CSV run does; the Parquet run is two inputs, train rows and eval rows in their
own files (`split:`), split the way the hash rule split them. Each run also reads a file
holding only bad records, which must all be rejected and change nothing else.
"""

import os
import struct

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from tests import reference
from tests.conftest import EVAL_FRACTION, make_config, write_config

FLOATS = ("f_normal", "f_uniform", "f_missing")
INTS = ("id", "int_cat", "label")
STRINGS = ("cat_small", "cat_mid", "cat_big", "text")


def _example(row) -> bytes:
    feature = {}
    for name in FLOATS:
        if not np.isnan(row[name]):
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[row[name]]))
    for name in INTS:
        feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(row[name])]))
    for name in STRINGS:
        if row[name] != "":
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[row[name].encode()]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _frame(rows: pd.DataFrame) -> pa.Table:
    columns = {}
    for name in FLOATS:
        columns[name] = pa.array(rows[name].to_numpy(np.float64), pa.float64(),
                                 mask=rows[name].isna().to_numpy())
    for name in INTS:
        columns[name] = pa.array(rows[name].to_numpy(np.int64))
    for name in STRINGS:
        values = rows[name].tolist()
        columns[name] = pa.array([v if v != "" else None for v in values], pa.string())
    return pa.table(columns)


def _bad_tfrecords(rows) -> bytes:
    """Framed records that must all be rejected: a bad data checksum, a string where a
    float belongs, then a length whose checksum fails (the end of what can be framed)."""
    def frame(data, data_crc=None):
        from apache_beam.io.tfrecordio import _TFRecordUtil  # pylint: disable=import-outside-toplevel
        crc = _TFRecordUtil._masked_crc32c  # pylint: disable=protected-access
        length = struct.pack("<Q", len(data))
        return (length + struct.pack("<I", crc(length)) + data
                + struct.pack("<I", crc(data) if data_crc is None else data_crc))
    good = _example(rows.iloc[0])
    wrong_type = tf.train.Example(features=tf.train.Features(feature={
        "f_normal": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x"])),
        "id": tf.train.Feature(int64_list=tf.train.Int64List(value=[1]))})).SerializeToString()
    return (frame(good, data_crc=12345) + frame(wrong_type)
            + b"\x05" + b"\x00" * 7 + b"\xff\xff\xff\xff" + b"garbage")


@pytest.fixture(scope="module")
def raw(csv_dir):
    return reference.raw_frame(csv_dir).set_index("id", drop=False)


def _run(root, input_section):
    from beam_pipeline.job import preprocess
    from beam_pipeline.config import load_config
    config = make_config("unused", str(root / "out"), input=input_section)
    path = write_config(root / "config.yaml", config)
    return preprocess.run(load_config(path), preprocess.pipeline_options([])), str(root / "out")


@pytest.fixture(scope="module")
def tfrecord_run(raw, tmp_path_factory):
    root = tmp_path_factory.mktemp("tfrecord")
    (root / "data").mkdir()
    halves = np.array_split(np.arange(len(raw)), 2)
    for i, half in enumerate(halves):
        with tf.io.TFRecordWriter(str(root / "data" / f"part-{i}.tfrecord")) as writer:
            for _, row in raw.iloc[half].iterrows():
                writer.write(_example(row))
    (root / "data" / "part-9-bad.tfrecord").write_bytes(_bad_tfrecords(raw))
    return _run(root, {"format": "tfrecord", "file_pattern": str(root / "data" / "*.tfrecord"),
                       "max_rejected_fraction": 0.05})


@pytest.fixture(scope="module")
def parquet_run(raw, tmp_path_factory):
    root = tmp_path_factory.mktemp("parquet")
    for name in ("train", "eval"):
        (root / name).mkdir()
    is_eval = reference.is_eval(raw["id"], EVAL_FRACTION)
    pq.write_table(_frame(raw[~is_eval]), root / "train" / "part-0.parquet", row_group_size=300)
    pq.write_table(_frame(raw[is_eval]), root / "eval" / "part-0.parquet")
    other = pa.table({"id": pa.array([1, 2]), "f_normal": pa.array(["a", "b"])})
    pq.write_table(other, root / "train" / "part-1-other-schema.parquet")
    return _run(root, [
        {"format": "parquet", "file_pattern": str(root / "train" / "*.parquet"), "split": "train",
         "max_rejected_fraction": 0.05},
        {"format": "parquet", "file_pattern": str(root / "eval" / "*.parquet"), "split": "eval"}])


def _by_id(out):
    rows = {}
    for split in ("train", "eval"):
        data = reference.read_transformed(out, split)
        for i, row_id in enumerate(data["id"]):
            rows[int(row_id)] = (split, {k: v[i] for k, v in data.items()})
    return rows


@pytest.fixture(scope="module")
def csv_rows(pipeline_run):
    return _by_id(pipeline_run[0].output.dir)


def _assert_same_as_csv(summary, out, pipeline_run, csv_rows):
    csv_summary = pipeline_run[1]
    assert summary["rows"]["written"] == csv_summary["rows"]["written"]
    assert summary["statistics"]["vocabularies"] == csv_summary["statistics"]["vocabularies"]
    for name, stats in csv_summary["statistics"]["numeric"].items():
        for key in ("count", "missing", "min", "max"):
            assert summary["statistics"]["numeric"][name][key] == stats[key], (name, key)
        assert summary["statistics"]["numeric"][name]["mean"] == pytest.approx(stats["mean"])
    rows = _by_id(out)
    assert sorted(rows) == sorted(csv_rows)
    for row_id, (split, row) in rows.items():
        csv_split, csv_row = csv_rows[row_id]
        assert split == csv_split
        for name, value in csv_row.items():
            if np.asarray(value).dtype.kind == "f":  # tft.var's last bit varies run to run
                np.testing.assert_allclose(row[name], value, rtol=1e-6, atol=1e-6, err_msg=name)
            else:
                np.testing.assert_array_equal(row[name], value, err_msg=name)


def test_tfrecord_input_equals_csv(tfrecord_run, pipeline_run, csv_rows):
    _assert_same_as_csv(*tfrecord_run, pipeline_run, csv_rows)


def test_parquet_inputs_with_their_own_splits_equal_csv(parquet_run, pipeline_run, csv_rows):
    _assert_same_as_csv(*parquet_run, pipeline_run, csv_rows)


def _rejected(out):
    import json
    records = []
    for name in os.listdir(os.path.join(out, "rejected")):
        with open(os.path.join(out, "rejected", name), encoding="utf-8") as f:
            records += [json.loads(line) for line in f]
    return records


def test_bad_tfrecords_are_rejected_by_reason(tfrecord_run):
    summary, out = tfrecord_run
    rejected = sorted(((os.path.basename(r["file"]), r["line"], r["reason"])
                       for r in _rejected(out)))
    assert rejected == [("part-9-bad.tfrecord", 1, "bad_checksum"),
                        ("part-9-bad.tfrecord", 2, "bad_example"),
                        ("part-9-bad.tfrecord", 3, "corrupt_record")]
    rows = summary["rows"]
    assert rows["read"] == sum(rows["written"].values()) + rows["rejected"]


def test_parquet_of_another_schema_is_rejected_whole(parquet_run):
    summary, out = parquet_run
    (record,) = _rejected(out)
    assert record["reason"] == "schema_mismatch" and record["rows"] == 2
    assert "f_normal" in record["detail"] and record["file"].endswith("part-1-other-schema.parquet")
    rows = summary["rows"]
    assert rows["rejected"] == 2
    assert rows["read"] == sum(rows["written"].values()) + rows["rejected"]
