"""The `beam-pipeline` command.

    beam-pipeline preprocess --config CONFIG [--overwrite] [beam pipeline options...]
    beam-pipeline refresh --config CONFIG [--force]  (versioned run, gates, atomic publish)
    beam-pipeline refresh --config CONFIG --accept-drift RUN_ID  (publish a blocked run)
    beam-pipeline train --config CONFIG          (fits, evaluates, exports the serving model)
    beam-pipeline predict --model DIR --input FILE [--output FILE] [--skip-bad-rows FILE]
    beam-pipeline inspect OUTPUT [--records N]

Every argument preprocess or refresh does not know is a Beam pipeline option and reaches
`PipelineOptions` unchanged (one Beam does not know either is an error, exit 2); train,
predict and inspect run no pipeline, so an argument they do not know is an error (`--runner DataflowRunner --project ... --region ...
--temp_location gs://... --setup_file ./setup.py`). Without `--runner`, the job runs on
the local FnApiRunner.

Exit codes: 0 done, 2 config or input error (before any pipeline starts) or an output
another run holds (see `output_lock`), 3 too many rejected records (see `rejects`), 4 a
refresh blocked by drift (see `drift`), 5 no space left on the output's file system.
"""

import argparse
import logging
import os
import re
import sys
import threading

# Nothing heavy is imported here: TensorFlow, tf.Transform and Beam take seconds to import
# (`--help` would wait for them), so each command imports what it needs when it runs.

EXIT_CONFIG_ERROR = 2
EXIT_NO_SPACE = 5
_ENOSPC = 28

# The start-up lines of TensorFlow's and XLA's C++ code (absl logging: oneDNN, cudart_stub,
# cpu_feature_guard, "failed call to cuInit" on a machine without a GPU). They are written
# to file descriptor 2 before absl::InitializeLog() is ever called, so TF_CPP_MIN_LOG_LEVEL
# does not silence them (TensorFlow 2.21); the console script drops them instead, at the
# default log level only (`--log-level debug` or your own TF_CPP_MIN_LOG_LEVEL keeps them).
# F (fatal) lines are kept: they explain a crash.
NATIVE_LOG_LINE = re.compile(
    rb"^(?:[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.+-]+:\d+\] "
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|To enable the following instructions: .* rebuild TensorFlow with the appropriate "
    rb"compiler flags)")


class _NeverRaised(Exception):
    """Stands in for the exception class of a module not imported yet (so not raised)."""


def _loaded(module: str, name: str):
    """`module.name` if the module has been imported, else `_NeverRaised`: an `except`
    clause naming it then needs no import of a heavy module that cannot have raised."""
    mod = sys.modules.get(module)
    return getattr(mod, name) if mod is not None else _NeverRaised


def load_config(path):
    """`beam_pipeline.config.load_config`, imported on first use (yaml and the kinds'
    option checks: about 0.3 s; a local config imports no TensorFlow nor Beam)."""
    from beam_pipeline.config import load_config as load  # pylint: disable=import-outside-toplevel
    return load(path)


def _no_space(error: BaseException) -> bool:
    """Whether `error`, or one it was raised from, says a file system is full (Beam wraps
    a worker's OSError in a RuntimeError that keeps only its text)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if getattr(error, "errno", None) == _ENOSPC or "No space left on device" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def _no_space_message(output_dir: str) -> str:
    free = ""
    try:
        if "://" in output_dir:
            raise ValueError("not a local path")
        import shutil  # pylint: disable=import-outside-toplevel
        where = os.path.abspath(output_dir)
        while not os.path.exists(where):
            where = os.path.dirname(where)
        free = f" ({shutil.disk_usage(where).free:,} bytes free there now)"
    except (OSError, ValueError):
        pass
    return (f"beam-pipeline: error: no space left on device while writing under {output_dir}"
            f"{free}. Nothing was published: the previous output (and LATEST) is as it was, "
            "and this run's partial files are removed (else the next run removes them). Free "
            "space, or choose an output.dir on a larger file system, and run again.")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="beam-pipeline",
        description="Full-pass preprocessing for Keras models with tf.Transform on Apache Beam.",
        epilog="Arguments not listed here are passed to Beam as pipeline options.")
    commands = parser.add_subparsers(dest="command", required=True)
    preprocess = commands.add_parser(
        "preprocess", help="read raw data, learn statistics on train, write TFRecords",
        epilog="Unknown arguments are Beam pipeline options, e.g. --runner DataflowRunner.")
    preprocess.add_argument("--config", required=True, help="path of the YAML config")
    preprocess.add_argument("--overwrite", action="store_true",
                            help="replace the output folder if it already has content")
    preprocess.add_argument("--log-level", default="WARNING",
                            help="Python logging level (default WARNING)")
    preprocess.add_argument("--progress-interval", type=float, default=None,
                            help="seconds between progress reports (default 0.5 on a "
                                 "terminal, 10 otherwise)")
    refresh = commands.add_parser(
        "refresh", help="a versioned run under the output folder, published only if it is "
                        "complete, within the rejected-records limit and free of drift",
        epilog="Unknown arguments are Beam pipeline options. Exit codes: 0 published or "
               "already up to date, 2 config error, 3 too many rejected records, 4 drift.")
    refresh.add_argument("--config", required=True, help="path of the YAML config")
    refresh_mode = refresh.add_mutually_exclusive_group()
    refresh_mode.add_argument("--force", action="store_true",
                              help="run and publish even if the latest run has this config "
                                   "and input")
    refresh_mode.add_argument("--accept-drift", metavar="RUN_ID", default=None,
                              help="after reviewing its drift report, publish the run the "
                                   "drift gate blocked (runs nothing again)")
    refresh.add_argument("--log-level", default="WARNING")
    refresh.add_argument("--progress-interval", type=float, default=None)
    train = commands.add_parser(
        "train", help="fit the Keras model on the transformed data and export it for serving")
    train.add_argument("--config", required=True, help="path of the YAML config")
    train.add_argument("--run", default=None,
                       help="with refresh runs: the run id to train on (default: latest)")
    train.add_argument("--log-level", default="WARNING")
    predict = commands.add_parser(
        "predict", help="predictions of an exported model for raw rows (CSV or JSON lines)")
    predict.add_argument("--model", required=True, help="the exported SavedModel folder")
    predict.add_argument("--input", required=True, help="CSV with a header, or .jsonl")
    predict.add_argument("--output", help="write JSON lines here instead of printing")
    predict.add_argument("--limit", type=int, default=None, help="print at most N rows")
    predict.add_argument("--skip-bad-rows", metavar="FILE", default=None,
                         help="predict the rows that fit the model's columns and write the "
                              "others' problems here as JSON lines (line, column, reason, "
                              "raw); without it, such a row is an error (exit 2)")
    predict.add_argument("--log-level", default="WARNING")
    inspect = commands.add_parser(
        "inspect", help="summarize a finished run; with --records, raw rows next to their transform")
    inspect.add_argument("output", help="the run's output folder")
    inspect.add_argument("--run", default=None,
                         help="with refresh runs: the run id (default: latest)")
    inspect.add_argument("--records", type=int, default=0,
                         help="show the first N input rows and their transformed features")
    inspect.add_argument("--log-level", default="WARNING")
    parser.commands = commands.choices  # name -> its parser (see `_unknown_argument`)
    return parser


# Commands whose unknown arguments go to Beam as pipeline options (checked by Beam's names).
BEAM_COMMANDS = ("preprocess", "refresh")


def _unknown_argument(parser, command: str, extra) -> str:
    """The error for the first of `extra`, arguments the command does not take (train,
    predict and inspect run no Beam pipeline, so nothing else could take them)."""
    import difflib  # pylint: disable=import-outside-toplevel
    name = extra[0].split("=", 1)[0]
    options = sorted(o for a in parser.commands[command]._actions  # pylint: disable=protected-access
                     for o in a.option_strings if o.startswith("--") and o != "--help")
    close = difflib.get_close_matches(name, options, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    what = "argument" if name.startswith("-") else "extra argument"
    return (f"beam-pipeline {command}: error: unknown {what} {name}{hint} ({command} takes "
            + ", ".join(options) + ")")


def _resolved(config, run):
    """The config pointed at the run to read: the latest published one, or `run`; a
    `run_state.NoGoodRun` (exit 2) when that is not a complete run. Local outputs are
    checked without importing TensorFlow or Beam."""
    import dataclasses  # pylint: disable=import-outside-toplevel
    from beam_pipeline.outputs import run_state  # pylint: disable=import-outside-toplevel
    out, _ = run_state.good_run(config.output.dir, run)
    return dataclasses.replace(config, output=dataclasses.replace(config.output, dir=out))


def _refresh(args, config, beam_args) -> int:
    from beam_pipeline.refresh import drift, job as refresh  # pylint: disable=import-outside-toplevel
    from beam_pipeline.job import preprocess
    if args.accept_drift is not None:
        outcome = refresh.accept_drift(config, args.accept_drift)
        breaches = outcome.drift_report and [c for c in outcome.drift_report["checks"]
                                             if c.get("breached")]
        print(f"beam_pipeline refresh: published run {outcome.run_id} with its drift "
              f"accepted ({len(breaches or [])} breached checks: "
              + ", ".join(f"{c['feature']} {c['check']}" for c in breaches or []) + ")")
        return 0
    outcome = refresh.run(config, preprocess.pipeline_options(beam_args), args.force,
                          args.progress_interval)
    if outcome.status == "up_to_date":
        print(f"beam_pipeline refresh: run {outcome.run_id} already holds this config and "
              f"input; nothing published (--force to run again)")
        return 0
    if outcome.drift_report is not None:
        print(drift.format_report(outcome.drift_report))
    if outcome.status == "blocked":
        print(f"beam_pipeline refresh: run {outcome.run_id} NOT published: drift beyond the "
              f"thresholds; report in its folder (drift.json, drift.txt); to publish it "
              f"after review: --accept-drift {outcome.run_id}", file=sys.stderr)
        return drift.EXIT_DRIFT
    print(f"beam_pipeline refresh: published run {outcome.run_id}")
    return 0


def _train(args) -> int:
    # The run is checked before the (seconds long) import of TensorFlow and Keras.
    config = _resolved(load_config(args.config), args.run)
    from beam_pipeline.serving import train  # pylint: disable=import-outside-toplevel
    _, metrics = train.train(config)
    print(f"beam_pipeline train: {metrics['task']}, {metrics['epochs_run']} epochs; eval "
          + ", ".join(f"{k} {v:.4f}" for k, v in metrics["eval"].items())
          + "; trivial baseline " + ", ".join(f"{k} {v:.4f}" for k, v in metrics["baseline"].items()))
    print(f"  serving model exported to {metrics['export_dir']}")
    return 0


def _predict(args) -> int:
    import json  # pylint: disable=import-outside-toplevel
    from beam_pipeline.outputs import run_state  # pylint: disable=import-outside-toplevel
    # An output folder given as --model (or its model/serving with no good run behind
    # it) is said so before TensorFlow is imported to load it.
    problem = run_state.model_folder_problem(args.model)
    if problem is not None:
        print(f"beam-pipeline predict: error: {problem}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    from beam_pipeline.serving import predict  # pylint: disable=import-outside-toplevel
    try:
        # Every row is read and checked here, before anything is printed or written.
        predictions = predict.predict(args.model, args.input,
                                      skip_bad_rows=args.skip_bad_rows is not None)
    except (predict.ModelError, predict.InputError) as e:
        print(f"beam-pipeline predict: error: {e}", file=sys.stderr)
        if isinstance(e, predict.BadRows):
            print("  (--skip-bad-rows FILE predicts the rows that fit and lists the others' "
                  "problems in FILE)", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    if args.skip_bad_rows is not None:
        with tf.io.gfile.GFile(args.skip_bad_rows, "w") as f:
            # GFile opens, and truncates, the file at its first write only: without this
            # one, a run with no problem would leave the problems of an earlier run there.
            f.write("")
            for problem in predictions.problems:
                f.write(problem.as_json() + "\n")
    lines = (json.dumps(p) for p in predictions)  # keys sorted by name, see predict.predict
    written = 0
    if args.output:
        with tf.io.gfile.GFile(args.output, "w") as f:
            f.write("")  # an old file is emptied even if no row is predicted (see above)
            for line in lines:
                f.write(line + "\n")
                written += 1
    else:
        for line in lines:
            if args.limit is not None and written >= args.limit:
                break
            print(line)
            written += 1
    if args.skip_bad_rows is not None:
        # On stderr: stdout may be the predictions themselves.
        print(f"beam-pipeline predict: rows predicted: {written}, rows skipped: "
              f"{predictions.skipped_rows}; {len(predictions.problems)} problems in "
              f"{args.skip_bad_rows}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    """Entry point; returns the process exit code."""
    parser = _parser()
    args, beam_args = parser.parse_known_args(argv)
    if beam_args and args.command not in BEAM_COMMANDS:
        print(_unknown_argument(parser, args.command, beam_args), file=sys.stderr)
        return EXIT_CONFIG_ERROR
    if args.log_level.upper() != "DEBUG":
        # Before TensorFlow is first imported (below, lazily); a level set by the user wins.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command in BEAM_COMMANDS and beam_args:
        # Before the config is read: a misspelt Beam option (`--runer`) would otherwise be
        # logged by Beam and ignored, and the job would run on the local runner. (Without
        # Beam arguments there is nothing to check, and nothing heavy to import for it.)
        from beam_pipeline.job import preprocess  # pylint: disable=import-outside-toplevel
        try:
            own = [o for a in parser.commands[args.command]._actions  # pylint: disable=protected-access
                   for o in a.option_strings if o.startswith("--") and o != "--help"]
            preprocess.check_beam_args(beam_args, own)
        except preprocess.UnknownPipelineOption as e:
            print(f"beam-pipeline {args.command}: error: {e}", file=sys.stderr)
            return EXIT_CONFIG_ERROR
    output_dir = None
    try:
        if args.command == "train":
            return _train(args)
        if args.command == "predict":
            return _predict(args)
        if args.command == "inspect":
            # A local output's account imports no TensorFlow nor Beam (see inspect_run).
            from beam_pipeline.outputs import inspect_run, run_state  # pylint: disable=import-outside-toplevel
            out = inspect_run.resolve(args.output, args.run)
            print(inspect_run.inspect(out, args.records))
            # A failed run's account is shown (it says why), but is no run to read: exit 2.
            problem = run_state.failure(out, inspect_run.load_summary(out))
            if problem is not None:
                print(f"beam-pipeline inspect: error: {problem}", file=sys.stderr)
                return EXIT_CONFIG_ERROR
            return 0
        if args.command == "refresh":
            config = load_config(args.config)
            output_dir = config.output.dir
            return _refresh(args, config, beam_args)
        config = load_config(args.config)
        output_dir = config.output.dir
        from beam_pipeline.job import preprocess  # pylint: disable=import-outside-toplevel
        from beam_pipeline.outputs import summary
        result = preprocess.run(config, preprocess.pipeline_options(beam_args), args.overwrite,
                                args.progress_interval)
    except _loaded("beam_pipeline.outputs.run_state", "NoGoodRun") as e:
        print(f"beam-pipeline {args.command}: error: {e}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    except _loaded("beam_pipeline.config", "ConfigError") as e:
        print(f"beam-pipeline: config error: {e}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    except _loaded("beam_pipeline.outputs.rejects", "TooManyRejected") as e:
        print(f"beam-pipeline: {e}", file=sys.stderr)
        return sys.modules["beam_pipeline.outputs.rejects"].EXIT_TOO_MANY_REJECTED
    except _loaded("beam_pipeline.outputs.output_lock", "Held") as e:
        print(f"beam-pipeline {args.command}: error: {e}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    except Exception as e:  # pylint: disable=broad-except
        if output_dir is None or not _no_space(e):
            raise
        print(_no_space_message(output_dir), file=sys.stderr)
        return EXIT_NO_SPACE
    print(summary.format_summary(result))
    return 0


class _NativeLogFilter:
    """File descriptor 2 through a pipe that drops `NATIVE_LOG_LINE`s (the C++ libraries,
    and Beam's worker processes, which inherit it, write there); Python's own `sys.stderr`
    (progress, logging, warnings, tracebacks) goes straight to the original stderr, so a
    terminal stays a terminal for it."""

    def __init__(self):
        sys.stderr.flush()
        self._saved = os.dup(2)
        read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        sys.stderr = os.fdopen(os.dup(self._saved), "w", buffering=1,
                               encoding=sys.stderr.encoding, errors=sys.stderr.errors)
        self._thread = threading.Thread(target=self._pump, args=(read,), daemon=True)
        self._thread.start()

    def _pump(self, read):
        pending = b""
        while True:
            chunk = os.read(read, 65536)
            if not chunk:
                break
            pending += chunk
            # Lines end at \n, or at \r (a progress bar redrawn in place).
            *lines, pending = re.split(rb"(?<=[\r\n])", pending)
            kept = b"".join(l for l in lines if not NATIVE_LOG_LINE.match(l))
            if kept:
                os.write(self._saved, kept)
        if pending and not NATIVE_LOG_LINE.match(pending):
            os.write(self._saved, pending)
        os.close(read)

    def close(self):
        """Back to the original stderr; what is still in the pipe is written out (worker
        processes still holding the pipe would keep it open: waits 1 s at most)."""
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        self._thread.join(timeout=1.0)


def _debug_requested(argv) -> bool:
    for i, arg in enumerate(argv):
        if arg == "--log-level" and i + 1 < len(argv):
            return argv[i + 1].upper() == "DEBUG"
        if arg.startswith("--log-level="):
            return arg.split("=", 1)[1].upper() == "DEBUG"
    return False


def entry_point() -> None:
    """The console script: `main`, then an exit that skips interpreter teardown.

    By then every output is written and closed; tearing down TensorFlow's and Beam's
    threads and native objects would add about 1.7 s to each command for nothing.
    Exceptions and --help exits still leave the normal way.
    """
    quiet = None
    if not _debug_requested(sys.argv[1:]) and "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
        quiet = _NativeLogFilter()
    try:
        code = main()
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
    finally:
        if quiet is not None:
            quiet.close()
    os._exit(code or 0)


if __name__ == "__main__":
    entry_point()
