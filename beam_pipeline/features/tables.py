"""The lookup tables through which the transform graph reads learned files.

tf.Transform traces the final graph while it saves it, with the real vocabulary paths,
and builds each table (the whole file, in memory) during that trace. Those tables are
named, so TensorFlow keeps them in its resource manager for the life of the process,
while the transform builds its own from the SavedModel's copy of the file: a run held
every vocabulary twice (2 x 1 GB at 20M distinct values). A table built that way is
recorded here, and `release_traced()`, which the pipeline runs once the SavedModel is
written, destroys them.

Example (in a `preprocessing_fn`):

    lines, size = tables.lookup(
        lambda p: tf.lookup.TextFileInitializer(
            p, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER,
            tf.string, tf.lookup.TextFileIndex.WHOLE_LINE),
        vocabulary_path, ids, default_value="", name="first_line")
"""

from __future__ import annotations

import threading
from typing import Any, Callable, List

from beam_pipeline.features import lazy

tf = lazy.module("tensorflow")
tf_utils = lazy.module("tensorflow_transform.tf_utils")

_TRACED: List[Any] = []  # resource handles of tables built while a graph was traced
_LOCK = threading.Lock()


def lookup(initializer_for: Callable[[Any], Any], path, x, default_value, name: str):
    """Looks `x` up in a `tf.lookup.StaticHashTable` read from `path`, through
    tf.Transform's helper (which makes the lookup wait for the analyzer writing the file,
    and builds the table outside the graph when the path is known).

    Args:
      initializer_for: path -> the table's initializer (e.g. a `TextFileInitializer`).
      path: the file's path (a string or a string tensor: tft's deferred analyzer output).
      x: a dense tensor of keys.
      default_value: what an absent key gives.
      name: the table's name.

    Returns:
      (values looked up, table size), as `tf_utils.construct_and_lookup_table`.
    """
    traced = tf.inside_function()

    def build(file):
        table = tf.lookup.StaticHashTable(initializer_for(file), default_value=default_value,
                                          name=name)
        if traced and tf.executing_eagerly():  # lifted out of the trace: built now
            with _LOCK:
                _TRACED.append(table.resource_handle)
        return table

    return tf_utils.construct_and_lookup_table(build, path, x)


def release_traced() -> int:
    """Destroys the tables that `lookup` built while a graph was traced, once no graph
    traced so far will run again (tft's final SavedModel is written and loads its own).
    Returns how many handles it released."""
    with _LOCK:
        handles, _TRACED[:] = list(_TRACED), []
    for handle in handles:
        tf.raw_ops.DestroyResourceOp(resource=handle, ignore_lookup_error=True)
    return len(handles)
