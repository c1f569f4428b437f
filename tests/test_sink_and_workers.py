"""The batched TFRecord sink, and a run on worker processes
(`--direct_running_mode=multi_processing`) that produces what the in-process run produces,
with progress reported from the workers."""

import glob
import json
import os

import apache_beam as beam
import pytest
import tensorflow as tf

from beam_pipeline.outputs import layout
from beam_pipeline.job import tfrecord_sink
from tests.conftest import run_preprocess_cli


# --------------------------------------------------------------------------- the sink

def test_framing_is_tensorflows(tmp_path):
    records = [b"", b"a", b"\x00" * 300, "é".encode() * 1000]
    path = str(tmp_path / "tf.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    with open(path, "rb") as f:
        assert tfrecord_sink.frame(records) == f.read()


@pytest.mark.parametrize("tensorflow_writes", [True, False])
def test_sink_writes_gzipped_tfrecords_tensorflow_reads(tmp_path, monkeypatch, tensorflow_writes):
    """Both writers: TensorFlow's (local, gs://) and the Python framing (other file systems)."""
    monkeypatch.setattr(tfrecord_sink, "tensorflow_can_write", lambda path: tensorflow_writes)
    batches = [[f"row {b}-{i}".encode() for i in range(n)] for b, n in enumerate([3, 0, 50, 1])]
    prefix = str(tmp_path / "data" / "part")
    with beam.Pipeline(runner="FnApiRunner") as p:
        _ = (p | beam.Create(batches)
             | tfrecord_sink.WriteRecordBatches(prefix, ".tfrecord.gz", num_shards=2))
    files = sorted(glob.glob(prefix + "-*"))
    assert [os.path.basename(f) for f in files] == [
        "part-00000-of-00002.tfrecord.gz", "part-00001-of-00002.tfrecord.gz"]
    with open(files[0], "rb") as f:
        assert f.read(2) == b"\x1f\x8b"  # a gzip stream
    got = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    assert sorted(got) == sorted(r for batch in batches for r in batch)


# --------------------------------------------------------------------------- a real run

@pytest.fixture(scope="module")
def multi_process_run(csv_dir, tmp_path_factory):
    """The conftest job through the CLI on two worker processes."""
    proc, out = run_preprocess_cli(csv_dir, tmp_path_factory.mktemp("multi"),
                                   "--direct_running_mode=multi_processing",
                                   "--direct_num_workers=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, out


def _summary(out):
    with open(os.path.join(out, "run_summary.json")) as f:
        return json.load(f)


def test_multi_process_counts_match_in_process(multi_process_run, pipeline_run):
    _, out = multi_process_run
    config, _ = pipeline_run
    assert _summary(out)["rows"] == _summary(config.output.dir)["rows"]


def test_multi_process_vocabularies_match_in_process(multi_process_run, pipeline_run):
    _, out = multi_process_run
    config, _ = pipeline_run
    theirs = os.path.join(config.output.dir, "transform_fn", "assets")
    ours = os.path.join(out, "transform_fn", "assets")
    names = sorted(os.listdir(theirs))
    assert names and sorted(os.listdir(ours)) == names
    for name in names:
        with open(os.path.join(theirs, name), "rb") as a, open(os.path.join(ours, name), "rb") as b:
            assert a.read() == b.read(), name


def test_multi_process_records_per_split(multi_process_run):
    _, out = multi_process_run
    written = _summary(out)["rows"]["written"]
    for split, count in written.items():
        files = glob.glob(layout.data_pattern(out, split))
        assert files, split
        assert sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP")) == count


def test_multi_process_run_reports_progress(multi_process_run):
    """Worker processes count rows into files the reporter sums."""
    proc, out = multi_process_run
    rows = _summary(out)["rows"]["read"]
    assert f"done: {rows:,} of {rows:,} rows read" in proc.stderr
