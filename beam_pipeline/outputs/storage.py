"""Folder semantics on every file system Beam's FileSystems and tf.io.gfile support.

Local disk has folders; object stores (gs://) have only objects whose names share a prefix:
there `FileSystems.exists("gs://b/out")` is False even with objects under it,
`FileSystems.delete(["gs://b/out"])` deletes nothing, and a missing object raises
`google.api_core.exceptions.NotFound` (TensorFlow: `tf.errors.NotFoundError`), not
`OSError`. Every command goes through this module for "is there a run here", "delete it",
"put this run in its place" and "read this small file if it exists", so each behaves on
gs:// as on the local disk.

A folder here is a path prefix: on an object store it exists when some object lies under
`folder/`, and its files are every object under it, at any depth.
"""

import logging
import os
import secrets
import shutil
import sys
from typing import Callable, Iterable, List, Optional

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.localfilesystem import LocalFileSystem

from beam_pipeline import crash_points

_LOG = logging.getLogger(__name__)


def is_local(path: str) -> bool:
    """Whether `path` is on this machine's file system (not gs:// or another store)."""
    return isinstance(FileSystems.get_filesystem(path), LocalFileSystem)


def is_missing(error: BaseException) -> bool:
    """Whether `error` says "no such file or object" on any file system: `FileNotFoundError`,
    GCS's `NotFound` (raised by Beam's GCS IO as is), TensorFlow's `NotFoundError`."""
    if isinstance(error, FileNotFoundError):
        return True
    try:
        from google.api_core import exceptions as gexc  # pylint: disable=import-outside-toplevel
        if isinstance(error, gexc.NotFound):
            return True
    except ImportError:  # pragma: no cover  (apache-beam[gcp] brings it)
        pass
    tf = sys.modules.get("tensorflow")  # never imported just to check
    errors = getattr(tf, "errors", None)
    if errors is not None and isinstance(error, errors.NotFoundError):
        return True
    return False


def _prefix(folder: str) -> str:
    return folder.rstrip("/") + "/"


def files(folder: str) -> List[str]:
    """Every file at any depth under `folder`, sorted; [] when there is none (`*` would
    match the files directly under it only)."""
    if is_local(folder) and not os.path.isdir(folder):
        return []
    try:
        found = FileSystems.match([FileSystems.join(folder, "**")])[0].metadata_list
    except Exception as e:  # pylint: disable=broad-except
        if is_missing(e) or (is_local(folder) and not os.path.isdir(folder)):
            return []
        raise
    prefix = _prefix(folder)
    return sorted(m.path for m in found if m.path.startswith(prefix) or is_local(folder))


def exists(folder: str) -> bool:
    """Whether `folder` exists: a local folder or file, or on an object store the object
    itself or any object under its prefix."""
    if is_local(folder):
        return os.path.exists(folder)
    return file_exists(folder) or bool(files(folder))


def file_exists(path: str) -> bool:
    """Whether the file (object) `path` exists; False, not an error, when it is missing."""
    try:
        return FileSystems.exists(path)
    except Exception as e:  # pylint: disable=broad-except
        if is_missing(e):
            return False
        raise


def is_empty(folder: str) -> bool:
    """True when no file lies under `folder` at any depth (local: empty sub-folders, which
    a killed run leaves, do not count)."""
    return not files(folder)


def subfolders(folder: str) -> List[str]:
    """The names of the folders directly under `folder`, sorted (local: even empty ones;
    object stores: every first path segment that has objects under it)."""
    if is_local(folder):
        if not os.path.isdir(folder):
            return []
        return sorted(e.name for e in os.scandir(folder) if e.is_dir())
    prefix = _prefix(folder)
    return sorted({p[len(prefix):].split("/", 1)[0] for p in files(folder)
                   if "/" in p[len(prefix):]})


def siblings(path_prefix: str) -> List[str]:
    """Folders whose path starts with `path_prefix` (a folder path and the start of a name,
    e.g. "gs://b/out.staging-"), sorted."""
    parent, start = path_prefix.rsplit("/", 1) if "/" in path_prefix else ("", path_prefix)
    if is_local(path_prefix):
        where = parent or ("/" if path_prefix.startswith("/") else ".")
        if not os.path.isdir(where):
            return []
        return sorted((parent + "/" if parent or path_prefix.startswith("/") else "") + e.name
                      for e in os.scandir(where) if e.is_dir() and e.name.startswith(start))
    try:
        found = FileSystems.match([path_prefix + "**"])[0].metadata_list
    except Exception as e:  # pylint: disable=broad-except
        if is_missing(e):
            return []
        raise
    rests = [m.path[len(path_prefix):] for m in found if m.path.startswith(path_prefix)]
    return sorted({path_prefix + r.split("/", 1)[0] for r in rests if "/" in r})


def delete_files(paths: Iterable[str]) -> None:
    """Deletes the files `paths`; one already gone is not an error."""
    paths = list(paths)
    if not paths:
        return
    try:
        FileSystems.delete(paths)
    except Exception as e:  # pylint: disable=broad-except
        # BeamIOError maps each path to its error: fine if every failure is "missing".
        failures = getattr(e, "exception_details", None) or {}
        if failures and all(is_missing(err) or not file_exists(p)
                            for p, err in failures.items()):
            return
        if is_missing(e):
            return
        raise


def delete_tree(folder: str) -> None:
    """Deletes `folder` and everything under it; nothing happens when it does not exist.
    On an object store: every object under `folder/` (and an object named `folder` or
    `folder/` itself, a "folder placeholder" some tools write)."""
    if is_local(folder):
        if os.path.isdir(folder) and not os.path.islink(folder):
            shutil.rmtree(folder)
        elif os.path.lexists(folder):
            os.remove(folder)
        return
    doomed = files(folder)
    for marker in (folder.rstrip("/"), _prefix(folder)):
        if marker not in doomed and file_exists(marker):
            doomed.append(marker)
    delete_files(doomed)


def _relative(path: str, folder: str) -> str:
    prefix = _prefix(folder)
    if not path.startswith(prefix):
        if is_local(folder):
            return os.path.relpath(path, folder)
        raise ValueError(f"{path} is not under {folder}")
    return path[len(prefix):]


def _makedirs_for(paths: Iterable[str]) -> None:
    for folder in sorted({os.path.dirname(p) for p in paths}):
        if folder and is_local(folder):
            os.makedirs(folder, exist_ok=True)


def move_tree(source: str, target: str) -> None:
    """Moves every file under `source` to the same place under `target`, merging into what
    `target` has (object stores have no folders to rename: files move one by one)."""
    new = files(source)
    targets = [FileSystems.join(target, _relative(f, source)) for f in new]
    _makedirs_for(targets)
    if new:
        FileSystems.rename(new, targets)
    if is_local(source):
        delete_tree(source)  # the emptied folders


def replace(staging: str, out: str, last: Callable[[str], bool] = lambda rel: False,
            aside: Optional[str] = None) -> None:
    """Puts the complete folder `staging` in the place of `out` (which may not exist).

    Local disk: `out` is renamed to `aside` (default: a random sibling), `staging` renamed
    to `out` (if that fails, `aside` is put back), the old one deleted; `out` is missing
    only for the instant between the two renames. Object stores (no rename of a folder):
    every new file is copied into place, those whose path relative to `staging` satisfies
    `last` (e.g. the run summary, which marks a run complete) after the others; then the
    old files the new run does not have are deleted, then the staged copies.
    """
    if is_local(out):
        base = out.rstrip("/")
        aside = aside or f"{base}.replaced-{secrets.token_hex(4)}"
        had_old = os.path.exists(base)
        if had_old:
            os.rename(base, aside)
            crash_points.reach("overwrite_swap")
        try:
            os.rename(staging.rstrip("/"), base)
        except BaseException:
            if had_old:
                os.rename(aside, base)
            raise
        if had_old:
            shutil.rmtree(aside, ignore_errors=True)
        return
    new = files(staging)
    relative = [_relative(p, staging) for p in new]
    targets = [FileSystems.join(out, r) for r in relative]
    for final in (False, True):
        pairs = [(s, t) for s, t, r in zip(new, targets, relative) if bool(last(r)) == final]
        if pairs:
            FileSystems.copy([s for s, _ in pairs], [t for _, t in pairs])
    keep = set(targets)
    delete_files(p for p in files(out) if p not in keep)
    delete_tree(staging)


def read_bytes(path: str) -> Optional[bytes]:
    """The bytes of the file `path`, or None when it does not exist (any file system: a
    missing GCS object raises `NotFound`, not `OSError`, when opened or read)."""
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            return f.read()
    except Exception as e:  # pylint: disable=broad-except
        if is_missing(e):
            return None
        if isinstance(e, OSError) and not file_exists(path):
            # Checked after the failure, not before: a file deleted in between is missing.
            return None
        raise


def read_text(path: str, encoding: str = "utf-8") -> Optional[str]:
    """The text of the file `path`, or None when it does not exist."""
    data = read_bytes(path)
    return None if data is None else data.decode(encoding)


def write_bytes(path: str, data: bytes) -> None:
    """Writes `data` as the file `path` (creating local parent folders)."""
    _makedirs_for([path])
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(data)
