"""Benchmark (issue 18, cardinality): one string column with D distinct values, no max_tokens.

    .venv/bin/python scripts/bench_cardinality.py [--distinct 100000 --distinct 1000000] \
        [--workdir /tmp/bench18/cardinality]

A benchmark to run by hand, never a test. For each D it generates (seeded) 2*D rows in 4
CSV shards: id, `key` and a label, where `key` takes every one of D tokens once plus D more
drawn Zipf(1.2) from the same tokens (so counts range from 1 to about D/5 and most are
tied: ties are ordered by token bytes across the analyzer's hash shards). The config is one
`string_lookup` without `max_tokens`, `eval_fraction: 0` (every row is train, so the
reference is the whole column).

For each D, each in its own child process:
  run    the project's CLI (`beam-pipeline preprocess`, FnApiRunner): wall time and peak RSS
         summed over the process tree (bench.py's sampler)
  step   vocabulary_counts' last step alone (`merge_parts`: the k-way merge of the 32
         sorted part files that `write_part` wrote from this data's shard tables into the
         vocabulary file): its RSS growth (peak RSS, VmHWM reset just before the step via
         /proc/self/clear_refs, minus RSS before) and time; outside Beam
  table  the transform phase's floor: the run's vocabulary file loaded alone into the
         lookup table the transform graph builds (`features.vocabulary.apply`, tft's
         StaticHashTable from a text file), in a TF1 session as tft runs it: its RSS growth
  check  untimed: the written vocabulary (TFTransformOutput.vocabulary_file_by_name) against
         pyarrow's `pc.value_counts`, ordered count descending, ties token bytes descending

Then it prints a table, with peak RSS growth per distinct value between consecutive sizes.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402  (the RSS sampler, the pyarrow reference order)

RESULT_PREFIX = bench.RESULT_PREFIX
SHARDS = 4


def data_dir_for(distinct, workdir):
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pv
    out = os.path.join(workdir, f"data_{distinct}")
    paths = [os.path.join(out, f"part-{k:05d}-of-{SHARDS:05d}.csv") for k in range(SHARDS)]
    if all(os.path.exists(p) for p in paths):
        return out
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(distinct)
    ids = np.concatenate([np.arange(distinct), (rng.zipf(1.2, distinct) - 1) % distinct])
    ids = ids[rng.permutation(len(ids))]
    # Token text: a seeded scramble of the index, so the bytes order is not the index order.
    scrambled = (ids * 2654435761) % (1 << 32)
    keys = pc.binary_join_element_wise(
        "t", pa.array(scrambled.astype(str)), pa.array(ids.astype(str)), "_")
    rows = len(ids)
    per = -(-rows // SHARDS)
    for k, path in enumerate(paths):
        lo, hi = k * per, min(rows, (k + 1) * per)
        table = pa.table({"id": pa.array(np.arange(lo, hi)), "key": keys[lo:hi],
                          "label": pa.array(rng.integers(0, 2, hi - lo))})
        pv.write_csv(table, path, pv.WriteOptions(quoting_style="none"))
    return out


def write_config(data_dir, out_dir):
    import yaml
    config = {
        "input": {"format": "csv", "file_pattern": os.path.join(data_dir, "part-*.csv"),
                  "header": True},
        "columns": [{"name": "id", "type": "int"}, {"name": "key", "type": "string"},
                    {"name": "label", "type": "int"}],
        "label": {"column": "label", "kind": "passthrough"},
        "split": {"eval_fraction": 0.0, "key": "id"},
        "features": {"key": {"kind": "string_lookup"}},
        "output": {"dir": os.path.join(out_dir, "output")},
    }
    path = os.path.join(out_dir, "config.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    return path


def read_column(data_dir):
    import pyarrow as pa
    import pyarrow.csv as pv
    convert = pv.ConvertOptions(column_types={"id": pa.int64(), "key": pa.string(),
                                              "label": pa.int64()})
    return pa.concat_tables(pv.read_csv(os.path.join(data_dir, f), convert_options=convert)
                            for f in sorted(os.listdir(data_dir)))["key"]


def _rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _reset_peak():
    """Resets this process's peak RSS (VmHWM) to its current RSS; False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_mb():
    """VmHWM: this process's peak RSS since start or the last `_reset_peak`."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_step(distinct, workdir):
    """`merge_parts` alone, on part files written from this data's 32 shard tables."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import tensorflow as tf
    from beam_pipeline.features import vocabulary_counts as vc
    column = read_column(data_dir_for(distinct, workdir))
    counts = pc.value_counts(column)
    tokens = pc.cast(counts.field("values"), pa.binary())
    shards = tf.strings.to_hash_bucket_fast(tokens.to_numpy(zero_copy_only=False),
                                            vc.SHARDS).numpy()
    table = pa.table({"token": tokens, "count": counts.field("counts")})
    step_dir = os.path.join(workdir, f"step_{distinct}")
    parts, arrow_bytes = [], 0
    for s in range(vc.SHARDS):
        shard = table.filter(pa.array(shards == s))
        arrow_bytes += shard.nbytes
        parts.append(vc.write_part((s, shard), os.path.join(step_dir, "parts"), None, 0))
    del column, counts, tokens, table, shard
    reset = _reset_peak()
    before = _rss_mb()
    pool_before = pa.total_allocated_bytes()
    path = os.path.join(step_dir, "vocab")
    start = time.perf_counter()
    vc.merge_parts(parts, path, None)
    seconds = time.perf_counter() - start
    peak = _peak_mb()
    print(RESULT_PREFIX + json.dumps({
        "step_seconds": seconds, "rss_before_mb": before, "peak_mb": peak,
        "peak_was_reset": reset,
        "step_growth_mb": peak - before, "shard_tables_arrow_mb": arrow_bytes / 2**20,
        "arrow_pool_after_mb": (pa.total_allocated_bytes() - pool_before) / 2**20,
        "file_mb": os.path.getsize(path) / 2**20}), flush=True)


def child_table(distinct, workdir):
    """The run's vocabulary file loaded into the transform graph's lookup table, alone."""
    import tensorflow as tf
    import tensorflow_transform as tft
    from beam_pipeline.features import vocabulary
    output = os.path.join(workdir, f"run_{distinct}", "output")
    path = tft.TFTransformOutput(output).vocabulary_file_by_name("key")
    with tf.Graph().as_default():
        keys = tf.compat.v1.placeholder(tf.string, [None])
        index = vocabulary.apply(keys, tf.constant(path), "probe")
        with tf.compat.v1.Session() as session:
            session.run(tf.constant(0))  # the runtime's own start-up is not the table's
            reset = _reset_peak()
            before = _rss_mb()
            start = time.perf_counter()
            session.run(tf.compat.v1.tables_initializer())
            found = session.run(index, {keys: [b"not-a-token"]})
            seconds = time.perf_counter() - start
            peak = _peak_mb()
    print(RESULT_PREFIX + json.dumps({
        "table_seconds": seconds, "rss_before_mb": before, "peak_mb": peak,
        "peak_was_reset": reset, "table_growth_mb": peak - before,
        "absent_index": int(found[0])}), flush=True)


def child_check(distinct, workdir):
    data_dir = data_dir_for(distinct, workdir)
    output = os.path.join(workdir, f"run_{distinct}", "output")
    got = bench.read_assets_vocabulary(output, "key")
    want = bench.sorted_counts(read_column(data_dir))
    first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), None)
    print(RESULT_PREFIX + json.dumps({
        "match": got == want, "entries": len(got), "reference_entries": len(want),
        "first_difference": None if first is None else
        {"index": first, "beam_pipeline": got[first], "reference": want[first]}}), flush=True)


def spawn(cmd):
    """(wall s, peak RSS MB of the process tree, result dict or None, exit code)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    sampler = bench._TreeRssSampler(proc.pid)  # pylint: disable=protected-access
    lines = list(proc.stdout)
    peak = sampler.stop()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    result = None
    for line in lines:
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX):])
    return wall, max(peak, usage.ru_maxrss / 1024), result, os.waitstatus_to_exitcode(status)


CHILDREN = {"step": child_step, "table": child_table, "check": child_check}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--distinct", type=int, action="append",
                        help="distinct values (repeatable); default 100000, 1000000")
    parser.add_argument("--workdir", default="/tmp/bench18/cardinality")
    parser.add_argument("--skip-step", action="store_true")
    parser.add_argument("--child", choices=tuple(CHILDREN), help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = args.distinct or [100_000, 1_000_000]
    if args.child:
        CHILDREN[args.child](sizes[0], args.workdir)
        return 0
    os.makedirs(args.workdir, exist_ok=True)
    results, path = {"cpu_count": os.cpu_count(), "sizes": {}}, os.path.join(
        args.workdir, "results.json")
    cli = os.path.join(os.path.dirname(sys.executable), "beam-pipeline")
    me = [sys.executable, os.path.abspath(__file__)]
    for d in sizes:
        bench.in_fresh_process(data_dir_for, d, args.workdir)  # this process stays small
        data_dir = data_dir_for(d, args.workdir)
        out_dir = os.path.join(args.workdir, f"run_{d}")
        subprocess.run(["rm", "-rf", out_dir], check=True)
        os.makedirs(out_dir)
        print(f"--- run, {d:,} distinct ({2 * d:,} rows)", flush=True)
        wall, rss, _, rc = spawn([cli, "preprocess", "--config", write_config(data_dir, out_dir),
                                  "--overwrite"])
        entry = {"rows": 2 * d, "ok": rc == 0, "exit_code": rc, "wall_seconds": wall,
                 "peak_rss_mb": rss}
        print(f"    {wall:.1f} s, peak RSS {rss:,.0f} MB, exit {rc}", flush=True)
        if rc == 0:
            _, _, entry["check"], _ = spawn(me + ["--child", "check", "--distinct", str(d),
                                                  "--workdir", args.workdir])
            print(f"    check {json.dumps(entry['check'])}", flush=True)
            _, _, entry["table"], _ = spawn(me + ["--child", "table", "--distinct", str(d),
                                                  "--workdir", args.workdir])
            print(f"    table {json.dumps(entry['table'])}", flush=True)
        if not args.skip_step:
            _, _, entry["step"], _ = spawn(me + ["--child", "step", "--distinct", str(d),
                                                 "--workdir", args.workdir])
            print(f"    step {json.dumps(entry['step'])}", flush=True)
        results["sizes"][str(d)] = entry
        with open(path, "w") as f:
            json.dump(results, f, indent=1)

    print(f"\n=== one string_lookup, no max_tokens; {os.cpu_count()} cores, shared machine ===")
    print(f"{'distinct':>10} {'rows':>10} {'wall s':>7} {'peak MB':>8} {'B/distinct*':>11} "
          f"{'exact':>6} {'step s':>7} {'step MB':>8} {'step B/distinct':>15} {'table MB':>8} "
          f"{'table B/distinct':>16}")
    prev = None
    for d in sizes:
        e = results["sizes"][str(d)]
        per = "-"
        if prev and e["ok"] and prev[1]["ok"]:
            per = f"{(e['peak_rss_mb'] - prev[1]['peak_rss_mb']) * 2**20 / (d - prev[0]):,.0f}"
        check = e.get("check") or {}
        step = e.get("step") or {}
        exact = {True: "yes", False: "NO"}.get(check.get("match"), "-")
        step_s = f"{step['step_seconds']:.1f}" if step else "-"
        step_mb = f"{step['step_growth_mb']:,.0f}" if step else "-"
        step_b = f"{step['step_growth_mb'] * 2**20 / d:,.0f}" if step else "-"
        table = e.get("table") or {}
        table_mb = f"{table['table_growth_mb']:,.0f}" if table else "-"
        table_b = f"{table['table_growth_mb'] * 2**20 / d:,.0f}" if table else "-"
        print(f"{d:>10,} {e['rows']:>10,} {e['wall_seconds']:>7.1f} {e['peak_rss_mb']:>8,.0f} "
              f"{per:>11} {exact:>6} {step_s:>7} {step_mb:>8} {step_b:>15} {table_mb:>8} "
              f"{table_b:>16}")
        prev = (d, e)
    print("* peak RSS growth per added distinct value, against the previous size")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
