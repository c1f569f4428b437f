"""Raw columns -> the raw feature spec and tf.Transform metadata.

Every raw column is read as a VarLen feature so that an empty CSV cell is a missing
value (an absent entry) rather than a parse error; feature kinds decide how to impute.
"""

from typing import Dict, Iterable

import tensorflow as tf
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

DTYPES = {"float": tf.float32, "int": tf.int64, "string": tf.string}


def raw_feature_spec(columns: Iterable) -> Dict[str, tf.io.VarLenFeature]:
    """Maps config columns to `{name: tf.io.VarLenFeature(dtype)}` (multivalent: string)."""
    return {c.name: tf.io.VarLenFeature(DTYPES[c.read_type]) for c in columns}


def raw_metadata(columns: Iterable) -> dataset_metadata.DatasetMetadata:
    """The tf.Transform `DatasetMetadata` (schema) of the raw columns."""
    return dataset_metadata.DatasetMetadata(
        schema_utils.schema_from_feature_spec(raw_feature_spec(columns)))
