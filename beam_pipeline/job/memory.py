"""Handing memory back between the analysis and the transform.

tf.Transform builds the final graph's lookup tables while it saves that graph (it traces
the `preprocessing_fn` with the real vocabulary files), and TensorFlow keeps named tables
for the life of the process; the transform then builds its own from the SavedModel. The
step here runs once that SavedModel is written: it destroys the tables the trace built
(`features.tables.release_traced`) and returns the freed memory, so that a local run
holds each vocabulary once during the transform, not twice (20M distinct values: 1 GB).
"""

import ctypes
import gc

import apache_beam as beam

from beam_pipeline import crash_points
from beam_pipeline.features import tables


def release_freed_memory() -> None:
    """Collects garbage and asks the C allocator (glibc's `malloc_trim`, where there is
    one) to return free memory to the operating system: glibc keeps what one thread freed
    in that thread's arena, where the transform's threads would not reuse it. Takes and
    returns nothing."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the collection is all we can do
        pass


def _release(element):
    tables.release_traced()
    release_freed_memory()
    crash_points.reach("analysis_done")
    return element


class ReleaseTracedTables(beam.PTransform):
    """Passes tf.Transform's SavedModel path (a singleton) through unchanged, destroying
    on that worker the tables traced to write it. Its output must feed the transform, so
    the transform's graph loads after."""

    def expand(self, saved_model_path):
        return saved_model_path | "ReleaseTracedTables" >> beam.Map(_release)
