"""Versioned runs under an output root: run folders, a manifest, a "latest" pointer.

    ROOT/
      runs/<run id>/...     one run's outputs; MANIFEST.json, written last, marks it complete
      LATEST                one line: the id of the published run

A run id is `YYYYMMDDTHHMMSSZ-<8 hex of the fingerprint>`, so ids sort by time. Readers
(train, export, inspect) call `resolve`, which never returns a run without a manifest.
Writers write a run's outputs, then `write_manifest`, then `publish`; a run killed at
any point leaves LATEST and every complete run as they were, and `clean_debris` removes
what it left. One writer per root at a time: `refresh` holds the root's lock
(`outputs.output_lock`) while it writes.

All file access goes through Beam's FileSystems, so ROOT may be gs://... On the local
file system small files are replaced atomically (temp file, fsync, os.replace); on object
stores a single-object write is already atomic, so those are written directly.
"""

import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import re
import time
import uuid
from datetime import datetime, timezone
from typing import Dict, Iterable, List, Optional, Tuple

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from beam_pipeline import crash_points
from beam_pipeline.outputs import layout, storage

RUNS = "runs"
LATEST = "LATEST"
MANIFEST = "MANIFEST.json"
_RUN_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")
_TMP = ".tmp-"  # infix of local temp files: "<name>.tmp-<pid>-<random>"
_STALE_TMP_SECONDS = 3600
_LOG = logging.getLogger(__name__)

# importlib.metadata distribution names of what the outputs depend on.
_DISTRIBUTIONS = {
    "tensorflow": "tensorflow",
    "tensorflow_transform": "tensorflow-transform",
    "tfx_bsl": "tfx-bsl",
    "apache_beam": "apache-beam",
    "keras": "keras",
    "beam_pipeline": "beam-pipeline",
}


# ---- ids and fingerprints ----------------------------------------------------------

def run_id(fingerprint: str, when: datetime) -> str:
    """The id of a run started at `when` (naive means UTC) with `fingerprint` (hex).

    Returns `YYYYMMDDTHHMMSSZ-<first 8 hex of fingerprint>`: fixed width, so ids sort
    as strings in time order.
    """
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    prefix = fingerprint[:8].lower()
    if not re.fullmatch(r"[0-9a-f]{8}", prefix):
        raise ValueError(f"fingerprint must start with 8 hex digits, got {fingerprint!r}")
    return when.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + prefix


def is_run_id(name: str) -> bool:
    """Whether `name` has the form of a run id (anything else under runs/ is left alone)."""
    return bool(_RUN_ID.match(name))


def fingerprint(config_text: bytes, input_files: List[Tuple[str, int]],
                versions: Dict[str, str]) -> str:
    """The sha256 hex of what a run's outputs depend on.

    Takes the config file's bytes, the input files as (path, size in bytes) in any order,
    and the library versions (see `library_versions`). Sizes stand in for contents:
    reading every input just to hash it would cost as much as the run.
    """
    canonical = json.dumps({
        "config_sha256": hashlib.sha256(config_text).hexdigest(),
        "inputs": sorted([str(path), int(size)] for path, size in input_files),
        "versions": {str(k): str(v) for k, v in versions.items()},
    }, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def library_versions() -> Dict[str, str]:
    """The Python version and the installed versions of the libraries the outputs depend
    on, by import name; a missing library is recorded as "not installed"."""
    versions = {"python": platform.python_version()}
    for name, distribution in _DISTRIBUTIONS.items():
        try:
            versions[name] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


# ---- paths ----------------------------------------------------------------------------

def runs_dir(root: str) -> str:
    """ROOT/runs."""
    return FileSystems.join(root, RUNS)


def run_dir(root: str, run_id: str) -> str:  # pylint: disable=redefined-outer-name
    """The folder of run `run_id` under `root` (ROOT/runs/<run id>)."""
    if not is_run_id(run_id):
        raise ValueError(f"not a run id: {run_id!r} (expected YYYYMMDDTHHMMSSZ-xxxxxxxx)")
    return FileSystems.join(root, RUNS, run_id)


def manifest_path(run_dir: str) -> str:  # pylint: disable=redefined-outer-name
    """The manifest file of a run folder."""
    return FileSystems.join(run_dir, MANIFEST)


def latest_path(root: str) -> str:
    """The LATEST pointer file under `root`."""
    return FileSystems.join(root, LATEST)


# ---- small-file I/O -------------------------------------------------------------------

def _write_atomically(path: str, data: bytes) -> None:
    """Replaces the file at `path` so a reader sees the old or the new bytes, never a mix."""
    if not layout.is_local(path):
        # An object store publishes an object only when its upload completes.
        with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            f.write(data)
        return
    # A temp file in the same folder (same file system, so os.replace is a rename).
    # fsync before the rename, or a crash could leave the new name pointing at empty data.
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}{_TMP}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    # Make the rename itself durable.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read(path: str) -> Optional[bytes]:
    """The bytes of `path`, or None if it does not exist (on GCS a missing object raises
    `NotFound`, not `OSError`: `storage.read_bytes` treats both as absent)."""
    return storage.read_bytes(path)


def _matching(pattern: str) -> List[str]:
    return [m.path for m in FileSystems.match([pattern])[0].metadata_list]


# ---- manifests and listing ------------------------------------------------------------

def write_manifest(run_dir: str, manifest: Dict) -> None:  # pylint: disable=redefined-outer-name
    """Writes `manifest` (JSON-serializable) as the run's MANIFEST.json. Call it after every
    other output of the run is written: its presence is what marks the run complete."""
    data = json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8") + b"\n"
    _write_atomically(manifest_path(run_dir), data)


def read_manifest(run_dir: str) -> Optional[Dict]:  # pylint: disable=redefined-outer-name
    """The run's manifest as a dict, or None if the run has none (it is not complete)."""
    data = _read(manifest_path(run_dir))
    return None if data is None else json.loads(data.decode("utf-8"))


def _all_runs(root: str) -> List[str]:
    """Ids of every run folder under ROOT/runs, complete or not, sorted oldest first."""
    # Local: every folder, even one created but still empty; object stores have no
    # folders: a run exists if some object is under its prefix.
    return sorted(n for n in storage.subfolders(runs_dir(root)) if is_run_id(n))


def complete_runs(root: str) -> List[str]:
    """Ids of the runs under `root` that have a manifest, sorted oldest first."""
    found = _matching(FileSystems.join(runs_dir(root), "*", MANIFEST))
    names = {FileSystems.split(FileSystems.split(p)[0])[1] for p in found}
    return sorted(n for n in names if is_run_id(n))


# pylint: disable-next=redefined-outer-name
def find_by_fingerprint(root: str, fingerprint: str) -> Optional[str]:
    """The newest complete run whose manifest's "fingerprint" equals `fingerprint`, or None."""
    for rid in reversed(complete_runs(root)):
        manifest = read_manifest(run_dir(root, rid))
        if manifest and manifest.get("fingerprint") == fingerprint:
            return rid
    return None


# ---- the LATEST pointer -------------------------------------------------------------------

def latest(root: str) -> Optional[str]:
    """The run id LATEST points to, or None if there is no pointer. A pointer that does not
    name a complete run (edited by hand, or its run deleted) also gives None, with a warning."""
    data = _read(latest_path(root))
    if data is None:
        return None
    rid = data.decode("utf-8", errors="replace").strip()
    if not is_run_id(rid):
        _LOG.warning("runs: %s does not hold a run id: %r", latest_path(root), rid[:80])
        return None
    if not FileSystems.exists(manifest_path(run_dir(root, rid))):
        _LOG.warning("runs: %s names run %s, which has no manifest", latest_path(root), rid)
        return None
    return rid


def publish(root: str, run_id: str) -> None:  # pylint: disable=redefined-outer-name
    """Points LATEST at `run_id` in one atomic step.

    Raises:
      ValueError: the run has no manifest (it is not complete).
    """
    if not FileSystems.exists(manifest_path(run_dir(root, run_id))):
        raise ValueError(f"cannot publish run {run_id} under {root}: it has no {MANIFEST} "
                         "(the run did not finish)")
    _write_atomically(latest_path(root), (run_id + "\n").encode("utf-8"))


def resolve(root: str, run: Optional[str] = None) -> str:
    """The folder a reader (train, export, inspect) should read under output root `root`.

    Takes an optional run id. Returns: that run's folder (it must be complete); else the
    published run's folder; else, when `root` has no runs at all, `root` itself (the
    output of a one-shot `preprocess`).

    Raises:
      ValueError: the run is unknown or incomplete, or runs exist but none is published.
    """
    if run is not None:
        if not is_run_id(run):
            raise ValueError(f"not a run id: {run!r} (expected YYYYMMDDTHHMMSSZ-xxxxxxxx)")
        if not FileSystems.exists(manifest_path(run_dir(root, run))):
            complete = complete_runs(root)
            raise ValueError(f"run {run} under {root} is not a complete run (no {MANIFEST}); "
                             f"complete runs: {', '.join(complete) or 'none'}")
        return run_dir(root, run)
    published = latest(root)
    if published:
        return run_dir(root, published)
    # A root with a pointer file is a runs root even if its runs are gone.
    if not _all_runs(root) and not FileSystems.exists(latest_path(root)):
        return root
    complete = complete_runs(root)
    raise ValueError(f"{root} holds runs but none is published (no valid {LATEST}); "
                     f"complete runs: {', '.join(complete) or 'none'}. Pass a run id, or "
                     "run a refresh that publishes")


# ---- cleanup --------------------------------------------------------------------------

def _delete_run(root: str, rid: str, crash_point: Optional[str] = None) -> None:
    folder = run_dir(root, rid)
    # The manifest goes first: a delete killed halfway leaves debris (which the next
    # clean_debris removes), never a "complete" run with files missing.
    storage.delete_files([manifest_path(folder)] if storage.file_exists(manifest_path(folder))
                         else [])
    if crash_point:
        crash_points.reach(crash_point)
    storage.delete_tree(folder)


def clean_debris(root: str, keep: Iterable[str] = ()) -> List[str]:
    """Deletes the run folders that have no manifest (runs that were killed), except the
    ids in `keep` (the run in progress). Returns the ids it deleted, oldest first."""
    keep = set(keep)
    complete = set(complete_runs(root))
    removed = [rid for rid in _all_runs(root) if rid not in complete and rid not in keep]
    for rid in removed:
        _delete_run(root, rid)
    _remove_stale_temp_files(root)
    return removed


def _remove_stale_temp_files(root: str) -> None:
    # A writer killed between writing its temp file and renaming it leaves the temp file
    # next to LATEST (local only). Old ones only: a young one may be a live writer's.
    if not layout.is_local(root):
        return
    cutoff = time.time() - _STALE_TMP_SECONDS
    for meta in FileSystems.match([latest_path(root) + _TMP + "*"])[0].metadata_list:
        if meta.last_updated_in_seconds < cutoff:
            FileSystems.delete([meta.path])


def apply_retention(root: str, keep_last: int) -> List[str]:
    """Deletes the oldest complete runs beyond the newest `keep_last` (>= 0), never the run
    LATEST points to. Returns the ids it deleted, oldest first."""
    if keep_last < 0:
        raise ValueError(f"keep_last must be >= 0, got {keep_last}")
    complete = complete_runs(root)
    kept = set(complete[max(0, len(complete) - keep_last):])
    published = latest(root)
    if published:
        kept.add(published)
    removed = [rid for rid in complete if rid not in kept]
    for rid in removed:
        _delete_run(root, rid, crash_point="refresh_retention")
    return removed
