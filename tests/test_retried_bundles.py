"""Every step with a side effect is safe to run twice on the same input, as a runner that
retries a failed bundle runs it (Dataflow retries a failed work item up to 4 times in
batch; each attempt replays the step's side effects).

Each test drives a step through a first attempt that fails right after its side effect
(its outputs discarded, as a runner discards a failed bundle's), then a second attempt,
and checks that what the job publishes holds every row, reject and count once: the
TFRecord shards and the dead-letter and statistics files (Beam `FileBasedSink`s: a temp
file per attempt, only the committed attempts' files renamed into place), the
vocabulary's spill files (a new file per attempt; only the committed attempt's path
travels on), and the progress count files (counted per finished bundle).
"""

import collections
import glob
import json
import os

import numpy as np
import pyarrow as pa
import tensorflow as tf
import tensorflow_transform.beam as tft_beam

from beam_pipeline.features import vocabulary_counts
from beam_pipeline.job import progress
from beam_pipeline.job.tfrecord_sink import WriteRecordBatches


def _attempts(sink, bundles):
    """Writes each bundle twice through `sink`'s writer lifecycle: a first attempt whose
    result is lost (it failed after closing its file), then a committed one; finalizes
    with the committed results, as Beam's `iobase.Write` does. Returns the final files."""
    init = sink.initialize_write()
    committed = []
    for index, bundle in enumerate(bundles):
        for attempt in ("failed", "retried"):
            writer = sink.open_writer(init, f"{index}-{attempt}")
            for element in bundle:
                writer.write(element)
            result = writer.close()
            if attempt == "retried":
                committed.append(result)
    pre = sink.pre_finalize(init, committed)
    return sorted(sink.finalize_write(init, committed, pre))


def test_a_retried_tfrecord_shard_holds_each_record_once(tmp_path):
    prefix = str(tmp_path / "data" / "train" / "part")
    sink = WriteRecordBatches(prefix, file_name_suffix=".tfrecord.gz")._sink
    bundles = [[[b"r0", b"r1"], [b"r2"]], [[b"r3", b"r4"]]]
    files = _attempts(sink, bundles)
    records = [r.numpy() for f in files
               for r in tf.data.TFRecordDataset(f, compression_type="GZIP")]
    assert sorted(records) == [b"r0", b"r1", b"r2", b"r3", b"r4"]
    # Only the final shards are left: no temp file of either attempt.
    left = [p for p in glob.glob(str(tmp_path / "data" / "**"), recursive=True)
            if os.path.isfile(p)]
    assert sorted(left) == files


def test_retried_dead_letters_and_statistics_are_written_once(tmp_path):
    from apache_beam.io import textio  # the sink of WriteToText, as the pipeline uses it
    rejected = textio._TextSink(str(tmp_path / "rejected" / "rejected"),  # pylint: disable=protected-access
                                file_name_suffix=".jsonl", num_shards=1)
    letters = [json.dumps({"file": "a.csv", "line": n, "reason": "bad_float"}) for n in (2, 5)]
    (path,) = _attempts(rejected, [letters])
    with open(path) as f:
        assert [json.loads(line)["line"] for line in f] == [2, 5]
    statistics = textio._TextSink(str(tmp_path / "statistics" / "train.json"),  # pylint: disable=protected-access
                                  shard_name_template="")
    (path,) = _attempts(statistics, [[json.dumps({"rows": 7})]])
    with open(path) as f:
        assert json.load(f) == {"rows": 7}
    assert sorted(os.listdir(tmp_path / "statistics")) == ["train.json"]


def test_a_retried_vocabulary_bundle_counts_each_token_once(tmp_path):
    rng = np.random.default_rng(3)
    batches = []
    for _ in range(4):
        keys = np.array([b"t%02d" % i for i in rng.choice(40, 60)], dtype=object)
        batches.append((keys, np.ones(len(keys), np.int64),
                        np.array([int(k[1:]) % 4 for k in keys], np.int64)))
    want = collections.Counter(k for keys, _, _ in batches for k in keys)
    spill_dir = str(tmp_path / "spill")
    count = vocabulary_counts._CountInBundle()  # pylint: disable=protected-access
    committed = []
    old = vocabulary_counts.SPILL_BYTES
    vocabulary_counts.SPILL_BYTES = 0  # spill every table: each attempt writes its files
    try:
        for attempt in ("failed", "retried"):  # the same DoFn instance, as a retry may be
            count.start_bundle()
            outputs = [e for b in batches for e in count.process(b)]
            outputs += [w.value for w in count.finish_bundle()]
            spilled = [vocabulary_counts._spill_partial(o, spill_dir) for o in outputs]  # pylint: disable=protected-access
            if attempt == "retried":
                committed = spilled
        # Both attempts wrote their files (the failed one's are left to the temp folder's
        # removal); only the committed paths are summed.
        assert len(os.listdir(spill_dir)) == 2 * len(committed)
        by_shard = collections.defaultdict(list)
        for shard, path in committed:
            by_shard[shard].append(path)
        got = collections.Counter()
        for shard, paths in by_shard.items():
            _, summed = vocabulary_counts._sum_shard((shard, paths), spill_dir)  # pylint: disable=protected-access
            table = vocabulary_counts.load(summed)
            got.update(dict(zip(table["token"].to_pylist(), table["count"].to_pylist())))
    finally:
        vocabulary_counts.SPILL_BYTES = old
    assert got == want


def test_a_retried_bundle_is_not_counted_twice_in_the_progress_files(tmp_path):
    directory = str(tmp_path / "progress")
    count = progress.CountRows("analyze", directory)
    count.setup()
    batch = pa.record_batch({"x": pa.array(range(10))})
    count.start_bundle()
    list(count.process(batch))
    count.finish_bundle()
    # The next bundle fails after writing its count, and is retried by this instance.
    count.start_bundle()
    list(count.process(batch))
    count._write()  # pylint: disable=protected-access  (its running count reached the file)
    count.start_bundle()
    list(count.process(batch))
    count.finish_bundle()
    assert progress.read_counts(directory)["analyze"] == 20


def test_the_spill_folder_is_the_analysis_temp_folder(tmp_path):
    """The failed attempts' spill files go where the job's temp folder removal finds them."""
    temp = str(tmp_path / "tmp")
    with tft_beam.Context(temp_dir=temp):
        spill_dir = tft_beam.Context.create_base_temp_dir()
    assert spill_dir.startswith(temp)
