"""The Arrow layout every source produces: one `large_list<item>` column per raw column.

It is what tfx_bsl's CsvTFXIO gives (a missing value is a null list), so one
TensorAdapterConfig serves every source and tf.Transform sees `[batch, 1]` VarLen
sparse tensors whatever the input format.
"""

from typing import Dict, Optional, Sequence

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
    return pa.RecordBatch.from_arrays(
        [list_column(values[c.name].cast(ITEM_TYPES[c.read_type]), keep) for c in columns],
        [c.name for c in columns])
