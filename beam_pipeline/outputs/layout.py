"""Where each output lives under the output folder (one place, so readers and writers agree).

    OUTPUT/
      data/train/part-SSSSS-of-NNNNN.tfrecord.gz   transformed tf.Examples, gzipped
      data/eval/...
      transform_fn/  transformed_metadata/          tf.Transform's output
      metadata/                                     the raw schema (TFTransformOutput reads it)
      metadata/config.yaml                          a copy of the config the run was made with
      statistics/train.json                         column statistics of the train split
      rejected/rejected-00000-of-00001.jsonl        records that are not valid rows, and why
      run_summary.json                              rows, statistics, vocabularies
      report.html                                   the same, with plots, one self-contained page

`preprocess --overwrite` over an output with content builds the new run beside it, in
OUTPUT.staging-XXXXXXXX (the whole layout above), and puts it in place only once it is
complete; on the local disk the old output is renamed to OUTPUT.replaced-XXXXXXXX for the
instant between the two renames, then deleted. Both are siblings of OUTPUT, so OUTPUT itself
never holds anything but one run.
"""

import hashlib
import os
import re
import tempfile

from apache_beam.io.filesystems import FileSystems
from apache_beam.io.localfilesystem import LocalFileSystem

DATA_SUFFIX = ".tfrecord.gz"
REJECTED_SUFFIX = ".jsonl"
RUN_SUMMARY = "run_summary.json"


def published_dirs(out: str):
    """What training and serving read: the transformed data and the transform graph."""
    return [FileSystems.join(out, d) for d in ("data", "transform_fn", "transformed_metadata")]


def data_prefix(out: str, split: str) -> str:
    return FileSystems.join(out, "data", split, "part")


def data_pattern(out: str, split: str) -> str:
    """Glob of a split's TFRecord shards."""
    return data_prefix(out, split) + "-*" + DATA_SUFFIX


def rejected_prefix(out: str) -> str:
    return FileSystems.join(out, "rejected", "rejected")


def rejected_pattern(out: str) -> str:
    """Glob of the dead-letter files (JSON lines)."""
    return rejected_prefix(out) + "*" + REJECTED_SUFFIX


def statistics_path(out: str) -> str:
    return FileSystems.join(out, "statistics", "train.json")


def raw_metadata_dir(out: str) -> str:
    return FileSystems.join(out, "metadata")


def config_copy_path(out: str) -> str:
    """The copy of the run's config (what `bp.open_output(OUTPUT)` reads when the config
    the summary names has moved)."""
    return FileSystems.join(out, "metadata", "config.yaml")


def run_summary_path(out: str) -> str:
    return FileSystems.join(out, RUN_SUMMARY)


def is_local(path: str) -> bool:
    """Whether `path` is on this machine's file system (not gs:// or another store)."""
    return isinstance(FileSystems.get_filesystem(path), LocalFileSystem)


STAGING_MARK = ".staging-"
REPLACED_MARK = ".replaced-"
_TOKEN = r"[0-9a-f]{8}"


def staging_dir(out: str, token: str) -> str:
    """Where `--overwrite` builds the new run: a sibling of `out` (`token`: 8 hex digits)."""
    return out.rstrip("/") + STAGING_MARK + token


def replaced_dir(out: str, token: str) -> str:
    """Where the local old output waits between the two renames of a publish."""
    return out.rstrip("/") + REPLACED_MARK + token


def sibling_kind(out: str, path: str):
    """"staging" or "replaced" when `path` (a folder, or a file under one) is such a sibling
    of `out`; None otherwise (so a user's own `out.staging-notes` is never touched)."""
    base = re.escape(out.rstrip("/"))
    for kind, mark in (("staging", STAGING_MARK), ("replaced", REPLACED_MARK)):
        if re.match(base + re.escape(mark) + _TOKEN + r"(/|$)", path):
            return kind
    return None


def temp_dir(out: str) -> str:
    return FileSystems.join(out, ".tmp")


def progress_dir(temp: str) -> str:
    """Where local runs count rows for the progress reporter: under the temp folder when it
    is on this machine; else (a gs:// output) in a local folder named after it, since the
    counting steps and the reporter write and read small files with local file calls (the
    job removes it at the end)."""
    if is_local(temp):
        return FileSystems.join(temp, "progress")
    digest = hashlib.sha256(temp.encode("utf-8")).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"beam_pipeline-progress-{digest}")


def model_dir(out: str) -> str:
    """The serving SavedModel (transform graph inside)."""
    return FileSystems.join(out, "model", "serving")


def metrics_path(out: str) -> str:
    return FileSystems.join(out, "model", "metrics.json")


def report_path(out: str) -> str:
    """The static HTML statistics report."""
    return FileSystems.join(out, "report.html")
