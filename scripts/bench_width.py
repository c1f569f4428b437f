"""Benchmark (issue 18, width): how the pipeline grows with the number of features.

    .venv/bin/python scripts/bench_width.py [--features 10 --features 100 --features 1000] \
        [--rows 10000] [--run-features 10 --run-features 100] [--only beam_pipeline,tft] \
        [--workdir /tmp/bench18/width]

A benchmark to run by hand, never a test. For each N it generates (seeded, inside this
script; scripts/make_data.py is unchanged) a CSV with id, label and N feature columns:
60% floats (`normalization` / tft.scale_to_z_score), 30% Zipf categoricals with 1,000
values (`string_lookup` / tft.compute_and_apply_vocabulary), 5% text of 5-15 tokens from a
2,000-word vocabulary with unigrams and bigrams, top 1,000, padded to 20
(`text_vectorization` / tft.ngrams + tft.compute_and_apply_vocabulary) and 5% categoricals
with 10,000 values hashed into 1,024 bins (`hashing` / tft.hash_strings). With N=10 that is
5 / 3 / 1 / 1 (text and hashing are at least one each).

Build (every N, both runners): the time to construct `beam.Pipeline` and add the job
(`beam_pipeline.job.pipeline.build`, as `preprocess._run` does; for tf.Transform the
documented CsvTFXIO -> AnalyzeAndTransformDataset -> WriteToTFRecord graph), without running
it, then `pipeline.to_runner_api()`: its ByteSize and its number of transforms
(`components.transforms`, composites included).

Run (each --run-features N, at --rows): wall time and peak RSS (summed over the process
tree, bench.py's sampler) of the project's CLI and of the tf.Transform baseline.

Every measurement runs in its own child process (`--child KIND --features N`), so memory
and imports do not leak between them. Results are printed and written to
WORKDIR/results.json.
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402  (the RSS sampler and result protocol)

RESULT_PREFIX = bench.RESULT_PREFIX
SHARDS = 4
TEXT_WORDS = 2_000
TEXT_TOP_K = 1_000
SEQ_LEN = 20
CAT_VALUES = 1_000
HASH_VALUES = 10_000
HASH_BINS = 1_024
STRIP_REGEX = bench.STRIP_REGEX


# --------------------------------------------------------------------------- data

def feature_mix(n):
    """(numeric, string, text, hashed) column names for N features (60/30/5/5)."""
    n_text = max(1, n // 20)
    n_hash = max(1, n // 20)
    n_str = round(0.3 * n)
    n_num = n - n_text - n_hash - n_str
    return ([f"num_{i}" for i in range(n_num)], [f"cat_{i}" for i in range(n_str)],
            [f"text_{i}" for i in range(n_text)], [f"hash_{i}" for i in range(n_hash)])


def columns_for(n):
    num, cat, text, hashed = feature_mix(n)
    return ([("id", "int")] + [(c, "float") for c in num]
            + [(c, "string") for c in cat + text + hashed] + [("label", "int")])


def data_dir_for(n, rows, workdir):
    """Seeded wide CSV shards for N features (reused when present)."""
    import numpy as np
    out = os.path.join(workdir, f"data_{n}f_{rows}")
    paths = [os.path.join(out, f"part-{k:05d}-of-{SHARDS:05d}.csv") for k in range(SHARDS)]
    if all(os.path.exists(p) for p in paths):
        return out
    os.makedirs(out, exist_ok=True)
    num, cat, text, hashed = feature_mix(n)
    rng = np.random.default_rng(n)
    words = bench_words(TEXT_WORDS)
    names = [c for c, _ in columns_for(n)]
    per_shard = -(-rows // SHARDS)
    for shard, path in enumerate(paths):
        start = shard * per_shard
        size = max(0, min(per_shard, rows - start))
        cols = [np.arange(start, start + size).astype(str)]
        for _ in num:
            cols.append(np.char.mod("%.6g", rng.normal(rng.uniform(-5, 5), rng.uniform(0.5, 3),
                                                       size)))
        for _ in cat:
            cols.append(np.char.add("v", ((rng.zipf(1.3, size) - 1) % CAT_VALUES).astype(str)))
        for _ in text:
            lengths = rng.integers(5, 16, size)
            tokens = words[(rng.zipf(1.2, int(lengths.sum())) - 1) % TEXT_WORDS]
            bounds = np.concatenate([[0], np.cumsum(lengths)])
            cols.append(np.array([" ".join(tokens[bounds[i]:bounds[i + 1]])
                                  for i in range(size)], dtype=object))
        for _ in hashed:
            cols.append(np.char.add("h", rng.integers(0, HASH_VALUES, size).astype(str)))
        cols.append(rng.integers(0, 2, size).astype(str))
        with open(path, "w", encoding="utf-8") as f:
            f.write(",".join(names) + "\n")
            for i in range(size):
                f.write(",".join(c[i] for c in cols) + "\n")
    return out


def bench_words(n):
    import numpy as np
    syllables = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "shi", "pa", "de", "gu", "ze"]
    words = []
    for i in range(n):
        parts, j = [], i
        while True:
            parts.append(syllables[j % len(syllables)])
            j //= len(syllables)
            if j == 0:
                break
        words.append("".join(parts))
    return np.array(words, dtype=object)


# --------------------------------------------------------------------------- beam_pipeline

def write_config(n, data_dir, out_dir):
    import yaml
    num, cat, text, hashed = feature_mix(n)
    features = {c: {"kind": "normalization"} for c in num}
    features.update({c: {"kind": "string_lookup"} for c in cat})
    features.update({c: {"kind": "text_vectorization", "max_tokens": TEXT_TOP_K + 2,
                         "ngrams": 2, "output_sequence_length": SEQ_LEN} for c in text})
    features.update({c: {"kind": "hashing", "num_bins": HASH_BINS} for c in hashed})
    config = {
        "input": {"format": "csv", "file_pattern": os.path.join(data_dir, "part-*.csv"),
                  "header": True},
        "columns": [{"name": c, "type": t} for c, t in columns_for(n)],
        "label": {"column": "label", "kind": "passthrough"},
        "split": {"eval_fraction": 0.2, "key": "id"},
        "features": features,
        "output": {"dir": os.path.join(out_dir, "output")},
    }
    path = os.path.join(out_dir, "config.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    return path


def proto_stats(p):
    """Size and transforms of the pipeline proto, and which leaf transforms hold its bytes:
    leaves grouped by name with the feature names and numbers taken out."""
    import re
    start = time.perf_counter()
    proto = p.to_runner_api()
    seconds = time.perf_counter() - start
    transforms = proto.components.transforms
    leaves = [t for t in transforms.values() if not t.subtransforms]
    groups = {}
    for t in leaves:
        name = re.sub(r"\b(num|cat|text|hash)_\d+", "<f>", t.unique_name)
        name = re.sub(r"\d+", "#", name)
        g = groups.setdefault(name, [0, 0])
        g[0] += 1
        g[1] += t.ByteSize()
    top = sorted(groups.items(), key=lambda kv: -kv[1][1])[:12]
    return {"proto_bytes": proto.ByteSize(), "transforms": len(transforms),
            "leaf_transforms": len(leaves), "to_runner_api_seconds": seconds,
            "coders": len(proto.components.coders),
            "pcollections": len(proto.components.pcollections),
            "top_leaf_groups": [{"name": k, "count": c, "bytes": b} for k, (c, b) in top]}


def build_beam_pipeline(n, data_dir, out_dir):
    """As preprocess._run: load the config, plan the reads, beam.Pipeline, pipeline.build."""
    import apache_beam as beam
    from beam_pipeline.config import load_config
    from beam_pipeline.job import pipeline, preprocess
    from beam_pipeline.outputs import layout
    config = load_config(write_config(n, data_dir, out_dir))
    options = preprocess.pipeline_options([])
    reads = preprocess.preflight(config, overwrite=True)  # checks, before the timed part
    start = time.perf_counter()
    p = beam.Pipeline(options=options)
    pipeline.build(p, config, layout.temp_dir(config.output.dir), None, reads)
    built = time.perf_counter() - start
    return {"build_seconds": built, **proto_stats(p)}


def run_beam_pipeline_cmd(n, data_dir, out_dir):
    """The CLI command line of a full run (the parent times it as its own child)."""
    config = write_config(n, data_dir, out_dir)
    cli = os.path.join(os.path.dirname(sys.executable), "beam-pipeline")
    return [cli, "preprocess", "--config", config, "--overwrite"]


# --------------------------------------------------------------------------- tf.Transform

def tft_pipeline(n, data_dir, out_dir):
    """tf.Transform as documented (bench.py's run_tft) on the same columns; not run."""
    import apache_beam as beam
    import tensorflow as tf
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import schema_utils
    from tfx_bsl.coders.example_coder import RecordBatchToExamplesEncoder
    from tfx_bsl.public import tfxio

    num, cat, text, hashed = feature_mix(n)
    cols = columns_for(n)
    dtypes = {"int": tf.int64, "float": tf.float32, "string": tf.string}
    schema = schema_utils.schema_from_feature_spec(
        {c: tf.io.FixedLenFeature([], dtypes[t]) for c, t in cols})

    def preprocessing_fn(inputs):
        out = {c: tft.scale_to_z_score(inputs[c]) for c in num}
        for c in cat:
            out[c] = tft.compute_and_apply_vocabulary(inputs[c], vocab_filename=c)
        for c in text:
            s = tf.strings.regex_replace(tf.strings.lower(inputs[c]), STRIP_REGEX, "")
            tokens = tf.strings.split(s).to_sparse()
            grams = tft.ngrams(tokens, (1, 2), separator=" ")
            ids = tft.compute_and_apply_vocabulary(grams, top_k=TEXT_TOP_K, default_value=-1,
                                                   vocab_filename=c)
            ids = tf.SparseTensor(ids.indices, ids.values + 2, ids.dense_shape)
            out[c] = tf.RaggedTensor.from_sparse(ids).to_tensor(default_value=0,
                                                                shape=[None, SEQ_LEN])
        for c in hashed:
            out[c] = tft.hash_strings(inputs[c], HASH_BINS)
        out["label"] = inputs["label"]
        return out

    csv_tfxio = tfxio.CsvTFXIO(file_pattern=os.path.join(data_dir, "part-*.csv"),
                               column_names=[c for c, _ in cols], schema=schema,
                               skip_header_lines=1)
    p = beam.Pipeline(runner="FnApiRunner")
    with tft_beam.Context(temp_dir=os.path.join(out_dir, "tmp")):
        raw_data = p | "ReadCSV" >> csv_tfxio.BeamSource()
        transformed_dataset, transform_fn = (
            (raw_data, csv_tfxio.TensorAdapterConfig())
            | tft_beam.AnalyzeAndTransformDataset(preprocessing_fn, output_record_batches=True))
        transformed_data, transformed_metadata = transformed_dataset
        encoder = RecordBatchToExamplesEncoder(transformed_metadata.schema)
        _ = (transformed_data
             | "Encode" >> beam.FlatMapTuple(lambda batch, _: encoder.encode(batch))
             | "Write" >> beam.io.WriteToTFRecord(
                 os.path.join(out_dir, "data", "part"), file_name_suffix=".tfrecord.gz",
                 compression_type=beam.io.filesystem.CompressionTypes.GZIP))
        _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(out_dir)
    return p


def build_tft(n, data_dir, out_dir):
    # Imports outside the timed part (beam_pipeline's are done before its timer too).
    import tensorflow_transform.beam  # noqa: F401
    from tfx_bsl.coders import example_coder  # noqa: F401
    from tfx_bsl.public import tfxio  # noqa: F401
    start = time.perf_counter()
    p = tft_pipeline(n, data_dir, out_dir)
    built = time.perf_counter() - start
    return {"build_seconds": built, **proto_stats(p)}


def run_tft(n, data_dir, out_dir):
    p = tft_pipeline(n, data_dir, out_dir)
    p.run().wait_until_finish()
    return {"output": out_dir}


# --------------------------------------------------------------------------- children

CHILDREN = {"build_beam_pipeline": build_beam_pipeline, "build_tft": build_tft,
            "run_tft": run_tft}


def child_main(kind, n, rows, workdir):
    data_dir = data_dir_for(n, rows, workdir)
    out_dir = os.path.join(workdir, f"{kind}_{n}f_{rows}")
    subprocess.run(["rm", "-rf", out_dir], check=True)
    os.makedirs(out_dir)
    start = time.perf_counter()
    details = CHILDREN[kind](n, data_dir, out_dir)
    details["work_seconds"] = time.perf_counter() - start
    print(RESULT_PREFIX + json.dumps(details), flush=True)


def spawn(cmd, timeout=None):
    """(wall s, peak RSS MB of the process tree, result dict or None, exit code); a child
    still running after `timeout` seconds is killed (its process group) and gets None."""
    import signal
    import threading
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True)
    sampler = bench._TreeRssSampler(proc.pid)  # pylint: disable=protected-access
    timer = None
    if timeout:
        timer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
        timer.start()
    lines = list(proc.stdout)
    if timer:
        timer.cancel()
    peak = sampler.stop()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    result = None
    for line in lines:
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX):])
    return wall, max(peak, usage.ru_maxrss / 1024), result, os.waitstatus_to_exitcode(status)


def me(kind, n, rows, workdir):
    return [sys.executable, os.path.abspath(__file__), "--child", kind, "--features", str(n),
            "--rows", str(rows), "--workdir", workdir]


def ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "-"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--features", type=int, action="append",
                        help="N features for the build measurements (default 10, 100, 1000)")
    parser.add_argument("--run-features", type=int, action="append",
                        help="N features for full runs (default 10, 100; none: --run-features 0)")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--only", default="beam_pipeline,tft")
    parser.add_argument("--workdir", default="/tmp/bench18/width")
    parser.add_argument("--timeout", type=float, default=None,
                        help="kill a child after this many seconds (reported as failed)")
    parser.add_argument("--child", choices=list(CHILDREN), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args.child, args.features[0], args.rows, args.workdir)
        return 0
    widths = args.features or [10, 100, 1000]
    run_widths = [n for n in (args.run_features or [10, 100]) if n]
    only = set(args.only.split(","))
    os.makedirs(args.workdir, exist_ok=True)
    results = {"cpu_count": os.cpu_count(), "rows": args.rows, "build": {}, "run": {}}
    path = os.path.join(args.workdir, "results.json")

    def save():
        with open(path, "w") as f:
            json.dump(results, f, indent=1)

    for n in sorted(set(widths) | set(run_widths)):
        # Outside any timed child, and outside this process, which must stay small
        # (1,000-feature data made every later child's peak at least 1.58 GB).
        bench.in_fresh_process(data_dir_for, n, args.rows, args.workdir)
    for n in widths:
        for runner in ("beam_pipeline", "tft"):
            if runner not in only:
                continue
            print(f"--- build {runner}, {n} features", flush=True)
            wall, rss, detail, rc = spawn(me(f"build_{runner}", n, args.rows, args.workdir),
                                       args.timeout)
            results["build"][f"{runner}/{n}"] = {"ok": rc == 0 and detail is not None,
                                                 "exit_code": rc, "child_wall_seconds": wall,
                                                 "peak_rss_mb": rss, **(detail or {})}
            print(f"    {json.dumps(results['build'][f'{runner}/{n}'])}", flush=True)
            save()
    for n in run_widths:
        for runner in ("beam_pipeline", "tft"):
            if runner not in only:
                continue
            print(f"--- run {runner}, {n} features, {args.rows:,} rows", flush=True)
            if runner == "beam_pipeline":
                out_dir = os.path.join(args.workdir, f"run_beam_pipeline_{n}f_{args.rows}")
                subprocess.run(["rm", "-rf", out_dir], check=True)
                os.makedirs(out_dir)
                cmd = run_beam_pipeline_cmd(n, data_dir_for(n, args.rows, args.workdir),
                                            out_dir)
            else:
                cmd = me("run_tft", n, args.rows, args.workdir)
            wall, rss, detail, rc = spawn(cmd, args.timeout)
            results["run"][f"{runner}/{n}"] = {"ok": rc == 0, "exit_code": rc,
                                               "wall_seconds": wall, "peak_rss_mb": rss}
            print(f"    {wall:.1f} s, peak RSS {rss:,.0f} MB, exit {rc}", flush=True)
            save()

    print(f"\n=== build (not run); {os.cpu_count()} cores, shared machine: compare ratios ===")
    print(f"{'N':>5} {'runner':<14} {'build s':>8} {'proto bytes':>12} {'transforms':>10} "
          f"{'B/feature':>9} {'tft/bp size':>11} {'tft/bp build':>12}")
    for n in widths:
        bp = results["build"].get(f"beam_pipeline/{n}", {})
        for runner in ("beam_pipeline", "tft"):
            r = results["build"].get(f"{runner}/{n}")
            if not r:
                continue
            if not r["ok"]:
                print(f"{n:>5} {runner:<14} FAILED (exit {r['exit_code']})")
                continue
            extra = ("", "")
            if runner == "tft" and bp.get("ok"):
                extra = (ratio(r["proto_bytes"], bp["proto_bytes"]),
                         ratio(r["build_seconds"], bp["build_seconds"]))
            print(f"{n:>5} {runner:<14} {r['build_seconds']:>8.1f} {r['proto_bytes']:>12,} "
                  f"{r['transforms']:>10,} {r['proto_bytes'] / n:>9,.0f} {extra[0]:>11} "
                  f"{extra[1]:>12}")
    if run_widths:
        print(f"\n=== full local run, {args.rows:,} rows (FnApiRunner) ===")
        print(f"{'N':>5} {'runner':<14} {'wall s':>8} {'peak RSS MB':>12} {'tft/bp wall':>11}")
        for n in run_widths:
            bp = results["run"].get(f"beam_pipeline/{n}", {})
            for runner in ("beam_pipeline", "tft"):
                r = results["run"].get(f"{runner}/{n}")
                if not r:
                    continue
                # A failed run's wall is its time to failure: no ratio to compare.
                rel = (ratio(r["wall_seconds"], bp.get("wall_seconds"))
                       if runner == "tft" and r["ok"] and bp.get("ok") else "")
                status = "" if r["ok"] else f" FAILED (exit {r['exit_code']})"
                print(f"{n:>5} {runner:<14} {r['wall_seconds']:>8.1f} {r['peak_rss_mb']:>12,.0f} "
                      f"{rel:>11}{status}")
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
