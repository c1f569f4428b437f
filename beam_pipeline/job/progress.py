"""Progress of a long local run: stage, rows done of an estimated total, rate, time left.

The pipeline counts rows as each read produces them (`CountRows`, a step after each
read). On the local runner, in this process or in its worker processes
(`direct_running_mode=multi_processing`), each counting step writes its running count to
a small file in a local progress folder at most twice a second, and a reporter thread
here sums those files: a progress bar on a terminal, periodic lines otherwise. Other
runners run the steps on other machines; there the command prints the job's state (and,
on Dataflow, its console address) instead.

Rows read means what the run summary means: every record, valid or rejected. The last
line takes its count from the finished job's counters, so it is the summary's "read",
with the rejected count beside it; the estimate of the total counts every line of the
input, rejected ones too. Lines before it count what the counting steps are given: the
record batches, and the dead letters where the pipeline passes them through one too.
"""

import json
import logging
import os
import sys
import threading
import time
import zlib
from typing import Dict, List, Optional, Tuple

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from beam_pipeline.outputs import layout

STAGES = ("analyze", "transform")
_SAMPLE_BYTES = 1 << 20
_WRITE_EVERY_SECONDS = 0.5


class CountRows(beam.DoFn):
    """Passes record batches or dead letters (a read's `rejected` output, JSON lines)
    through, counting the records they hold into `directory` (if local)."""

    def __init__(self, stage: str, directory: Optional[str]):
        self._stage = stage
        self._directory = directory

    def setup(self):
        self._done = 0  # rows of this instance's finished bundles
        self._rows = 0
        self._written_at = 0.0
        # One file per DoFn instance: instances in several processes never share a file.
        self._path = (os.path.join(self._directory, f"{self._stage}-{os.getpid()}-{id(self)}")
                      if self._directory and layout.is_local(self._directory) else None)

    def start_bundle(self):
        # A bundle that failed (and is retried, maybe by this instance) never finished:
        # its rows are counted again from the finished bundles' total, not on top.
        self._rows = self._done

    def process(self, batch):
        if isinstance(batch, pa.RecordBatch):
            self._rows += batch.num_rows
        else:  # a dead letter stands for `rows` records (default 1), as in the summary
            self._rows += json.loads(batch).get("rows", 1)
        if self._path and time.monotonic() - self._written_at > _WRITE_EVERY_SECONDS:
            self._write()
        yield batch

    def finish_bundle(self):
        self._done = self._rows
        if self._path:
            self._write()

    def _write(self):
        os.makedirs(self._directory, exist_ok=True)
        temp = f"{self._path}.tmp"
        with open(temp, "w") as f:
            f.write(str(self._rows))
        os.replace(temp, self._path)  # a reader never sees a half-written count
        self._written_at = time.monotonic()


def read_counts(directory: str) -> Dict[str, int]:
    """Rows counted so far per stage, summed over the files `CountRows` wrote."""
    counts = {stage: 0 for stage in STAGES}
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return counts
    for name in names:
        stage = name.split("-", 1)[0]
        if stage in counts and not name.endswith(".tmp"):
            try:
                with open(os.path.join(directory, name)) as f:
                    counts[stage] += int(f.read() or 0)
            except (FileNotFoundError, ValueError):  # replaced or being replaced
                pass
    return counts


def estimate_rows(files: List[str], header: bool) -> int:
    """Rough row count of the input: newlines per stored byte in the first file's first MB,
    times the stored size of every file (gzip files are measured compressed)."""
    sizes = [r.metadata_list[0].size_in_bytes for r in FileSystems.match(files)]
    with FileSystems.open(files[0], compression_type=CompressionTypes.UNCOMPRESSED) as f:
        stored = f.read(_SAMPLE_BYTES)
    if not stored:
        return 0
    text = zlib.decompressobj(wbits=47).decompress(stored) if files[0].endswith(".gz") else stored
    lines_per_byte = max(text.count(b"\n"), 1) / len(stored)
    return max(int(sum(sizes) * lines_per_byte) - (len(files) if header else 0), 1)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Reporter:
    """Prints progress every `interval` seconds from a background thread until `finish()`."""

    def __init__(self, files: List[str], header: bool, directory: str, stream=None,
                 interval: Optional[float] = None):
        self._directory = directory
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._interval = interval if interval is not None else (0.5 if self._tty else 10.0)
        self._files = len(files)
        self._total = estimate_rows(files, header) if files else 0
        self._started = time.time()
        self._stop = threading.Event()
        self._last_percent = 0.0
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> "Reporter":
        self._thread.start()
        return self

    def _line(self, stage: str, percent: float, rows: int, total: int, processed: int,
              rejected: int = 0) -> str:
        elapsed = time.time() - self._started
        rate = processed / elapsed if elapsed > 0 else 0.0
        left = (f", ~{_duration(elapsed * (100 - percent) / percent)} left"
                if 0 < percent < 100 else "")
        about = "" if stage == "done" else "~"
        rejects = f"{rejected:,} rejected; " if rejected else ""
        return (f"progress: {percent:5.1f}% {stage}: {rows:,} of {about}{total:,} rows read "
                f"({rejects}{self._files} files), {rate:,.0f} rows/s, "
                f"elapsed {_duration(elapsed)}{left}")

    def _report(self, final: bool = False, job_rows: Optional[Tuple[int, int]] = None) -> None:
        counts = read_counts(self._directory)
        total = max(self._total, counts["analyze"], counts["transform"], 1)
        rejected = 0
        if final:
            stage, percent = "done", 100.0
            # The job's own count (the summary's) when it has one; else the rows counted here.
            rows, rejected = job_rows if job_rows else (counts["transform"], 0)
            total = rows
        else:
            stage = "transform and write" if counts["transform"] else (
                "analyze" if counts["analyze"] else "starting")
            rows = counts["transform"] or counts["analyze"]
            # Each row is read twice (analysis, then transform); the estimate may be short,
            # so stay below 100% until the job has really finished.
            percent = min(99.0, 100.0 * (counts["analyze"] + counts["transform"]) / (2 * total))
            percent = max(percent, self._last_percent)
        self._last_percent = percent
        line = self._line(stage, percent, rows, total, counts["analyze"] + counts["transform"],
                          rejected)
        if self._tty:
            bar = "#" * int(percent / 5)
            self._stream.write(f"\r[{bar:<20}] {line}" + ("\n" if final else ""))
        else:
            self._stream.write(line + "\n")
        self._stream.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._report()

    def finish(self, result=None) -> None:
        """Stops the thread and prints the 100% line: with the finished job's `result`, its
        rows read and rejected as the run summary counts them."""
        self._stop.set()
        self._thread.join()
        self._report(final=True, job_rows=_job_rows(result) if result is not None else None)


def _job_rows(result) -> Optional[Tuple[int, int]]:
    """`(read, rejected)` from a finished job's counters, or None if it has none."""
    # Imported here: pipeline imports this module.
    from beam_pipeline.job import pipeline  # pylint: disable=import-outside-toplevel
    from beam_pipeline.outputs import summary
    try:
        counters = pipeline.read_counters(result)
    except Exception:  # pylint: disable=broad-except  (a failed job, a runner without metrics)
        logging.debug("progress: no counters from the job", exc_info=True)
        return None
    return summary.rows_read(counters) if counters else None
