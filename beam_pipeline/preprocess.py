"""The `preprocess` job: checks, the Beam pipeline, then the run summary."""

import difflib
import logging
import os
import sys
import time
from typing import Dict, List, Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import (DirectOptions, GoogleCloudOptions,
                                                  PipelineOptions, StandardOptions,
                                                  _BeamArgumentParser)
from tensorflow_transform.tf_metadata import metadata_io

from beam_pipeline import layout, pipeline, progress, rejects, report, schema, summary
from beam_pipeline.config import Config, ConfigError
from beam_pipeline.preprocessing import preprocessing_fn_for
from beam_pipeline import sources

# The FnApiRunner is what DirectRunner runs batch pipelines on; naming it directly skips
# DirectRunner's attempt to download the Prism runner, so local runs work offline.
DEFAULT_RUNNER = "FnApiRunner"
LOCAL_RUNNERS = ("FnApiRunner", "DirectRunner", "SwitchingDirectRunner", "BundleBasedDirectRunner")


class UnknownPipelineOption(ConfigError):
    """A command-line argument that no Beam `PipelineOptions` subclass knows (a typo Beam
    itself would only log as "Unparseable argument" and then ignore)."""


class _StrictBeamParser(_BeamArgumentParser):
    """Beam's own parser (no abbreviations, as Beam parses), but errors raise."""

    def error(self, message):
        raise UnknownPipelineOption(message)


def _beam_parser() -> _StrictBeamParser:
    """Every option of every `PipelineOptions` subclass known in this process, collected
    the way `PipelineOptions.get_all_options` collects them."""
    parser = _StrictBeamParser(allow_abbrev=False, add_help=False)
    subset = {}
    for cls in PipelineOptions.__subclasses__():
        subset.setdefault(str(cls), cls)
    for cls in subset.values():
        cls._add_argparse_args(parser)  # pylint: disable=protected-access
    return parser


def check_beam_args(beam_args) -> None:
    """Raises `UnknownPipelineOption` (naming the argument and the closest known option)
    for an argument no Beam options class knows, or a known option's invalid value."""
    parser = _beam_parser()
    _, unknown = parser.parse_known_args(list(beam_args))
    if not unknown:
        return
    flags = [a for a in unknown if a.startswith("-")]
    arg = (flags or unknown)[0]
    if not arg.startswith("-"):
        raise UnknownPipelineOption(f"unexpected argument {arg!r}: not an option of the command "
                                    "nor a value of a Beam pipeline option")
    name = arg.split("=", 1)[0]
    known = sorted({o for action in parser._actions  # pylint: disable=protected-access
                    for o in action.option_strings})
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise UnknownPipelineOption(f"unknown argument {name}: neither an option of the command nor "
                                f"a Beam pipeline option{hint}")


def pipeline_options(beam_args) -> PipelineOptions:
    """Beam options from the command line, unchanged, with the local runner as default.

    An argument no Beam options class knows raises `UnknownPipelineOption` (Beam would
    only log it and run without it, e.g. locally after a misspelt `--runner`)."""
    check_beam_args(beam_args)
    options = PipelineOptions(list(beam_args))
    standard = options.view_as(StandardOptions)
    if not standard.runner:
        standard.runner = DEFAULT_RUNNER
    return options


def check_output(out: str, overwrite: bool) -> None:
    """Fails if the output folder already has content (unless told to replace it), or if
    a local output folder cannot be written.

    Content is any file at any depth: a run killed mid-write leaves only folders (its
    summary comes last), with Beam's `beam-temp-*` folders among them. `overwrite`
    deletes all of it.
    """
    if layout.is_local(out):
        existing = out
        while existing and not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if existing and not os.access(existing, os.W_OK | os.X_OK):
            raise ConfigError(f"output.dir: no permission to write under {existing}")
    # `*` would match the files directly under `out` only, and an object store has no
    # folder to test for existence: list every file under it instead.
    files = [m.path for m in FileSystems.match([FileSystems.join(out, "**")])[0].metadata_list]
    if files:
        if not overwrite:
            raise ConfigError(f"output.dir: {out} is not empty; choose another folder or "
                              "pass --overwrite to replace it")
        if layout.is_local(out):
            FileSystems.delete([out])  # recursive: the folders go too
        else:
            # An object store deletes a folder's path only with a trailing "/" (gs://, s3://)
            # or not at all; deleting the listed files works on every one.
            FileSystems.delete(files)


def preflight(config: Config, overwrite: bool) -> List[sources.Read]:
    """Every check a user can fix, before a pipeline starts; returns the planned reads."""
    reads = sources.plan(config)
    preprocessing_fn_for(config)  # imports a user's preprocessing_fn, so a typo fails now
    check_output(config.output.dir, overwrite)
    return reads


def _reports_progress_here(options: PipelineOptions) -> bool:
    """True when the pipeline's steps run on this machine (the local runner, in this
    process or its worker processes), where they can count rows into local files."""
    runner = options.view_as(StandardOptions).runner or ""
    mode = options.view_as(DirectOptions).direct_running_mode
    return runner.split(".")[-1] in LOCAL_RUNNERS and mode in (None, "in_memory",
                                                               "multi_processing")


def _wait(result, options: PipelineOptions, reporter) -> None:
    if reporter:
        try:
            result.wait_until_finish()
        finally:
            reporter.finish(result)
        return
    job = getattr(result, "job_id", None)
    if callable(job):
        gcp = options.view_as(GoogleCloudOptions)
        print(f"beam-pipeline: job {job()} submitted; console: https://console.cloud.google.com/"
              f"dataflow/jobs/{gcp.region}/{job()}?project={gcp.project}", file=sys.stderr)
    else:
        print("beam-pipeline: progress is not reported for this runner; waiting for the job",
              file=sys.stderr)
    result.wait_until_finish()
    print(f"beam-pipeline: job state {result.state}", file=sys.stderr)


def run(config: Config, options: PipelineOptions, overwrite: bool = False,
        progress_interval: Optional[float] = None,
        analysis_cache: Optional[pipeline.AnalysisCache] = None) -> Dict:
    """Runs the preprocessing job end to end and returns the run summary.

    Writes under `config.output.dir`: transformed TFRecords per split, the tf.Transform
    output, the raw schema, the train statistics and `run_summary.json`.
    """
    started = time.time()
    reads = preflight(config, overwrite)
    out = config.output.dir
    metadata_io.write_metadata(schema.raw_metadata(config.columns), layout.raw_metadata_dir(out))
    temp_dir = layout.temp_dir(out)
    p = beam.Pipeline(options=options)
    if analysis_cache is not None:
        analysis_cache.staging = FileSystems.join(temp_dir, "analysis_cache")
    handles = pipeline.build(p, config, temp_dir, analysis_cache, reads)
    # Progress estimates the rows from CSV lines, so it shows for CSV-only jobs.
    csv_only = all(r.source.format == "csv" for r in reads)
    reporter = (progress.Reporter([p for r in reads for p in r.items], reads[0].source.header,
                                  layout.progress_dir(temp_dir),
                                  interval=progress_interval).start()
                if csv_only and _reports_progress_here(options) else None)
    result = p.run()
    _wait(result, options, reporter)
    if analysis_cache is not None:
        analysis_cache.commit()
    counters = pipeline.read_counters(result)
    statistics = pipeline.read_statistics(handles.statistics_path)
    run_summary = summary.build_summary(config, counters, statistics, time.time() - started)
    try:
        rejects.check(run_summary["rows"], config.max_rejected_fraction, out)
        run_summary["status"] = "complete"
    except rejects.TooManyRejected:
        # Keep what explains the failure (summary, report, rejected/), not what could be
        # trained on by mistake.
        run_summary["status"] = "failed: too many rejected records"
        FileSystems.delete([p for p in layout.published_dirs(out) if FileSystems.exists(p)])
        raise
    finally:
        summary.write_summary(run_summary, layout.run_summary_path(out))
        report.write_report(run_summary, statistics, out)
        if FileSystems.exists(temp_dir):
            FileSystems.delete([temp_dir])
    logging.info("run summary written to %s", layout.run_summary_path(out))
    return run_summary
