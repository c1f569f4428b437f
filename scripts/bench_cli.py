"""Wall-clock start-up cost of the `beam-pipeline` command: not a test, a measurement.

Times, in fresh subprocesses, `beam-pipeline --help`, a config error (a config with an
unknown top-level key, exit code 2) and `inspect` of a finished run's output folder, each
--runs times, and prints the median (and min, max) of each:

    .venv/bin/python scripts/bench_cli.py --inspect examples/sample/output [--runs 5]

The command runs as `python -m beam_pipeline.cli` with this interpreter, so PYTHONPATH
picks the checkout measured (`PYTHONPATH=/tmp/other_checkout python scripts/bench_cli.py
...` times another one; the line "package:" says which was imported).
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import yaml


def _time(cmd, expect_code, env):
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode != expect_code:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}, expected {expect_code}:\n"
                         f"{proc.stderr[-2000:]}")
    return elapsed, proc


def _bad_config(folder):
    """A config that is valid except for one unknown top-level key."""
    data = os.path.join(folder, "data")
    os.makedirs(data)
    with open(os.path.join(data, "part-0.csv"), "w") as f:
        f.write("id,x,label\n1,0.5,0\n2,1.5,1\n")
    config = {"input": {"file_pattern": "data/part-*.csv"},
              "columns": [{"name": "id", "type": "int"}, {"name": "x", "type": "float"},
                          {"name": "label", "type": "int"}],
              "label": {"column": "label"},
              "features": {"x": {"kind": "normalization"}},
              "output": {"dir": "out"},
              "no_such_key": 1}
    path = os.path.join(folder, "config.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--inspect", default=None,
                        help="a finished run's output folder (inspect is skipped without it)")
    args = parser.parse_args()
    env = dict(os.environ)
    exe = [sys.executable, "-m", "beam_pipeline.cli"]
    where = subprocess.run([sys.executable, "-c", "import beam_pipeline; "
                            "print(beam_pipeline.__file__)"], capture_output=True, text=True,
                           env=env, check=True).stdout.strip()
    print(f"package: {where}")
    with tempfile.TemporaryDirectory() as tmp:
        cases = [("--help", exe + ["--help"], 0),
                 ("config error", exe + ["preprocess", "--config", _bad_config(tmp)], 2)]
        if args.inspect:
            cases.append(("inspect", exe + ["inspect", args.inspect], 0))
        rows = []
        for name, cmd, code in cases:
            times = []
            for _ in range(args.runs):
                elapsed, proc = _time(cmd, code, env)
                times.append(elapsed)
            stderr_lines = len([l for l in proc.stderr.splitlines() if l.strip()])
            rows.append((name, statistics.median(times), min(times), max(times), stderr_lines))
    print(f"{'command':<14} {'median s':>9} {'min s':>7} {'max s':>7} {'stderr lines':>13}"
          f"   ({args.runs} runs each)")
    for name, median, low, high, lines in rows:
        print(f"{name:<14} {median:>9.2f} {low:>7.2f} {high:>7.2f} {lines:>13}")


if __name__ == "__main__":
    main()
