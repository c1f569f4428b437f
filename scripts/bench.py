"""Benchmark: beam_pipeline's `preprocess` against the ways people do the same job by hand.

    .venv/bin/python scripts/bench.py --rows 1000000 [--rows 4000000] \
        [--only beam_pipeline,keras,tft,pyarrow] [--workdir /tmp/bench]

This is a benchmark to run by hand, never a timed test. The workload, for every runner:
z-score f_normal, f_uniform and f_missing (missing cells imputed with the mean), vocabulary
ids for cat_small, cat_mid, cat_big (strings) and int_cat (integers), text standardized as
Keras's TextVectorization does (lower case, strip punctuation, split on whitespace) and
mapped to the ids of the 10,000 most frequent tokens, padded/truncated to 20; label passed
through. Every row is written as a tf.Example to gzipped TFRecords.

Runners (each one in its own subprocess, one after another, so that wall time and peak RSS
belong to that run alone; the machine is not shared between them):

  beam_pipeline  the project's CLI, `beam-pipeline preprocess`, default (FnApiRunner) runner
  keras          Keras 3 preprocessing layers adapted on a tf.data CSV pipeline, then the
                 dataset mapped through them and written with tf.io.TFRecordWriter
  tft            tf.Transform as its documentation shows: CsvTFXIO, AnalyzeAndTransformDataset,
                 RecordBatchToExamplesEncoder, WriteToTFRecord (FnApiRunner)
  pyarrow        a lower bound: pyarrow/numpy computing the same statistics, vocabularies and
                 ids in memory, without writing anything

For each --rows N the data (8 CSV shards, scripts/make_data.py) is reused from
WORKDIR/data_N, or generated there. Results are printed
as a table per size and written to WORKDIR/results.json. After the runs an untimed check
compares beam_pipeline's cat_mid, cat_big, int_cat and text (top 10,000) vocabularies, with
their counts, to pyarrow's on the same train split, and reports how far its f_normal mean is
from the exact one.

Not identical work, by design of each tool: beam_pipeline splits train/eval and learns its
statistics on train only (it still transforms and writes every row, into two splits); the
baselines learn on all rows and write one output.

Internally each runner is a function run as `python scripts/bench.py --child NAME --rows N
--workdir W`; it prints one JSON line with its own (post-import) timing and details.
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MAKE_DATA = os.path.join(HERE, "make_data.py")
SHARDS = 8
RUNNERS = ("beam_pipeline", "keras", "tft", "pyarrow")

COLUMNS = [("id", "int"), ("f_normal", "float"), ("f_uniform", "float"), ("f_missing", "float"),
           ("cat_small", "string"), ("cat_mid", "string"), ("cat_big", "string"),
           ("int_cat", "int"), ("text", "string"), ("label", "int")]
NUMERIC = ("f_normal", "f_uniform", "f_missing")
STRING_CATS = ("cat_small", "cat_mid", "cat_big")
TEXT_TOP_K = 10_000           # learned tokens; Keras's max_tokens adds padding and OOV
TEXT_MAX_TOKENS = TEXT_TOP_K + 2
SEQ_LEN = 20
BATCH = 1024
# Keras's DEFAULT_STRIP_REGEX (string.punctuation), used by the tft and pyarrow runners too.
STRIP_REGEX = r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']'
RESULT_PREFIX = "BENCH_RESULT "


# --------------------------------------------------------------------------- data

def shard_paths(data_dir):
    return [os.path.join(data_dir, f"part-{k:05d}-of-{SHARDS:05d}.csv") for k in range(SHARDS)]


def data_dir_for(rows, workdir):
    """Folder with the N-row shards: reused when complete, else generated (seeded)."""
    out = os.path.join(workdir, f"data_{rows}")
    if all(os.path.exists(p) for p in shard_paths(out)):
        return out
    print(f"generating {rows:,} rows into {out}", flush=True)
    subprocess.run([sys.executable, MAKE_DATA, "--rows", str(rows), "--shards", str(SHARDS),
                    "--out", out], check=True)
    return out


def run_dir(workdir, rows, name):
    """A fresh output folder for one run (old outputs removed, so nothing is appended)."""
    import shutil
    d = os.path.join(workdir, f"run_{rows}", name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


# --------------------------------------------------------------------------- runners
# Each returns a dict of details; the child wrapper adds its own elapsed time.

def run_beam_pipeline(data_dir, out_dir, rows):
    """The project's CLI with a config for this workload and the default runner."""
    import yaml
    features = {name: {"kind": "normalization"} for name in NUMERIC}
    features.update({name: {"kind": "string_lookup"} for name in STRING_CATS})
    features["int_cat"] = {"kind": "integer_lookup"}
    features["text"] = {"kind": "text_vectorization", "max_tokens": TEXT_MAX_TOKENS,
                        "output_sequence_length": SEQ_LEN}
    config = {
        "input": {"format": "csv", "file_pattern": os.path.join(data_dir, "part-*.csv"),
                  "header": True},
        "columns": [{"name": n, "type": t} for n, t in COLUMNS],
        "label": {"column": "label", "kind": "passthrough"},
        "split": {"eval_fraction": 0.2, "key": "id"},
        "features": features,
        "output": {"dir": os.path.join(out_dir, "output")},
    }
    config_path = os.path.join(out_dir, "config.yaml")
    with open(config_path, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    # The console script installed next to this interpreter, exactly as a user runs it.
    cli = os.path.join(os.path.dirname(sys.executable), "beam-pipeline")
    subprocess.run([cli, "preprocess", "--config", config_path, "--overwrite"], check=True,
                   stdout=sys.stderr)  # its summary goes to our stderr; stdout is for results
    with open(os.path.join(out_dir, "output", "run_summary.json")) as f:
        summary = json.load(f)
    return {"rows_written": sum(summary["rows"]["written"].values()),
            "output": os.path.join(out_dir, "output")}


def run_keras(data_dir, out_dir, rows):
    """What a Keras 3 user writes: tf.data from the CSVs, layer.adapt(), map, TFRecordWriter."""
    import numpy as np
    import tensorflow as tf
    import keras

    files = shard_paths(data_dir)
    names = [n for n, _ in COLUMNS]
    defaults = {"int": tf.int64, "float": tf.float32, "string": tf.string}
    # A dtype makes the column required; f_missing gets NaN for its empty cells instead.
    column_defaults = [tf.constant(np.nan, tf.float32) if n == "f_missing" else defaults[t]
                       for n, t in COLUMNS]

    def raw():
        return tf.data.experimental.make_csv_dataset(
            files, batch_size=BATCH, column_names=names, column_defaults=column_defaults,
            header=True, num_epochs=1, shuffle=False)

    # One adapt() per layer, each a full pass over the CSVs: the documented way.
    norms = {}
    for name in NUMERIC:
        norms[name] = keras.layers.Normalization(axis=-1)
        col = raw().map(lambda r, n=name: r[n])
        if name == "f_missing":
            # Adapt on present values only; missing ones are imputed with the mean below.
            col = col.map(lambda x: tf.boolean_mask(x, tf.logical_not(tf.math.is_nan(x))))
        norms[name].adapt(col.map(lambda x: tf.reshape(x, (-1, 1))))
    lookups = {}
    for name in STRING_CATS:
        lookups[name] = keras.layers.StringLookup()
        lookups[name].adapt(raw().map(lambda r, n=name: r[n]))
    lookups["int_cat"] = keras.layers.IntegerLookup()
    lookups["int_cat"].adapt(raw().map(lambda r: r["int_cat"]))
    text = keras.layers.TextVectorization(max_tokens=TEXT_MAX_TOKENS,
                                          output_sequence_length=SEQ_LEN)
    text.adapt(raw().map(lambda r: r["text"]))

    def transform(r):
        out = {}
        for name, layer in norms.items():
            z = layer(tf.reshape(r[name], (-1, 1)))[:, 0]
            # Mean imputation: the mean is 0 after z-scoring.
            out[name] = tf.where(tf.math.is_nan(r[name]), 0.0, z)
        for name, layer in lookups.items():
            out[name] = layer(r[name])
        out["text"] = text(r["text"])
        out["label"] = r["label"]
        return out

    transformed = raw().map(transform, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
        tf.data.AUTOTUNE)

    def feature(values, kind):
        if kind == "float":
            return tf.train.Feature(float_list=tf.train.FloatList(value=values))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    kinds = {name: "float" for name in NUMERIC}
    path = os.path.join(out_dir, "data.tfrecord.gz")
    written = 0
    with tf.io.TFRecordWriter(path, options=tf.io.TFRecordOptions(compression_type="GZIP")) as w:
        for batch in transformed.as_numpy_iterator():
            cols = {name: batch[name].tolist() for name in batch}
            for i in range(len(cols["label"])):
                feats = {}
                for name, values in cols.items():
                    v = values[i]
                    feats[name] = feature(v if isinstance(v, list) else [v],
                                          kinds.get(name, "int"))
                w.write(tf.train.Example(
                    features=tf.train.Features(feature=feats)).SerializeToString())
                written += 1
    return {"rows_written": written, "text_vocab": text.vocabulary_size(),
            "cat_big_vocab": lookups["cat_big"].vocabulary_size()}


def run_tft(data_dir, out_dir, rows):
    """tf.Transform as in its documentation (census example): CsvTFXIO -> AnalyzeAndTransform."""
    import apache_beam as beam
    import tensorflow as tf
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import schema_utils
    from tfx_bsl.coders.example_coder import RecordBatchToExamplesEncoder
    from tfx_bsl.public import tfxio

    dtypes = {"int": tf.int64, "float": tf.float32, "string": tf.string}
    feature_spec = {n: tf.io.FixedLenFeature([], dtypes[t]) for n, t in COLUMNS}
    feature_spec["f_missing"] = tf.io.VarLenFeature(tf.float32)  # has empty cells
    schema = schema_utils.schema_from_feature_spec(feature_spec)

    def preprocessing_fn(inputs):
        out = {}
        for name in ("f_normal", "f_uniform"):
            out[name] = tft.scale_to_z_score(inputs[name])
        # Sparse: the statistics use present values only; missing -> 0, i.e. the mean.
        scaled = tft.scale_to_z_score(inputs["f_missing"])
        out["f_missing"] = tft.sparse_tensor_to_dense_with_shape(
            scaled, [None, 1], default_value=0.0)[:, 0]
        for name in STRING_CATS + ("int_cat",):
            out[name] = tft.compute_and_apply_vocabulary(inputs[name], vocab_filename=name)
        text = tf.strings.regex_replace(tf.strings.lower(inputs["text"]), STRIP_REGEX, "")
        tokens = tf.strings.split(text)
        # Keras's layout: 0 padding, 1 OOV, learned tokens from 2.
        ids = tft.compute_and_apply_vocabulary(tokens, top_k=TEXT_TOP_K, default_value=-1,
                                               vocab_filename="text") + 2
        out["text"] = ids.to_tensor(default_value=0, shape=[None, SEQ_LEN])
        out["label"] = inputs["label"]
        return out

    csv_tfxio = tfxio.CsvTFXIO(file_pattern=os.path.join(data_dir, "part-*.csv"),
                               column_names=[n for n, _ in COLUMNS], schema=schema,
                               skip_header_lines=1)
    # DirectRunner would first try to download the Prism runner (no network here);
    # FnApiRunner is what it runs batch pipelines on anyway.
    with beam.Pipeline(runner="FnApiRunner") as p:
        with tft_beam.Context(temp_dir=os.path.join(out_dir, "tmp")):
            raw_data = p | "ReadCSV" >> csv_tfxio.BeamSource()
            raw_dataset = (raw_data, csv_tfxio.TensorAdapterConfig())
            transformed_dataset, transform_fn = (
                raw_dataset | tft_beam.AnalyzeAndTransformDataset(
                    preprocessing_fn, output_record_batches=True))
            transformed_data, transformed_metadata = transformed_dataset
            encoder = RecordBatchToExamplesEncoder(transformed_metadata.schema)
            _ = (transformed_data
                 | "Encode" >> beam.FlatMapTuple(lambda batch, _: encoder.encode(batch))
                 | "Write" >> beam.io.WriteToTFRecord(
                     os.path.join(out_dir, "data", "part"), file_name_suffix=".tfrecord.gz",
                     compression_type=beam.io.filesystem.CompressionTypes.GZIP))
            _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(out_dir)
    # Counted by the parent after this process ends, so reading back is not timed.
    return {"count_records": os.path.join(out_dir, "data", "part-*")}


def read_tfrecords(pattern):
    """The payloads of gzipped TFRecord files, walking the framing without TensorFlow:
    8-byte length, 4-byte CRC, data, 4-byte CRC."""
    import gzip
    import struct
    for path in sorted(glob.glob(pattern)):
        with gzip.open(path, "rb") as f:
            while True:
                head = f.read(12)
                if not head:
                    break
                (length,) = struct.unpack("<Q", head[:8])
                yield f.read(length)
                f.read(4)


def read_arrow(data_dir):
    """All shards as one pyarrow Table (f_missing's empty cells become nulls)."""
    import pyarrow as pa
    import pyarrow.csv as pv
    types = {"int": pa.int64(), "float": pa.float64(), "string": pa.string()}
    convert = pv.ConvertOptions(column_types={n: types[t] for n, t in COLUMNS},
                                strings_can_be_null=False)
    return pa.concat_tables(pv.read_csv(p, convert_options=convert)
                            for p in shard_paths(data_dir))


def sorted_counts(values, top_k=None):
    """[(token, count)] by count descending, ties by token descending: bytes for strings,
    numerically for integers (Keras's order, and beam_pipeline's)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    vc = pc.value_counts(values)
    tokens = vc.field("values")
    if pa.types.is_string(tokens.type):
        tokens = pc.cast(tokens, pa.binary())
    table = pa.table({"token": tokens, "count": vc.field("counts")})
    order = pc.sort_indices(table, [("count", "descending"), ("token", "descending")])
    table = table.take(order)
    if top_k is not None:
        table = table.slice(0, top_k)
    return [(t.decode("utf-8") if isinstance(t, bytes) else t, c)
            for t, c in zip(table["token"].to_pylist(), table["count"].to_pylist())]


def run_pyarrow(data_dir, out_dir, rows):
    """Exact statistics, vocabularies and every row's ids in memory: the floor for this work."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    t = read_arrow(data_dir)
    out, stats = {}, {}
    for name in NUMERIC:
        col = t[name]
        mean = pc.mean(col).as_py()
        var = pc.variance(col, ddof=0).as_py()  # population variance, as Keras and tft
        stats[name] = {"mean": mean, "variance": var}
        z = (pc.fill_null(col, mean).to_numpy() - mean) / max(np.sqrt(var), 1e-7)
        out[name] = z.astype(np.float32)
    vocabs = {}
    for name in STRING_CATS + ("int_cat",):
        vocab = sorted_counts(t[name])
        vocabs[name] = vocab
        # int_cat's tokens are ints (ordered numerically, as Keras), so no cast to text.
        value_set = pa.array([tok for tok, _ in vocab], type=t[name].type)
        values = t[name]
        out[name] = pc.fill_null(pc.index_in(values, value_set=value_set), -1).to_numpy()
    text = pc.replace_substring_regex(pc.utf8_lower(t["text"]), STRIP_REGEX, "")
    tokens = pc.ascii_split_whitespace(text).combine_chunks()
    flat = tokens.flatten()
    vocab = sorted_counts(flat, TEXT_TOP_K)
    vocabs["text"] = vocab
    flat_ids = pc.fill_null(pc.index_in(flat, value_set=pa.array([tok for tok, _ in vocab])),
                            -1).to_numpy() + 2  # 0 padding, 1 OOV, as Keras
    offsets = tokens.offsets.to_numpy()
    lengths = np.diff(offsets)
    ids = np.zeros((len(lengths), SEQ_LEN), np.int64)
    for j in range(SEQ_LEN):  # pad/truncate to SEQ_LEN, column by column
        has = lengths > j
        ids[has, j] = flat_ids[offsets[:-1][has] + j]
    out["text"] = ids
    out["label"] = t["label"].to_numpy()
    return {"rows_mapped": len(out["label"]), "f_normal_mean": stats["f_normal"]["mean"],
            "vocab_sizes": {k: len(v) for k, v in vocabs.items()}}


CHILDREN = {"beam_pipeline": run_beam_pipeline, "keras": run_keras, "tft": run_tft,
            "pyarrow": run_pyarrow}


def child_main(name, rows, workdir):
    """Runs one runner in this (child) process and prints its result as one JSON line."""
    data_dir = data_dir_for(rows, workdir)
    out_dir = run_dir(workdir, rows, name)
    start = time.perf_counter()
    details = CHILDREN[name](data_dir, out_dir, rows)
    details["work_seconds"] = time.perf_counter() - start  # after this process's start-up
    print(RESULT_PREFIX + json.dumps(details), flush=True)


# --------------------------------------------------------------------------- checking

def read_assets_vocabulary(output_dir, name, integer=False):
    """beam_pipeline's vocabulary `name` as [(token, count)], read as the project reads it."""
    import tensorflow_transform as tft
    from beam_pipeline.outputs.summary import read_vocabulary
    path = tft.TFTransformOutput(output_dir).vocabulary_file_by_name(name)
    return [(e["token"], e["count"]) for e in read_vocabulary(path, integer=integer)]


def check_main(rows, workdir):
    """Untimed: beam_pipeline's vocabularies and f_normal mean against exact pyarrow values.

    beam_pipeline learns on the train split, so the reference is computed on the same rows:
    eval when FarmHash64(str(id)) mod 10000 < 2000 (the rule its README documents;
    tf.strings.to_hash_bucket_fast is FarmHash64 mod n).
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import tensorflow as tf

    data_dir = data_dir_for(rows, workdir)
    output = os.path.join(workdir, f"run_{rows}", "beam_pipeline", "output")
    with open(os.path.join(output, "run_summary.json")) as f:
        summary = json.load(f)
    t = read_arrow(data_dir)
    keys = pc.cast(t["id"], pa.string()).to_numpy(zero_copy_only=False).astype(object)
    buckets = tf.strings.to_hash_bucket_fast(keys, 10_000).numpy()
    train = t.filter(pa.array(buckets >= 2000))
    result = {"train_rows": train.num_rows,
              "beam_train_rows": summary["rows"]["split"]["train"], "vocabularies": {}}
    train_tokens = pc.ascii_split_whitespace(pc.replace_substring_regex(
        pc.utf8_lower(train["text"]), STRIP_REGEX, "")).combine_chunks().flatten()
    references = {"cat_mid": lambda: sorted_counts(train["cat_mid"]),
                  "cat_big": lambda: sorted_counts(train["cat_big"]),
                  "int_cat": lambda: sorted_counts(train["int_cat"]),
                  "text": lambda: sorted_counts(train_tokens, TEXT_TOP_K)}
    for name, reference in references.items():
        got = read_assets_vocabulary(output, name, integer=name == "int_cat")
        want = reference()
        first_diff = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), None)
        result["vocabularies"][name] = {
            "match": got == want, "entries": len(got), "reference_entries": len(want),
            "first_difference": None if first_diff is None else
            {"index": first_diff, "beam_pipeline": got[first_diff], "reference": want[first_diff]}}
    beam_mean = summary["statistics"]["numeric"]["f_normal"]["mean"]
    train_mean = float(np.mean(train["f_normal"].to_numpy()))
    all_mean = pc.mean(t["f_normal"]).as_py()
    result["f_normal_mean"] = {"beam_pipeline_train": beam_mean, "reference_train": train_mean,
                               "diff_vs_train": beam_mean - train_mean,
                               "reference_all_rows": all_mean,
                               "diff_vs_all_rows": beam_mean - all_mean}
    print(RESULT_PREFIX + json.dumps(result), flush=True)


# --------------------------------------------------------------------------- parent

def in_fresh_process(fn, *args):
    """Runs `fn(*args)` (a module-level function) in a spawned process, not forked, and
    waits for it; raises if it fails. For work that grows memory, such as generating
    test data, in a benchmark's parent: a child spawned from a process starts at that
    process's RSS (its ru_maxrss too), so the parent must stay small."""
    import multiprocessing
    proc = multiprocessing.get_context("spawn").Process(target=fn, args=args)
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"{fn.__name__}{args} exited with {proc.exitcode}")


def _tree_rss_mb(root_pid):
    """Summed resident memory (MB) of `root_pid` and all its descendants, from /proc."""
    parents, rss = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            parents[int(entry)] = int(fields[1])
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue  # the process ended while we looked
    tree, frontier = {root_pid}, [root_pid]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier += children
    return sum(rss.get(pid, 0) for pid in tree) / 2**20


class _TreeRssSampler:
    """Polls a process tree's summed RSS four times a second; `peak` is the largest seen.

    ru_maxrss is the peak of one process; with worker processes (multi_processing) the
    memory the job holds is the sum over the tree, which this measures."""

    def __init__(self, pid):
        import threading
        self.peak = 0.0
        self._pid = pid
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._stop.wait(0.25):
            self.peak = max(self.peak, _tree_rss_mb(self._pid))

    def stop(self):
        self._stop.set()
        self._thread.join()
        return self.peak


def spawn(args_list):
    """Runs this script as a child; returns (wall seconds, peak RSS MB, result dict, rc).

    Peak RSS is the larger of the sampled peak of the child's whole process tree (summed
    over its processes) and os.wait4's ru_maxrss (this child's own peak, or that of any
    process it waited for, e.g. the beam-pipeline CLI; not the max over earlier runs as
    RUSAGE_CHILDREN's would be).
    """
    cmd = [sys.executable, os.path.abspath(__file__)] + args_list
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    sampler = _TreeRssSampler(proc.pid)
    lines = []
    for line in proc.stdout:  # drain as it runs so the child never blocks on a full pipe
        lines.append(line)
    tree_peak = sampler.stop()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    result = None
    for line in lines:
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX):])
        else:
            sys.stdout.write(line)
    # ru_maxrss is KiB on Linux
    return wall, max(tree_peak, usage.ru_maxrss / 1024), result, proc.returncode


def print_table(rows, runs):
    print(f"\n=== {rows:,} rows ===")
    print(f"{'runner':<14} {'wall s':>9} {'work s':>9} {'rows/s':>11} {'peak RSS MB':>12} "
          f"{'speedup':>8}")
    base = runs.get("beam_pipeline", {}).get("wall_seconds")
    for name, r in runs.items():
        if not r["ok"]:
            print(f"{name:<14} FAILED (exit {r['exit_code']})")
            continue
        speedup = f"{r['wall_seconds'] / base:.2f}x" if base and name != "beam_pipeline" else "-"
        work = r.get("work_seconds")
        print(f"{name:<14} {r['wall_seconds']:>9.1f} {work if work is None else f'{work:.1f}':>9} "
              f"{r['rows_per_second']:>11,.0f} {r['peak_rss_mb']:>12,.0f} {speedup:>8}")
        done = r.get("rows_written", r.get("rows_mapped"))
        if done != rows:
            print(f"{'':<14} WARNING: {done} rows written/mapped, expected {rows:,}")
    print("speedup = runner's wall time / beam_pipeline's wall time (>1: beam_pipeline faster)")


def print_check(check):
    for name, v in check["vocabularies"].items():
        verdict = "MATCH" if v["match"] else f"MISMATCH (first difference {v['first_difference']})"
        print(f"vocabulary {name}: {v['entries']} entries vs {v['reference_entries']} "
              f"reference (train split): {verdict}")
    m = check["f_normal_mean"]
    print(f"f_normal mean: beam_pipeline (train) {m['beam_pipeline_train']:.12g}; "
          f"reference train {m['reference_train']:.12g} (diff {m['diff_vs_train']:.3g}); "
          f"reference all rows {m['reference_all_rows']:.12g} "
          f"(diff {m['diff_vs_all_rows']:.3g}, informational)")
    print(f"train rows: reference {check['train_rows']:,}, beam_pipeline "
          f"{check['beam_train_rows']:,}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, action="append",
                        help="rows per run (repeatable); default 1000000")
    parser.add_argument("--only", default=",".join(RUNNERS),
                        help="comma-separated runners, from " + ",".join(RUNNERS))
    parser.add_argument("--workdir", default="/tmp/bench")
    parser.add_argument("--child", choices=list(CHILDREN) + ["check"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = args.rows or [1_000_000]
    if args.child:
        if args.child == "check":
            check_main(sizes[0], args.workdir)
        else:
            child_main(args.child, sizes[0], args.workdir)
        return 0
    only = [r.strip() for r in args.only.split(",") if r.strip()]
    unknown = set(only) - set(RUNNERS)
    if unknown:
        parser.error(f"--only: unknown runners {sorted(unknown)}; choose from {RUNNERS}")
    os.makedirs(args.workdir, exist_ok=True)
    results_path = os.path.join(args.workdir, "results.json")
    results = {"cpu_count": os.cpu_count(), "python": sys.version.split()[0], "sizes": {}}
    for rows in sizes:
        data_dir = data_dir_for(rows, args.workdir)  # generate outside any timed run
        runs = {}
        for name in RUNNERS:
            if name not in only:
                continue
            print(f"--- {name}, {rows:,} rows ({data_dir})", flush=True)
            wall, rss, detail, rc = spawn(["--child", name, "--rows", str(rows),
                                           "--workdir", args.workdir])
            runs[name] = {"ok": rc == 0 and detail is not None, "exit_code": rc,
                          "wall_seconds": wall, "rows_per_second": rows / wall,
                          "peak_rss_mb": rss, **(detail or {})}
            if "count_records" in runs[name]:  # untimed: the child has ended
                runs[name]["rows_written"] = sum(
                    1 for _ in read_tfrecords(runs[name].pop("count_records")))
            print(f"    {wall:.1f} s, peak RSS {rss:,.0f} MB, exit {rc}", flush=True)
        base = runs.get("beam_pipeline")
        for name, r in runs.items():
            if base and base["ok"] and r["ok"] and name != "beam_pipeline":
                r["speedup_vs_beam_pipeline"] = r["wall_seconds"] / base["wall_seconds"]
        entry = {"data": data_dir, "runs": runs}
        if base and base["ok"]:
            _, _, check, rc = spawn(["--child", "check", "--rows", str(rows),
                                     "--workdir", args.workdir])
            entry["check"] = check if rc == 0 else {"error": f"check exited {rc}"}
        results["sizes"][str(rows)] = entry
        with open(results_path, "w") as f:  # after every size, so a later failure keeps it
            json.dump(results, f, indent=1)
    for rows in sizes:
        entry = results["sizes"][str(rows)]
        print_table(rows, entry["runs"])
        if entry.get("check") and "error" not in entry["check"]:
            print_check(entry["check"])
        elif entry.get("check"):
            print(entry["check"]["error"])
    print(f"\nresults: {results_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
