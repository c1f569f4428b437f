"""Times an incremental refresh (one new span of four, three cached) against a full one.

    python scripts/bench_refresh.py --rows-per-span 250000 --out /tmp/bench_refresh

Both run in this invocation, one after the other, on the same generated spans with the
default local runner, through the `beam-pipeline refresh` command; the ratio is what to
read (this machine is shared and noisy).
"""

import argparse
import os
import shutil
import subprocess
import sys
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
COLUMNS = [{"name": n, "type": t} for n, t in (
    ("id", "int"), ("f_normal", "float"), ("f_uniform", "float"), ("f_missing", "float"),
    ("cat_small", "string"), ("cat_mid", "string"), ("cat_big", "string"), ("int_cat", "int"),
    ("text", "string"), ("label", "int"))]
FEATURES = {
    "f_normal": {"kind": "normalization"}, "f_uniform": {"kind": "normalization"},
    "f_missing": {"kind": "normalization", "missing_indicator": True},
    "cat_small": {"kind": "string_lookup"}, "cat_mid": {"kind": "string_lookup"},
    "cat_big": {"kind": "string_lookup"}, "int_cat": {"kind": "integer_lookup"},
    "text": {"kind": "text_vectorization", "max_tokens": 10000, "output_sequence_length": 20},
}


def _root(base, name, spans):
    root = os.path.join(base, name)
    os.makedirs(os.path.join(root, "data"), exist_ok=True)
    for span in spans:
        _link_span(base, root, span)
    config = {"input": {"file_pattern": os.path.join(root, "data", "*", "*.csv")},
              "columns": COLUMNS, "label": {"column": "label"},
              "split": {"eval_fraction": 0.2, "key": "id"}, "features": FEATURES,
              "output": {"dir": os.path.join(root, "out")},
              "refresh": {"drift": {"defaults": {"row_count_change": None}}}}
    path = os.path.join(root, "config.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
    return root, path


def _link_span(base, root, span):
    """The span's files hard-linked into the root's data folder (Beam's glob does not
    follow symlinked folders)."""
    os.makedirs(os.path.join(root, "data", span))
    for name in os.listdir(os.path.join(base, "spans", span)):
        os.link(os.path.join(base, "spans", span, name), os.path.join(root, "data", span, name))


def _refresh(path) -> float:
    exe = os.path.join(os.path.dirname(sys.executable), "beam-pipeline")
    started = time.perf_counter()
    subprocess.run([exe, "refresh", "--config", path], check=True, capture_output=True)
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows-per-span", type=int, default=250_000)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    spans = [f"2026-11-0{i + 1}" for i in range(4)]
    for i, span in enumerate(spans):
        subprocess.run([sys.executable, os.path.join(HERE, "make_data.py"), "--rows",
                        str(args.rows_per_span), "--shards", "1", "--seed", str(10 + i),
                        "--start-id", str(i * args.rows_per_span),
                        "--out", os.path.join(args.out, "spans", span)], check=True)
    root, path = _root(args.out, "incremental", spans[:3])
    first = _refresh(path)  # three spans, the cache filled
    _link_span(args.out, root, spans[3])
    incremental = _refresh(path)
    _, full_path = _root(args.out, "full", spans)
    full = _refresh(full_path)
    rows = 4 * args.rows_per_span
    print(f"spans: 4 x {args.rows_per_span:,} rows")
    print(f"first refresh (3 spans, cache filled): {first:8.1f} s")
    print(f"incremental refresh (+1 span, 3 cached): {incremental:6.1f} s  {rows / incremental:,.0f} rows/s")
    print(f"full refresh (4 spans, no cache):       {full:6.1f} s  {rows / full:,.0f} rows/s")
    print(f"incremental / full: {incremental / full:.2f}")


if __name__ == "__main__":
    main()
