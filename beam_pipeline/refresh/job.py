"""The scheduled refresh: a versioned run, checked, then published by moving "latest".

    beam-pipeline refresh --config CONFIG [--force] [beam options]
    beam-pipeline refresh --config CONFIG --accept-drift RUN_ID   (publish a blocked run)

Each refresh writes into OUTPUT/runs/<run id>/ (the usual outputs), with the tf.Transform
analysis of each span (the input files' parent folder, e.g. a dated folder) cached under
OUTPUT/cache/<key>/ so the next refresh analyzes only new spans. Then, in this order:
the rejected-records gate, the drift gate against the published run, the manifest
(written last: it marks the run complete), the LATEST pointer, retention. A run killed
at any point leaves LATEST and every published run as they were; the next refresh
removes the debris. The same config on the same input is not run again unless forced.
A run the drift gate blocked stays complete under runs/; after review, `accept_drift`
publishes it without running anything again.
"""

import dataclasses
import hashlib
import json
import logging
import os
import sys
import time
from collections import OrderedDict
from datetime import datetime, timedelta, timezone
from typing import Dict, List, Optional

from apache_beam.io.filesystems import FileSystems

from beam_pipeline import crash_points, sources
from beam_pipeline.refresh import drift, runs
from beam_pipeline.outputs import layout, output_lock, rejects, storage, summary
from beam_pipeline.job import pipeline
from beam_pipeline.outputs import report as html_report
from beam_pipeline.config import Config, ConfigError, FOLDER_FORMATS

CACHE = "cache"


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a refresh did: its run id, and "published", "up_to_date" or "blocked"."""

    run_id: str
    status: str
    summary: Optional[Dict] = None
    drift_report: Optional[Dict] = None


def spans(files: List[str]) -> "OrderedDict[str, List[str]]":
    """Input files grouped by span: the name of the folder each file is in, sorted."""
    grouped: Dict[str, List[str]] = {}
    for path in files:
        grouped.setdefault(os.path.basename(os.path.dirname(path)), []).append(path)
    return OrderedDict(sorted(grouped.items()))


def _input_files(config: Config) -> List[str]:
    files = []
    for item in config.inputs:
        if item.format in FOLDER_FORMATS:
            from beam_pipeline.sources import folder_files  # pylint: disable=import-outside-toplevel
            files += folder_files.listing(item)[0]
        else:
            files += sources.matching_files(item.file_pattern)
    return sorted(files)


def _sizes(files: List[str]):
    metadata = FileSystems.match(files) if files else []
    return [(m.metadata_list[0].path, m.metadata_list[0].size_in_bytes) for m in metadata]


def _content_keyed(by_span: "OrderedDict[str, List[str]]") -> "OrderedDict[str, List[str]]":
    """Spans renamed `<span>-<digest of its files and sizes>`: a span whose files change
    (data delivered again) gets a new cache entry instead of reusing a stale one."""
    keyed = OrderedDict()
    for span, files in by_span.items():
        digest = hashlib.sha256(json.dumps(_sizes(files)).encode()).hexdigest()[:8]
        keyed[f"{span}-{digest}"] = files
    return keyed


def cache_dir(root: str, config: Config, versions: Dict[str, str]) -> str:
    """The analysis cache folder: keyed by what the analysis depends on besides the data
    (the features, columns and split, and the library and Python versions), so a change
    of any of them starts a fresh cache; deleting it only costs a full analysis."""
    key = json.dumps({"columns": [dataclasses.asdict(c) for c in config.columns],
                      "features": [repr(f) for f in config.features],
                      "label": repr(config.label), "split": dataclasses.asdict(config.split),
                      "versions": versions}, sort_keys=True)
    return FileSystems.join(root, CACHE, hashlib.sha256(key.encode()).hexdigest()[:16])


def needs_full_pass(config: Config) -> List[str]:
    """Features whose analysis cannot be cached per span: an analyzer that reads the result
    of another (tf-idf reads the vocabulary; a lookup counts values imputed from a
    statistic), so a new span changes what every old span contributes."""
    names = [f.name for f in config.features if f.needs_full_pass()]
    if config.preprocessing_fn:
        names.append("preprocessing_fn")  # own graph code: its analyzers are unknown here
    return names


def run(config: Config, options, force: bool = False,
        progress_interval: Optional[float] = None) -> Outcome:
    """Runs one refresh of `config` under its output folder (the root of the runs).

    Raises:
      rejects.TooManyRejected: the input is mostly bad; nothing is published.
    """
    from beam_pipeline.job import submit  # pylint: disable=import-outside-toplevel
    if submit.template_location(options):
        # A template only stages the job: the drift gate, the manifest and the publish run
        # here after the job, so a templated refresh would publish a run with no data.
        raise ConfigError(
            "refresh: --template_location cannot be used: a refresh's drift gate and "
            "publish run in this command after the job; schedule `beam-pipeline refresh` "
            "itself, or template `beam-pipeline preprocess`")
    root = config.output.dir
    with output_lock.OutputLock(root, "refresh"):
        return _run_locked(config, options, force, progress_interval, root)


def _run_locked(config: Config, options, force: bool, progress_interval: Optional[float],
                root: str) -> Outcome:
    from beam_pipeline.job import preprocess  # pylint: disable=import-outside-toplevel
    versions = runs.library_versions()
    with FileSystems.open(config.path) as f:
        config_bytes = f.read()
    files = _input_files(config)
    fingerprint = runs.fingerprint(config_bytes, _sizes(files), versions)
    published = runs.latest(root)
    existing = runs.find_by_fingerprint(root, fingerprint)
    if existing and existing == published and not force:
        logging.info("refresh: run %s already holds this config and input", existing)
        return Outcome(existing, "up_to_date")
    when = datetime.now(timezone.utc)
    run_id = runs.run_id(fingerprint, when)
    while storage.exists(runs.run_dir(root, run_id)):
        # A run of the same config and input in the same second (--force, or the run a
        # crash left): ids have a resolution of one second, so this one takes the next.
        when += timedelta(seconds=1)
        run_id = runs.run_id(fingerprint, when)
    for removed in runs.clean_debris(root, keep=[run_id]):
        logging.info("refresh: removed the unfinished run %s", removed)
    out = runs.run_dir(root, run_id)
    run_config = dataclasses.replace(config, output=dataclasses.replace(config.output, dir=out))
    by_span = spans(files)
    full = needs_full_pass(config)
    if len(config.inputs) > 1 or config.inputs[0].format in FOLDER_FORMATS:
        full.append("input (span caching needs one csv, tfrecord or parquet input)")
    cache = None if full else pipeline.AnalysisCache(cache_dir(root, config, versions),
                                                     _content_keyed(by_span))
    if full:
        print(f"beam-pipeline refresh: analyzing every span again: {', '.join(full)} cannot "
              f"be analyzed span by span", file=sys.stderr)
    # Before the run adds its own; named without the content digest.
    cached_spans = [key.rsplit("-", 1)[0] for key in cache.cached] if cache else []
    started = time.time()
    try:
        run_summary = preprocess.run(run_config, options, progress_interval=progress_interval,
                                     analysis_cache=cache, versioned_run=True)
    except rejects.TooManyRejected:
        raise  # the run folder keeps its summary and rejects until the next refresh
    except BaseException:
        # Not published, and nothing in it explains more than the error: e.g. after "no
        # space left", what it wrote is freed now, not at the next refresh.
        storage.delete_tree(out)
        raise
    report = None
    if published:
        previous = runs.run_dir(root, published)
        report = drift.compare(_summary(previous), run_summary,
                               _vocabularies(previous, run_config),
                               _vocabularies(out, run_config), drift_thresholds(config))
        drift.write_report(report, out)
        # The run's report.html, written before the gate ran, again with the Drift section.
        html_report.write_report(run_summary, pipeline.read_statistics(
            layout.statistics_path(out)), out, drift_report=report, previous=published)
    crash_points.reach("staged")
    status = "blocked" if report and report["breached"] else "published"
    runs.write_manifest(out, {
        "run_id": run_id, "fingerprint": fingerprint, "status": status,
        "config": config.path, "config_sha256": hashlib.sha256(config_bytes).hexdigest(),
        "inputs": [{"path": p, "bytes": n} for p, n in _sizes(files)],
        "spans": list(by_span), "analysis": "full" if full else "incremental",
        "cached_spans": cached_spans,
        "versions": versions, "rows": run_summary["rows"],
        "statistics": run_summary["statistics"]["numeric"],
        "previous": published, "drift_breached": bool(report and report["breached"]),
        "seconds": round(time.time() - started, 2)})
    crash_points.reach("refresh_manifest")
    if status == "published":
        runs.publish(root, run_id)
        crash_points.reach("refresh_latest")
        for removed in runs.apply_retention(root, config.refresh.keep_last):
            logging.info("refresh: retention removed run %s", removed)
    return Outcome(run_id, status, run_summary, report)


def accept_drift(config: Config, run_id: str) -> Outcome:
    """Publishes run `run_id`, which the drift gate blocked, after an operator's review.

    The run must be complete (have its manifest), have been blocked by drift, and have
    been compared with the run that is still published (else its report is stale: run a
    refresh instead). Its manifest is rewritten with status "published" and an
    "accepted_drift" record (when, and the breaches accepted), then LATEST moves to it and
    retention runs, as after a normal publish. Nothing is run again.

    Raises:
      ConfigError: any of the above does not hold (the message says which).
      output_lock.Held: a refresh is running on this output.
    """
    if not runs.is_run_id(run_id):
        raise ConfigError(f"--accept-drift: not a run id: {run_id!r} "
                          "(expected YYYYMMDDTHHMMSSZ-xxxxxxxx)")
    with output_lock.OutputLock(config.output.dir, "refresh --accept-drift"):
        return _accept_drift_locked(config, run_id)


def _accept_drift_locked(config: Config, run_id: str) -> Outcome:
    root = config.output.dir
    if not runs.is_run_id(run_id):
        raise ConfigError(f"--accept-drift: not a run id: {run_id!r} "
                          "(expected YYYYMMDDTHHMMSSZ-xxxxxxxx)")
    out = runs.run_dir(root, run_id)
    manifest = runs.read_manifest(out)
    if manifest is None:
        complete = runs.complete_runs(root)
        state = ("has no manifest (the run did not finish)" if storage.exists(out)
                 else "does not exist")
        raise ConfigError(f"--accept-drift: run {run_id} under {root} {state}; complete "
                          f"runs: {', '.join(complete) or 'none'}")
    published = runs.latest(root)
    if run_id == published:
        raise ConfigError(f"--accept-drift: run {run_id} is already the published run")
    # Accepted before, killed between its manifest and LATEST: publishing again finishes it.
    resumed = manifest.get("status") == "published" and "accepted_drift" in manifest
    if not resumed and (manifest.get("status") != "blocked"
                        or not manifest.get("drift_breached")):
        raise ConfigError(f"--accept-drift: run {run_id} was not blocked by drift (status "
                          f"{manifest.get('status')!r}); only a run the drift gate blocked "
                          "can be accepted")
    if manifest.get("previous") != published:
        raise ConfigError(f"--accept-drift: run {run_id} was compared with run "
                          f"{manifest.get('previous')}, but the published run is now "
                          f"{published}: its drift report is stale; run a refresh instead")
    try:
        text = storage.read_text(FileSystems.join(out, drift.REPORT_JSON))
        if text is None:
            raise OSError("no such file")
        report = json.loads(text)
    except (OSError, ValueError) as e:
        raise ConfigError(f"--accept-drift: run {run_id} has no readable "
                          f"{drift.REPORT_JSON}: {e}") from None
    if not resumed:
        manifest["status"] = "published"
        manifest["accepted_drift"] = {
            "at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "breaches": [{k: c.get(k) for k in ("feature", "check", "value", "threshold")}
                         for c in report.get("checks", []) if c.get("breached")]}
        runs.write_manifest(out, manifest)
    runs.publish(root, run_id)
    for removed in runs.apply_retention(root, config.refresh.keep_last):
        logging.info("refresh: retention removed run %s", removed)
    return Outcome(run_id, "published", None, report)


def drift_thresholds(config: Config) -> Dict:
    """The configured thresholds, with the numeric checks off for columns that are keys,
    not features: the split key and columns only passed through (ids drift by design).
    A threshold the config sets for such a column still applies."""
    thresholds = config.refresh.drift or drift.parse_thresholds({})
    used = {f.column for f in config.features if f.KIND != "passthrough"}
    keys = {f.column for f in config.features if f.KIND == "passthrough"} - used
    if config.split.key and config.split.key not in used:
        keys.add(config.split.key)
    features = dict(thresholds["features"])
    for column in keys:
        features.setdefault(column, {check: None for check in drift.NUMERIC_CHECKS})
    return {**thresholds, "features": features}


def _summary(run_dir: str) -> Dict:
    with FileSystems.open(layout.run_summary_path(run_dir)) as f:
        return json.loads(f.read().decode("utf-8"))


def _vocabularies(run_dir: str, config: Config) -> Dict[str, List[Dict]]:
    """Every vocabulary of the run, in full (the drift gate needs more than the top)."""
    import tensorflow_transform as tft  # pylint: disable=import-outside-toplevel
    tft_output = tft.TFTransformOutput(run_dir)
    out = {}
    for feature in config.features + ((config.label,) if config.label else ()):
        for name in feature.vocabulary_names():
            try:
                out[name] = summary.read_vocabulary(tft_output.vocabulary_file_by_name(name),
                                                    integer=feature.column_type == "int")
            except (OSError, ValueError, KeyError):
                continue  # a feature the other run did not have: drift lists it as added
    return out
