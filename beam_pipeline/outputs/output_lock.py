"""One writer per output: a lock file beside the output folder, `<output>.lock`.

`preprocess` and `refresh` take it before they write anything and remove it when they end;
a second run on the same output meanwhile is refused (`Held`, exit 2) with the holder's
host, pid and start time. The lock is one small JSON file, created only if absent:

- local disk: the content written to a temp file, then `link(2)`ed to the lock's name
  (an atomic create-if-absent on POSIX file systems, NFS included);
- gs://: an object written with `if_generation_match=0` (GCS's create-if-absent).

A run killed with SIGKILL cannot remove its lock. The next run takes a lock over when its
holder is provably gone: the same host and no live process with that pid and start time,
or a lock older than `STALE_AFTER_SECONDS` (a holder on another host cannot be checked).
Taking over is itself race-free: locally, under an `flock` of the lock's folder, the lock
is read again and removed only if it is still the one judged stale; on GCS the stale
object is deleted with `if_generation_match=<its generation>`, so of two runs taking over
one lock, one deletes it and creates its own, the other then finds that one held.
"""

import json
import logging
import os
import secrets
import socket
import time
from datetime import datetime, timezone
from typing import Dict, Optional

from beam_pipeline import crash_points

# A run holding its lock longer than this is taken to be gone when its host cannot be
# checked (another machine). A refresh on Dataflow of a day's data takes hours, not days.
STALE_AFTER_SECONDS = 48 * 3600
SUFFIX = ".lock"
# A lock file with no readable content (written by hand, or a file system that lost it):
# taken over once it is this old (a lock is whole from the instant it exists).
_UNREADABLE_STALE_SECONDS = 60
_LOG = logging.getLogger(__name__)


class Held(Exception):
    """The output is locked by another live run. `holder` is its lock's content."""

    def __init__(self, path: str, holder: Dict):
        self.path = path
        self.holder = holder
        super().__init__(
            f"{path} is held by another run: host {holder.get('host')}, pid "
            f"{holder.get('pid')}, started {holder.get('started')} "
            f"({holder.get('command', 'beam-pipeline')}); one run writes an output at a time. "
            f"If that run is gone for good, delete {path} (a lock is taken over by itself "
            f"when its holder is gone on this host, or after {STALE_AFTER_SECONDS // 3600} h)")


def lock_path(out: str) -> str:
    """The lock file of output folder (or refresh root) `out`: its sibling `<out>.lock`."""
    return out.rstrip("/") + SUFFIX


def _process_start(pid: int) -> Optional[str]:
    """The start time of process `pid` in clock ticks since boot (Linux /proc), which
    tells a reused pid from the original; None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # Field 22; the command name (field 2) is in parentheses and may hold spaces.
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int, start: Optional[str]) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    current = _process_start(pid)
    return start is None or current is None or current == start


def holder_info(command: str) -> Dict:
    """What a lock records of the run taking it."""
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "pid_start": _process_start(os.getpid()),
            "started": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "started_epoch": time.time(), "command": command, "token": secrets.token_hex(8)}


def is_stale(holder: Dict, now: Optional[float] = None) -> bool:
    """Whether the run that wrote lock content `holder` is provably gone: on this host with
    no live process of its pid and start time, or older than STALE_AFTER_SECONDS. Content
    that is not a lock (unreadable: written by hand, or damaged) counts as stale once it is
    a minute old (the caller passes the file's time as `started_epoch`)."""
    now = time.time() if now is None else now
    try:
        started = float(holder.get("started_epoch", 0))
    except (TypeError, ValueError):
        started = 0.0
    if now - started > (_UNREADABLE_STALE_SECONDS if holder.get("unreadable")
                        else STALE_AFTER_SECONDS):
        return True
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        return not _alive(holder["pid"], holder.get("pid_start"))
    return False


def _parse(data: bytes, mtime: float) -> Dict:
    try:
        holder = json.loads(data.decode("utf-8"))
        if isinstance(holder, dict):
            return holder
    except ValueError:
        pass
    # Written by a run killed between its create and its write: judged by the file's age.
    return {"host": "?", "pid": "?", "started": "?", "started_epoch": mtime, "unreadable": True}


class OutputLock:
    """The lock of one output. `acquire()` takes it or raises `Held`; `release()` removes
    it if it is still this run's. Also a context manager."""

    def __init__(self, out: str, command: str):
        self.path = lock_path(out)
        self.command = command
        self.info: Optional[Dict] = None
        self._generation = None  # gs://: the generation of our lock object
        self.took_over: Optional[Dict] = None  # the stale holder this run replaced

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()

    def acquire(self) -> "OutputLock":
        """Takes the lock (taking over a stale one); raises `Held` when another live run
        holds it. Returns self."""
        self.info = holder_info(self.command)
        data = json.dumps(self.info, indent=1).encode("utf-8") + b"\n"
        store = _store(self.path)
        for _ in range(3):  # a takeover that lost to another taker looks again
            if store.create(data):
                break
            current = store.read()
            if current is None:
                continue  # released in between
            holder, version = current
            if not is_stale(holder):
                raise Held(self.path, holder)
            if store.remove_if_unchanged(version):
                _LOG.warning("took over the lock %s of a run that is gone: %s", self.path,
                             holder)
                self.took_over = holder
        else:
            current = store.read()
            raise Held(self.path, current[0] if current else {})
        self._store = store  # pylint: disable=attribute-defined-outside-init
        if isinstance(store, _LocalLock):
            store.remove_dead_temp_files()
        crash_points.reach("lock_taken")
        return self

    def release(self) -> None:
        """Removes the lock if it is still this run's (not taken over meanwhile)."""
        store = getattr(self, "_store", None)
        if store is None or self.info is None:
            return
        current = store.read()
        if current and current[0].get("token") == self.info["token"]:
            store.remove_if_unchanged(current[1])
        self._store = None  # pylint: disable=attribute-defined-outside-init


def _store(path: str):
    if path.startswith("gs://"):
        return _GcsLock(path)
    if "://" not in path:
        return _LocalLock(path)
    from beam_pipeline.outputs import storage  # pylint: disable=import-outside-toplevel
    return _LocalLock(path) if storage.is_local(path) else _FileSystemsLock(path)


class _LocalLock:
    def __init__(self, path: str):
        self.path = path

    def create(self, data: bytes) -> bool:
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        # Written whole to a temp file first, then linked to the lock's name: link(2) is an
        # atomic create-if-absent, so no reader ever sees a lock without its holder.
        temp = f"{self.path}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.link(temp, self.path)
        except FileExistsError:
            return False
        finally:
            os.remove(temp)  # e.g. no space left: nothing is left behind to block a run
        return True

    def remove_dead_temp_files(self) -> None:
        """Removes the temp files (`<lock>.<pid>-<hex>.tmp`) of runs killed between writing
        theirs and linking it: those whose pid is no live process on this host."""
        import glob  # pylint: disable=import-outside-toplevel
        for temp in glob.glob(glob.escape(self.path) + ".*-*.tmp"):
            pid = temp[len(self.path) + 1:].split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid), None):
                try:
                    os.remove(temp)
                except FileNotFoundError:
                    pass

    def read(self):
        """(holder, version) of the lock, or None if there is none; version: its inode and
        mtime, which a new lock at the same path does not share."""
        try:
            with open(self.path, "rb") as f:
                stat = os.fstat(f.fileno())
                data = f.read()
        except FileNotFoundError:
            return None
        return _parse(data, stat.st_mtime), (stat.st_ino, stat.st_mtime_ns, data)

    def remove_if_unchanged(self, version) -> bool:
        import fcntl  # pylint: disable=import-outside-toplevel
        folder = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY)
        try:
            # Two runs taking over one stale lock: the second, under the flock, sees the
            # first one's new lock, not the stale one, and leaves it.
            fcntl.flock(folder, fcntl.LOCK_EX)
            current = self.read()
            if current is None or current[1] != version:
                return False
            os.remove(self.path)
            return True
        finally:
            os.close(folder)  # releases the flock


class _GcsLock:
    def __init__(self, path: str):
        from apache_beam.io.gcp import gcsio  # pylint: disable=import-outside-toplevel
        bucket, _, name = path[len("gs://"):].partition("/")
        self.blob_name = name
        self.bucket = gcsio.GcsIO().client.bucket(bucket)

    def create(self, data: bytes) -> bool:
        from google.api_core import exceptions  # pylint: disable=import-outside-toplevel
        blob = self.bucket.blob(self.blob_name)
        try:
            blob.upload_from_string(data, content_type="application/json",
                                    if_generation_match=0)
        except exceptions.PreconditionFailed:
            return False
        return True

    def read(self):
        from google.api_core import exceptions  # pylint: disable=import-outside-toplevel
        blob = self.bucket.get_blob(self.blob_name)
        if blob is None:
            return None
        try:
            data = blob.download_as_bytes(if_generation_match=blob.generation)
        except (exceptions.NotFound, exceptions.PreconditionFailed):
            return None
        mtime = blob.updated.timestamp() if blob.updated else 0.0
        return _parse(data, mtime), blob.generation

    def remove_if_unchanged(self, version) -> bool:
        from google.api_core import exceptions  # pylint: disable=import-outside-toplevel
        try:
            self.bucket.blob(self.blob_name).delete(if_generation_match=version)
        except (exceptions.NotFound, exceptions.PreconditionFailed):
            return False
        return True


class _FileSystemsLock:
    """Another Beam file system: no create-if-absent there, so a check then a write (two
    runs started in the same instant could both pass); logged once per lock."""

    def __init__(self, path: str):
        self.path = path
        _LOG.warning("%s: this file system has no create-if-absent; the lock only stops "
                     "runs that start after this one has written it", path)

    def create(self, data: bytes) -> bool:
        from beam_pipeline.outputs import storage  # pylint: disable=import-outside-toplevel
        if storage.file_exists(self.path):
            return False
        storage.write_bytes(self.path, data)
        return True

    def read(self):
        from beam_pipeline.outputs import storage  # pylint: disable=import-outside-toplevel
        data = storage.read_bytes(self.path)
        return None if data is None else (_parse(data, 0.0), data)

    def remove_if_unchanged(self, version) -> bool:
        from beam_pipeline.outputs import storage  # pylint: disable=import-outside-toplevel
        if storage.read_bytes(self.path) != version:
            return False
        storage.delete_files([self.path])
        return True
