"""The `beam-pipeline` command.

    beam-pipeline preprocess --config CONFIG [--overwrite] [beam pipeline options...]

Every argument the command does not know is a Beam pipeline option and reaches
`PipelineOptions` unchanged (`--runner DataflowRunner --project ... --region ...
--temp_location gs://... --setup_file ./setup.py`). Without `--runner`, the job runs on
the local FnApiRunner.
"""

import argparse
import os
import logging
import sys

# TensorFlow's C++ start-up chatter hides the summary; users can set their own level.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

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
    return parser


def main(argv=None) -> int:
    """Entry point; returns the process exit code."""
    args, beam_args = _parser().parse_known_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
        # Imported late: TensorFlow and Beam take seconds to import, --help should not.
        from beam_pipeline import preprocess, summary  # pylint: disable=import-outside-toplevel
        result = preprocess.run(config, preprocess.pipeline_options(beam_args), args.overwrite)
    except ConfigError as e:
        print(f"beam-pipeline: config error: {e}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    print(summary.format_summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
