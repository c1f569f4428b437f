"""Wall-clock start-up cost of the `beam-pipeline` command: not a test, a measurement.

Times, in fresh subprocesses, `beam-pipeline --help`, two config errors (exit code 2: a
config with an unknown top-level key, and one with a bad option of a feature kind) and
`inspect` of a finished run's output folder, each --runs times, and prints the median (and
min, max) of each, and which heavy libraries (TensorFlow, tf.Transform, Beam, Keras) the
command imported:

    .venv/bin/python scripts/bench_cli.py --inspect examples/sample/output [--runs 5]

The command runs as `python -m beam_pipeline.cli` with this interpreter, in a scratch
working directory, so PYTHONPATH picks the checkout measured (the line "package:" says
which was imported). `--baseline DIR` times another checkout (e.g. `git archive HEAD~3 |
tar -x -C /tmp/base`) in the same call: the two run in turn, A B A B ..., so a machine
whose speed drifts during the call slows both alike.
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
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=env["BENCH_CWD"])
    elapsed = time.perf_counter() - start
    if proc.returncode != expect_code:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}, expected {expect_code}:\n"
                         f"{proc.stderr[-2000:]}")
    return elapsed, proc


# Run after the command, in the same process: which heavy libraries it imported.
_REPORT = ("import runpy, sys\n"
           "sys.argv = ['beam-pipeline'] + sys.argv[1:]\n"
           "try:\n"
           "    code = __import__('beam_pipeline.cli').cli.main()\n"
           "except SystemExit as e:\n"
           "    code = e.code\n"
           "heavy = [m for m in ('tensorflow', 'tensorflow_transform', 'apache_beam', 'keras')"
           " if m in sys.modules]\n"
           "sys.stderr.write('\\nHEAVY ' + (','.join(heavy) or '-') + '\\n')\n"
           "sys.stdout.flush()\n"
           "import os; os._exit(code or 0)\n")


def _heavy(cmd, env):
    """The heavy libraries the command (`python -m beam_pipeline.cli ARGS`) imports."""
    proc = subprocess.run([cmd[0], "-c", _REPORT] + cmd[3:], capture_output=True, text=True,
                          env=env, cwd=env["BENCH_CWD"])
    return proc.stderr.rsplit("HEAVY ", 1)[-1].strip() if "HEAVY " in proc.stderr else "?"


def _bad_config(folder, bad_option=False):
    """A config that is valid except for one unknown top-level key (or, with `bad_option`,
    a feature kind option out of range)."""
    data = os.path.join(folder, "data")
    os.makedirs(data, exist_ok=True)
    with open(os.path.join(data, "part-0.csv"), "w") as f:
        f.write("id,x,label\n1,0.5,0\n2,1.5,1\n")
    config = {"input": {"file_pattern": "data/part-*.csv"},
              "columns": [{"name": "id", "type": "int"}, {"name": "x", "type": "float"},
                          {"name": "label", "type": "int"}],
              "label": {"column": "label"},
              "features": {"x": {"kind": "normalization"}},
              "output": {"dir": "out"}}
    if bad_option:
        config["features"]["c"] = {"kind": "string_lookup", "column": "x", "max_tokens": 0}
        config["columns"][1]["type"] = "string"
        config["features"].pop("x")
    else:
        config["no_such_key"] = 1
    path = os.path.join(folder, "bad_option.yaml" if bad_option else "config.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--inspect", default=None,
                        help="a finished run's output folder (inspect is skipped without it)")
    parser.add_argument("--baseline", default=None,
                        help="another checkout's root, timed in turn with this one")
    args = parser.parse_args()
    exe = [sys.executable, "-m", "beam_pipeline.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        checkouts = [("new", os.environ.get("PYTHONPATH"))]
        if args.baseline:
            checkouts.insert(0, ("baseline", os.path.abspath(args.baseline)))
        envs = {}
        for label, path in checkouts:
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            if path:
                env["PYTHONPATH"] = path
            env["BENCH_CWD"] = tmp
            envs[label] = env
            where = subprocess.run([sys.executable, "-c", "import beam_pipeline; "
                                    "print(beam_pipeline.__file__)"], capture_output=True,
                                   text=True, env=env, cwd=tmp, check=True).stdout.strip()
            print(f"package ({label}): {where}")
        cases = [("--help", exe + ["--help"], 0),
                 ("config error (unknown key)",
                  exe + ["preprocess", "--config", _bad_config(tmp)], 2),
                 ("config error (kind option)",
                  exe + ["preprocess", "--config", _bad_config(tmp, bad_option=True)], 2)]
        if args.inspect:
            cases.append(("inspect", exe + ["inspect", os.path.abspath(args.inspect)], 0))
        rows = []
        for name, cmd, code in cases:
            times = {label: [] for label in envs}
            last = {}
            for _ in range(args.runs):
                for label, env in envs.items():  # in turn: baseline, new, baseline, new ...
                    elapsed, last[label] = _time(cmd, code, env)
                    times[label].append(elapsed)
            for label, env in envs.items():
                stderr_lines = len([l for l in last[label].stderr.splitlines() if l.strip()])
                rows.append((name, label, statistics.median(times[label]), min(times[label]),
                             max(times[label]), stderr_lines, _heavy(cmd, env)))
    print(f"{'command':<27} {'checkout':<9} {'median s':>9} {'min s':>7} {'max s':>7} "
          f"{'stderr lines':>13}  heavy imports   ({args.runs} runs each)")
    for name, label, median, low, high, lines, heavy in rows:
        print(f"{name:<27} {label:<9} {median:>9.2f} {low:>7.2f} {high:>7.2f} {lines:>13}  "
              f"{heavy}")


if __name__ == "__main__":
    main()
