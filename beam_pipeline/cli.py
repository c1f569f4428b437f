"""The `beam-pipeline` command.

    beam-pipeline preprocess --config CONFIG [--overwrite] [beam pipeline options...]
    beam-pipeline train --config CONFIG          (fits, evaluates, exports the serving model)
    beam-pipeline predict --model DIR --input FILE [--output FILE]
    beam-pipeline inspect OUTPUT [--records N]

Every argument the command does not know is a Beam pipeline option and reaches
`PipelineOptions` unchanged (`--runner DataflowRunner --project ... --region ...
--temp_location gs://... --setup_file ./setup.py`). Without `--runner`, the job runs on
the local FnApiRunner.

Exit codes: 0 done, 2 config or input error (before any pipeline starts), 3 too many
rejected records (see `rejects`).
"""

import argparse
import os
import logging
import sys

# TensorFlow's C++ start-up chatter hides the summary; users can set their own level.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from beam_pipeline import rejects  # noqa: E402
from beam_pipeline.config import ConfigError, load_config  # noqa: E402

EXIT_CONFIG_ERROR = 2


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
    train = commands.add_parser(
        "train", help="fit the Keras model on the transformed data and export it for serving")
    train.add_argument("--config", required=True, help="path of the YAML config")
    train.add_argument("--log-level", default="WARNING")
    predict = commands.add_parser(
        "predict", help="predictions of an exported model for raw rows (CSV or JSON lines)")
    predict.add_argument("--model", required=True, help="the exported SavedModel folder")
    predict.add_argument("--input", required=True, help="CSV with a header, or .jsonl")
    predict.add_argument("--output", help="write JSON lines here instead of printing")
    predict.add_argument("--limit", type=int, default=None, help="print at most N rows")
    predict.add_argument("--log-level", default="WARNING")
    inspect = commands.add_parser(
        "inspect", help="summarize a finished run; with --records, raw rows next to their transform")
    inspect.add_argument("output", help="the run's output folder")
    inspect.add_argument("--records", type=int, default=0,
                         help="show the first N input rows and their transformed features")
    inspect.add_argument("--log-level", default="WARNING")
    return parser


def _train(args) -> int:
    from beam_pipeline import train  # pylint: disable=import-outside-toplevel
    config = load_config(args.config)
    _, metrics = train.train(config)
    print(f"beam_pipeline train: {metrics['task']}, {metrics['epochs_run']} epochs; eval "
          + ", ".join(f"{k} {v:.4f}" for k, v in metrics["eval"].items())
          + "; trivial baseline " + ", ".join(f"{k} {v:.4f}" for k, v in metrics["baseline"].items()))
    print(f"  serving model exported to {metrics['export_dir']}")
    return 0


def _predict(args) -> int:
    import json  # pylint: disable=import-outside-toplevel
    from beam_pipeline import predict  # pylint: disable=import-outside-toplevel
    lines = (json.dumps(p) for p in predict.predict(args.model, args.input))
    if args.output:
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        with tf.io.gfile.GFile(args.output, "w") as f:
            for line in lines:
                f.write(line + "\n")
    else:
        for i, line in enumerate(lines):
            if args.limit is not None and i >= args.limit:
                break
            print(line)
    return 0


def main(argv=None) -> int:
    """Entry point; returns the process exit code."""
    args, beam_args = _parser().parse_known_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "train":
            return _train(args)
        if args.command == "predict":
            return _predict(args)
        if args.command == "inspect":
            from beam_pipeline import inspect_run  # pylint: disable=import-outside-toplevel
            print(inspect_run.inspect(args.output, args.records))
            return 0
        config = load_config(args.config)
        # Imported late: TensorFlow and Beam take seconds to import, --help should not.
        from beam_pipeline import preprocess, summary  # pylint: disable=import-outside-toplevel
        result = preprocess.run(config, preprocess.pipeline_options(beam_args), args.overwrite,
                                args.progress_interval)
    except ConfigError as e:
        print(f"beam-pipeline: config error: {e}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    except rejects.TooManyRejected as e:
        print(f"beam-pipeline: {e}", file=sys.stderr)
        return rejects.EXIT_TOO_MANY_REJECTED
    print(summary.format_summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
