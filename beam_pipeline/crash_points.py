"""Named points where a test can make a run die as a SIGKILL would, to test what it leaves.

    BEAM_PIPELINE_CRASH_AT=<point> beam-pipeline preprocess ...

When the process that runs a step reaches the point named in `BEAM_PIPELINE_CRASH_AT`, it
exits at once with `EXIT_CODE` through `os._exit`: no `finally`, no `atexit`, no flush of
open files, so whatever a real kill at that instant would leave is left. Without the
variable, `reach` is one dictionary lookup. The points and what a crash at each proves are
listed in `POINTS` and in docs/reliability.md.

The variable is for tests: a crash in a step that runs in a worker process (Beam's
multi-processing mode, a portable runner's SDK workers) kills that worker, not the command.
"""

import os
import sys

ENV = "BEAM_PIPELINE_CRASH_AT"
EXIT_CODE = 86  # no other exit of the command uses it (see cli: 0, 1, 2, 3, 4)

# name -> where it is (what a crash there leaves is checked by tests/test_crash_points.py).
POINTS = {
    "lock_taken": "the output's lock was just taken, nothing else done",
    "analysis_done": "the analysis is complete (tf.Transform's graph saved), no row "
                     "transformed yet",
    "shard_written_train": "the first TFRecord shard of the train split is closed",
    "shard_written_eval": "the first TFRecord shard of the eval split is closed",
    "cache_commit": "refresh: the first analyzed span's cache is moved into the cache, "
                    "before its COMPLETE marker",
    "staged": "the run is complete in its staging folder (or refresh run folder), not yet "
              "published",
    "overwrite_swap": "preprocess --overwrite: the old output is renamed aside, the new one "
                      "not yet in its place",
    "refresh_manifest": "refresh: the run's manifest is written, LATEST not yet moved",
    "refresh_latest": "refresh: LATEST names the new run, retention not yet applied",
    "refresh_retention": "refresh: retention deleted the first old run's manifest, not "
                         "yet its files",
}


def reach(point: str) -> None:
    """Exits the process with `EXIT_CODE` at once if `point` is the one the environment
    names; returns None otherwise. `point` must be a name in `POINTS`."""
    wanted = os.environ.get(ENV)
    if wanted is None:
        return
    if point not in POINTS:
        raise ValueError(f"unknown crash point {point!r}; known: {', '.join(POINTS)}")
    if wanted == point:
        try:
            sys.stderr.write(f"beam-pipeline: crash point {point} reached; exiting\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os._exit(EXIT_CODE)  # pylint: disable=protected-access
