"""The `preprocess` job: checks, the Beam pipeline, then the run summary."""

import dataclasses
import difflib
import logging
import os
import secrets
import sys
import time
from typing import Dict, List, Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import (DirectOptions, GoogleCloudOptions,
                                                  PipelineOptions, StandardOptions,
                                                  _BeamArgumentParser)
from tensorflow_transform.tf_metadata import metadata_io

from beam_pipeline import crash_points
from beam_pipeline.outputs import (layout, output_lock, rejects, report, storage, summary,
                                   transformed_schema)
from beam_pipeline.job import learned, pipeline, progress, schema
from beam_pipeline.config import Config, ConfigError
from beam_pipeline.job.preprocessing import preprocessing_fn_for
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


def check_beam_args(beam_args, command_options=()) -> None:
    """Raises `UnknownPipelineOption` (naming the argument and the closest known option)
    for an argument no Beam options class knows, or a known option's invalid value.

    `command_options` are the command's own options (e.g. "--overwrite"): a misspelt one
    reaches this check too, so the closest name is looked for among them as well."""
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
                    for o in action.option_strings} | set(command_options))
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


def check_output(out: str, overwrite: bool) -> bool:
    """Fails if the output folder already has content (unless told to replace it), or if
    a local output folder cannot be written; returns whether it has content.

    Content is any file at any depth: a run killed mid-write leaves only folders (its
    summary comes last), with Beam's `beam-temp-*` folders among them. Nothing is deleted
    here: with `overwrite`, `run` builds the new run beside the old one and replaces all
    of the old only once the new one is complete. `overwrite` first removes what earlier
    `--overwrite` runs left beside `out` (see `clean_siblings`).
    """
    if overwrite:
        clean_siblings(out)
    if layout.is_local(out):
        existing = out
        while existing and not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if existing and not os.access(existing, os.W_OK | os.X_OK):
            raise ConfigError(f"output.dir: no permission to write under {existing}")
    files = storage.files(out)
    if files and not overwrite:
        raise ConfigError(f"output.dir: {out} is not empty; choose another folder or "
                          "pass --overwrite to replace it")
    if files and layout.is_local(out):
        parent = os.path.dirname(os.path.abspath(out.rstrip("/"))) or "."
        if not os.access(parent, os.W_OK | os.X_OK):
            raise ConfigError(f"output.dir: --overwrite builds the new run beside {out}, in "
                              f"{parent}, and has no permission to write there")
    return bool(files)


def clean_siblings(out: str) -> List[str]:
    """Removes what earlier `--overwrite` runs left beside `out`; returns what it removed.

    A staging folder is a run killed before it was complete, or one the rejected-records
    gate failed (kept to show its rejects until now). A local `replaced` folder is the
    previous output of a run killed between its two renames: it is put back as `out` when
    `out` is missing (else `out` is the newer complete run and it is deleted).
    """
    removed = []
    base = out.rstrip("/")
    # Object stores: no renames, so no `replaced` folder is ever left there.
    marks = ((layout.STAGING_MARK, layout.REPLACED_MARK) if layout.is_local(out)
             else (layout.STAGING_MARK,))
    for path in sorted(p for mark in marks for p in storage.siblings(base + mark)):
        kind = layout.sibling_kind(out, path)
        if kind is None:
            continue
        if kind == "replaced" and not os.path.exists(base):
            os.rename(path, base)
            logging.warning("put back %s as %s (a run was killed while replacing it)",
                            path, base)
            continue
        storage.delete_tree(path)
        removed.append(path)
    return removed


def publish(staging: str, out: str) -> None:
    """Puts the complete run in `staging` in the place of the run in `out`.

    Local disk: `out` is renamed aside, `staging` renamed to `out`, the old one deleted;
    `out` is missing only for the instant between the two renames (a kill in between is
    repaired by the next `--overwrite`, see `clean_siblings`). Object stores (no rename of
    a folder): every new file is copied into place, the run summary and report last, then
    the old files the new run does not have are deleted, then the staged copies.
    """
    last = {layout.RUN_SUMMARY, os.path.basename(layout.report_path(""))}
    storage.replace(staging, out, last=lambda relative: relative in last,
                    aside=layout.replaced_dir(out, secrets.token_hex(4)))


def preflight(config: Config, overwrite: bool) -> List[sources.Read]:
    """Every check a user can fix, before a pipeline starts; returns the planned reads."""
    reads = sources.plan(config)
    preprocessing_fn_for(config)  # imports a user's preprocessing_fn, so a typo fails now
    check_output(config.output.dir, overwrite)
    return reads


def _reports_progress_here(options: PipelineOptions) -> bool:
    """True when the pipeline's steps run on this machine (the local runner, in this
    process or its worker processes), where they can count rows into local files."""
    from beam_pipeline.job import submit  # pylint: disable=import-outside-toplevel
    runner = options.view_as(StandardOptions).runner or ""
    mode = options.view_as(DirectOptions).direct_running_mode
    return (runner.split(".")[-1] in LOCAL_RUNNERS and mode in (None, "in_memory",
                                                                "multi_processing")
            or submit.workers_on_this_machine(options))


def _wait(result, options: PipelineOptions, reporter) -> None:
    if reporter:
        try:
            result.wait_until_finish()
        finally:
            reporter.finish(result)
        return
    if getattr(result, "_job", True) is None:  # a Dataflow template: no job to wait for
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
        analysis_cache: Optional[pipeline.AnalysisCache] = None,
        versioned_run: bool = False) -> Dict:
    """Runs the preprocessing job end to end and returns the run summary.

    Writes under `config.output.dir`: transformed TFRecords per split, the tf.Transform
    output, the raw schema, the train statistics and `run_summary.json`.

    The run holds the output's lock (`output_lock`) from before it writes anything to its
    end: a second run on the same output is refused with `output_lock.Held`. On the local
    disk, and with `overwrite` over an output that has content, the whole run is written
    to a sibling staging folder (`layout.staging_dir`) and put in the place of the output
    only once it is complete (`publish`): a run that fails or is killed leaves the old
    output (or no output) as it was, and the next run removes its staging folder. After a
    rejected-records gate failure (no `data/` or `transform_fn/`), the failed run's
    summary, report and `rejected/` are put in the output when it had no run before;
    over an existing run they stay in the staging folder, named in the message, until the
    next run removes it.

    With `versioned_run`, `config.output.dir` is a refresh's run folder: the caller holds
    the lock of the refresh root and marks the run complete itself (its manifest), so the
    run is written in place.
    """
    started = time.time()
    if versioned_run:
        reads = preflight(config, overwrite)
        return _run(config, options, progress_interval, analysis_cache, reads, started)
    reads = sources.plan(config)
    preprocessing_fn_for(config)  # imports a user's preprocessing_fn, so a typo fails now
    out = config.output.dir
    with output_lock.OutputLock(out, "preprocess"):
        clean_siblings(out)  # what killed runs left: no other run is writing now
        had_run = check_output(out, overwrite)
        from beam_pipeline.job import submit  # pylint: disable=import-outside-toplevel
        if not had_run and (not layout.is_local(out) or submit.template_location(options)):
            # An object store cannot rename a folder, and a template's job runs later, on
            # its own: a first run is written in place, its run summary last (readers need
            # one that says "complete").
            return _run(config, options, progress_interval, analysis_cache, reads, started)
        staging = layout.staging_dir(out, secrets.token_hex(4))
        staged = dataclasses.replace(config,
                                     output=dataclasses.replace(config.output, dir=staging))
        try:
            run_summary = _run(staged, options, progress_interval, analysis_cache, reads,
                               started, published_as=out, publish_failure=not had_run)
        except rejects.TooManyRejected as e:
            if not had_run:
                publish(staging, out)  # nothing to protect: the account goes where it is read
                raise rejects.TooManyRejected(str(e).replace(staging, out)) from None
            raise rejects.TooManyRejected(
                f"{e}\nThe previous output in {out} is unchanged. This run's summary, report "
                f"and rejected records are in {staging} (removed by the next run).") from None
        except learned.NothingToLearnFrom as e:
            if not had_run:
                publish(staging, out)  # its summary and report say what had no data
                raise learned.NothingToLearnFrom(str(e).replace(staging, out)) from None
            storage.delete_tree(staging)
            raise learned.NothingToLearnFrom(
                f"{e}\nThe previous output in {out} is unchanged.") from None
        except BaseException:
            # A pipeline error: nothing in the partial run explains more than the traceback.
            storage.delete_tree(staging)
            raise
        crash_points.reach("staged")
        publish(staging, out)
    logging.info("run summary written to %s", layout.run_summary_path(out))
    return run_summary


def _relocated(run_summary: Dict, staging: str, out: str) -> Dict:
    """The summary with the paths of its output and artifacts under `out`, not `staging`."""
    def move(value):
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        if isinstance(value, str) and value.startswith(staging):
            return out.rstrip("/") + value[len(staging):]
        return value
    return {**run_summary, "output": move(run_summary["output"]),
            "artifacts": move(run_summary["artifacts"])}


def _run(config: Config, options: PipelineOptions, progress_interval: Optional[float],
         analysis_cache: Optional[pipeline.AnalysisCache], reads: List[sources.Read],
         started: float, published_as: Optional[str] = None,
         publish_failure: bool = False) -> Dict:
    """The job, writing under `config.output.dir`; a complete run's summary and report
    name `published_as` (where `publish` will put the run) as its output, if given, and
    so does a gate failure's with `publish_failure`."""
    out = config.output.dir
    metadata_io.write_metadata(schema.raw_metadata(config.columns), layout.raw_metadata_dir(out))
    # A copy of the config inside the run (staged runs move with it), so the output says
    # how it was made even after the config file moves (see api.open_output).
    config_text = storage.read_bytes(config.path) if config.path else None
    if config_text is not None:
        storage.write_bytes(layout.config_copy_path(out), config_text)
    temp_dir = layout.temp_dir(out)
    p = beam.Pipeline(options=options)
    if analysis_cache is not None:
        analysis_cache.staging = FileSystems.join(temp_dir, "analysis_cache")
    # Progress estimates the rows from CSV lines, so it shows for CSV-only jobs whose steps
    # run on this machine (elsewhere the row counts would land on the workers' disks).
    counting = all(r.source.format == "csv" for r in reads) and _reports_progress_here(options)
    handles = pipeline.build(p, config, temp_dir, analysis_cache, reads,
                             progress_dir=layout.progress_dir(temp_dir) if counting else None)
    reporter = (progress.Reporter([p for r in reads for p in r.items], reads[0].source.header,
                                  layout.progress_dir(temp_dir),
                                  interval=progress_interval).start()
                if counting else None)
    from beam_pipeline.job import submit  # pylint: disable=import-outside-toplevel
    result = submit.run(p, options, staged=published_as is not None and not publish_failure,
                        written=[layout.raw_metadata_dir(out), temp_dir], reporter=reporter)
    template = submit.template_location(options)
    if template:
        # Built and staged, not run: no counters, statistics, summary or report to write.
        print(f"beam-pipeline: Dataflow template written to {template}", file=sys.stderr)
        return summary.template_summary(config, template, time.time() - started)
    _wait(result, options, reporter)
    if analysis_cache is not None:
        analysis_cache.commit()
    counters = pipeline.read_counters(result)
    statistics = pipeline.read_statistics(handles.statistics_path)
    transformed_schema.write_id_domains(config, out)  # tft's num_buckets_... works then
    run_summary = summary.build_summary(config, counters, statistics, time.time() - started)
    try:
        rejects.check(run_summary["rows"], config.max_rejected_fraction, out)
        # After the rejects: a mostly rejected input explains an empty split better.
        learned.check(config, statistics, out if published_as is None else None)
        run_summary["status"] = "complete"
        if published_as is not None:
            run_summary = _relocated(run_summary, out, published_as)
    except (rejects.TooManyRejected, learned.NothingToLearnFrom) as e:
        # Keep what explains the failure (summary, report, rejected/), not what could be
        # trained on by mistake (a graph whose statistics were learned from nothing).
        run_summary["status"] = ("failed: too many rejected records"
                                 if isinstance(e, rejects.TooManyRejected) else
                                 "failed: a statistic with no train data")
        for folder in layout.published_dirs(out):
            storage.delete_tree(folder)
        if published_as is not None and publish_failure:
            run_summary = _relocated(run_summary, out, published_as)
        raise
    finally:
        summary.write_summary(run_summary, layout.run_summary_path(out))
        report.write_report(run_summary, statistics, out)
        storage.delete_tree(temp_dir)
        storage.delete_tree(layout.progress_dir(temp_dir))  # local even for a gs:// output
    if published_as is None:
        logging.info("run summary written to %s", layout.run_summary_path(out))
    return run_summary
