"""Rows whose class no train row has, set aside as `unseen_label` before the transform.

A `string_lookup` label's classes are the vocabulary of the train split. A class that
only eval rows (or an eval-only input) have has no class id there: the lookup would give
-1, which no loss accepts and no metric means. So the transform read checks each row's
label against the learned classes and sets such rows aside, counted and named, like any
other dead letter. Train rows always pass: their classes are what was learned.
"""

from typing import List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems

from beam_pipeline.sources.dead_letter import Reject

UNSEEN_LABEL = "unseen_label"


class LabelClasses:
    """The label's learned classes, read from the transform graph's vocabulary asset.

    Args:
      column: the label column.
      integer: whether its values are ints (stored as sortable keys in the file).
      vocabulary_name: the asset's file name (the label's output name).
    """

    def __init__(self, column: str, integer: bool, vocabulary_name: str):
        self.column = column
        self._integer = integer
        self._name = vocabulary_name
        self._loaded_from: Optional[str] = None
        self._classes: Optional[pa.Array] = None

    def load(self, transform_fn_dir: str) -> None:
        """Reads the classes once per worker (the directory is the same for every item)."""
        if self._loaded_from == transform_fn_dir:
            return
        from beam_pipeline.features import vocabulary  # pylint: disable=import-outside-toplevel
        path = FileSystems.join(transform_fn_dir, "assets", self._name)
        with FileSystems.open(path) as f:
            lines = f.read().decode("utf-8").splitlines()
        keys = [line.split(" ", 1)[1] for line in lines if " " in line]
        keys = [k for k in keys if k != vocabulary.EMPTY_VOCABULARY_DUMMY]
        values = [vocabulary.unescape(k, integer=self._integer) for k in keys]
        self._classes = (pa.array(values, pa.int64()) if self._integer
                         else pa.array([v.encode("utf-8") for v in values], pa.large_binary()))
        self._loaded_from = transform_fn_dir

    def set_aside(self, batch: pa.RecordBatch, file: str, lines: Optional[Sequence[int]] = None
                  ) -> Tuple[pa.RecordBatch, List[Reject]]:
        """(the batch without rows of unseen classes, a reject for each such row).

        `lines`: each row's line or record number in `file`, when the reader knows them.
        """
        lists = batch.column(batch.schema.get_field_index(self.column))
        # A missing label only gets here with label.fill_value, which is a learned class.
        first = pc.list_element(pc.fill_null(lists, pa.scalar([None], lists.type)), 0)
        known = pc.or_(pc.is_null(first), pc.is_in(first, value_set=self._classes))
        if pc.all(known).as_py():
            return batch, []
        unseen = pc.invert(known).to_numpy(zero_copy_only=False)
        rejects = []
        for row, value in zip(np.flatnonzero(unseen), pc.filter(first, pc.invert(known)).to_pylist()):
            shown = value if self._integer else value.decode("utf-8", "backslashreplace")
            rejects.append(Reject(
                file, 0 if lines is None else int(lines[row]), UNSEEN_LABEL,
                f"column {self.column!r}: class {shown!r} occurs in no train row, so it has "
                f"no class id (the model cannot be scored on it)",
                str(shown).encode("utf-8")))
        return batch.filter(pa.array(~unseen)), rejects
