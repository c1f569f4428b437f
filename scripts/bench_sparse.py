"""Benchmark (issue 18, sparse outputs): wide text vectors written dense against sparse.

    .venv/bin/python scripts/bench_sparse.py [--rows 20000] [--tokens 5000 --tokens 50000] \
        [--workdir /tmp/bench18/sparse]

A benchmark to run by hand, never a test. It generates (seeded) ROWS rows in 4 CSV shards:
id, a label and `text`, 10 to 60 words per row drawn Zipf(1.1) from 200,000 words, so even
the top 50,000 tokens are all seen. For each --tokens T it runs the project's CLI
(`beam-pipeline preprocess`, default local runner), one after another in this invocation,
on one `text_vectorization` feature with `max_tokens: T` in each of these modes:

  int               output_mode int, output_sequence_length 64: the baseline the issue names
  tf_idf dense      output_mode tf_idf, [T] floats per row (the default, `sparse: false`)
  tf_idf sparse     the same with `sparse: true` (indices and values of the nonzeros)
  multi_hot dense   output_mode multi_hot
  multi_hot sparse  output_mode multi_hot, `sparse: true`

and prints wall time, peak RSS (summed over the process tree, bench.py's sampler) and the
bytes of the gzipped TFRecords (train and eval), with each mode's wall against `int` and
the dense file's size against the sparse one. Results go to WORKDIR/results.json.
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402  (the process-tree RSS sampler)

SHARDS = 4
WORDS = 200_000
MODES = (("int", "int", False), ("tf_idf dense", "tf_idf", False),
         ("tf_idf sparse", "tf_idf", True), ("multi_hot dense", "multi_hot", False),
         ("multi_hot sparse", "multi_hot", True))


def data_dir_for(rows, workdir):
    """Folder with the seeded text shards, reused when complete."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pv
    out = os.path.join(workdir, f"data_{rows}")
    paths = [os.path.join(out, f"part-{k:05d}-of-{SHARDS:05d}.csv") for k in range(SHARDS)]
    if all(os.path.exists(p) for p in paths):
        return out
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(rows)
    lengths = rng.integers(10, 61, rows)
    words = (rng.zipf(1.1, int(lengths.sum())) - 1) % WORDS
    # Word text: a seeded scramble of the rank, so byte order is not frequency order.
    names = pc.binary_join_element_wise(
        "w", pa.array(((words * 2654435761) % (1 << 24)).astype(str)), "")
    ends = np.cumsum(lengths)
    rows_text = pa.array([" ".join(names[s:e].to_pylist())
                          for s, e in zip(np.append(0, ends[:-1]), ends)])
    per = -(-rows // SHARDS)
    for k, path in enumerate(paths):
        lo, hi = k * per, min(rows, (k + 1) * per)
        pv.write_csv(pa.table({"id": pa.array(np.arange(lo, hi)), "text": rows_text[lo:hi],
                               "label": pa.array(rng.integers(0, 2, hi - lo))}), path)
    return out


def write_config(data_dir, out_dir, tokens, mode, sparse):
    import yaml
    feature = {"kind": "text_vectorization", "max_tokens": tokens, "output_mode": mode}
    if mode == "int":
        feature["output_sequence_length"] = 64
    if sparse:
        feature["sparse"] = True
    config = {
        "input": {"format": "csv", "file_pattern": os.path.join(data_dir, "part-*.csv"),
                  "header": True},
        "columns": [{"name": "id", "type": "int"}, {"name": "text", "type": "string"},
                    {"name": "label", "type": "int"}],
        "label": {"column": "label", "kind": "passthrough"},
        "features": {"text": feature},
        "output": {"dir": os.path.join(out_dir, "output")},
    }
    path = os.path.join(out_dir, "config.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    return path


def tfrecord_bytes(output_dir):
    """Bytes of the transformed, gzipped TFRecords of every split."""
    data = os.path.join(output_dir, "data")
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(data) for name in names
               if ".tfrecord" in name)


def spawn(cmd):
    """(wall s, peak RSS MB of the process tree, exit code) of one command."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    sampler = bench._TreeRssSampler(proc.pid)  # pylint: disable=protected-access
    _, status, usage = os.wait4(proc.pid, 0)
    peak = sampler.stop()
    return (time.perf_counter() - start, max(peak, usage.ru_maxrss / 1024),
            os.waitstatus_to_exitcode(status))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--tokens", type=int, action="append",
                        help="max_tokens (repeatable); default 5000, 50000")
    parser.add_argument("--workdir", default="/tmp/bench18/sparse")
    args = parser.parse_args()
    sizes = args.tokens or [5_000, 50_000]
    os.makedirs(args.workdir, exist_ok=True)
    bench.in_fresh_process(data_dir_for, args.rows, args.workdir)  # this process stays small
    data_dir = data_dir_for(args.rows, args.workdir)
    cli = os.path.join(os.path.dirname(sys.executable), "beam-pipeline")
    results = {"cpu_count": os.cpu_count(), "rows": args.rows, "runs": {}}
    path = os.path.join(args.workdir, "results.json")
    for tokens in sizes:
        for label, mode, sparse in MODES:
            out_dir = os.path.join(args.workdir, f"run_{tokens}_{label.replace(' ', '_')}")
            subprocess.run(["rm", "-rf", out_dir], check=True)
            os.makedirs(out_dir)
            config = write_config(data_dir, out_dir, tokens, mode, sparse)
            wall, rss, rc = spawn([cli, "preprocess", "--config", config])
            entry = {"wall_seconds": wall, "peak_rss_mb": rss, "exit_code": rc,
                     "tfrecord_bytes": tfrecord_bytes(os.path.join(out_dir, "output"))
                     if rc == 0 else None}
            results["runs"][f"{tokens} {label}"] = entry
            print(f"{tokens:>6} {label:<17} {wall:6.1f} s {rss:7,.0f} MB "
                  f"{(entry['tfrecord_bytes'] or 0) / 2**20:9.2f} MiB  exit {rc}", flush=True)
            with open(path, "w") as f:
                json.dump(results, f, indent=1)

    print(f"\n=== {args.rows:,} rows, one text_vectorization; {os.cpu_count()} cores, "
          "shared machine ===")
    print(f"{'tokens':>6} {'mode':<17} {'wall s':>7} {'vs int':>7} {'peak MB':>8} "
          f"{'TFRecord MiB':>12} {'dense/sparse':>12}")
    for tokens in sizes:
        runs = {label: results["runs"][f"{tokens} {label}"] for label, _, _ in MODES}
        base = runs["int"]["wall_seconds"]
        for label, _, sparse in MODES:
            e = runs[label]
            size = e["tfrecord_bytes"]
            ratio = "-"
            if sparse and size:
                dense = runs[label.replace("sparse", "dense")]["tfrecord_bytes"]
                ratio = f"{dense / size:.1f}x" if dense else "-"
            size_text = f"{size / 2**20:.2f}" if size is not None else "failed"
            print(f"{tokens:>6} {label:<17} {e['wall_seconds']:>7.1f} "
                  f"{e['wall_seconds'] / base:>6.2f}x {e['peak_rss_mb']:>8,.0f} "
                  f"{size_text:>12} {ratio:>12}")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
