"""The Arrow layout every source produces: one `large_list<item>` column per raw column.

It is what tfx_bsl's CsvTFXIO gives (a missing value is a null list), so one
TensorAdapterConfig serves every source and tf.Transform sees `[batch, 1]` VarLen
sparse tensors whatever the input format.
"""

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ITEM_TYPES = {"int": pa.int64(), "float": pa.float32(), "string": pa.large_binary()}


def list_column(values: pa.Array, keep: Optional[np.ndarray] = None) -> pa.Array:
    """Flat values (null = missing) -> one-value lists, null where missing, of the kept rows."""
    if keep is not None:
        values = values.filter(pa.array(keep))
    present = pc.is_valid(values).to_numpy(zero_copy_only=False)
    offsets = np.concatenate([[0], np.cumsum(present)]).astype(np.int64)
    return pa.LargeListArray.from_arrays(
        pa.array(offsets), values.filter(pc.is_valid(values)), mask=pa.array(~present))


def record_batch(columns: Sequence, values: Dict[str, pa.Array],
                 keep: Optional[np.ndarray] = None) -> pa.RecordBatch:
    """The record batch of `columns` (config Columns) from flat typed `values` per name."""
    arrays = []
    for column in columns:
        array = values[column.name].cast(ITEM_TYPES[column.read_type])
        if column.read_type == "float":  # NaN is a missing value, whatever the source
            array = pc.if_else(pc.is_nan(array), pa.nulls(len(array), array.type), array)
        arrays.append(list_column(array, keep))
    return pa.RecordBatch.from_arrays(arrays, [c.name for c in columns])


def missing_required(columns: Sequence, values: Dict[str, pa.Array]) -> List[Tuple[int, object]]:
    """(row index, first required Column it lacks) for each row of flat typed `values`
    that has no value in a required column (the label, unless it has a fill value).

    A NaN is missing here too, as in `record_batch`.
    """
    missing = {}
    for column in columns:
        if not getattr(column, "required", False):
            continue
        array = values[column.name]
        absent = pc.is_null(array, nan_is_null=True).to_numpy(zero_copy_only=False)
        for i in np.flatnonzero(absent):
            missing.setdefault(int(i), column)
    return sorted(missing.items())


def describe_missing(column) -> str:
    """The dead letter's detail for a row without a value in the required `column`."""
    if column.missing_reason == "missing_label":
        return (f"column {column.name!r}: the label is missing (a training row needs one; "
                "label.fill_value opts out)")
    return f"column {column.name!r}: a required value is missing"
