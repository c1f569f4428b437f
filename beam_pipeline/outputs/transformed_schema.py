"""The id space of each transformed feature, and writing it into the transformed schema.

A feature that outputs integer ids (a lookup, a text sequence, hash bins, buckets) takes
the ids `0 .. id_space - 1`, OOV and mask ids included, so `Embedding(input_dim=id_space)`
is exactly large enough. `write_id_domains` records that range in
`transformed_metadata/schema.pbtxt` as an `int_domain`, so tf.Transform's own
`TFTransformOutput.num_buckets_for_transformed_feature(name)` answers `id_space` too:

    >>> tft.TFTransformOutput(out).num_buckets_for_transformed_feature("cat_small")
    7
"""

import os
from typing import Dict

import tensorflow as tf

import tensorflow_transform as tft
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io

from beam_pipeline.config import Config
from beam_pipeline.outputs.summary import iter_vocabulary


def id_spaces(config: Config, tft_output: tft.TFTransformOutput) -> Dict[str, int]:
    """{transformed feature name: number of distinct ids} for each config feature (label
    included) whose output is integer ids; see `Feature.id_space` for each kind's layout.
    A vocabulary learned from no values counts as empty."""
    sizes = {}
    for feature in config.features + ((config.label,) if config.label else ()):
        vocabulary_size = None
        if feature.vocabulary_names():
            path = tft_output.vocabulary_file_by_name(feature.vocabulary_names()[0])
            vocabulary_size = sum(1 for _ in iter_vocabulary(path))
        size = feature.id_space(vocabulary_size)
        if size is not None:
            sizes[feature.name] = size
    return sizes


def dense_spec(spec):
    """A transformed feature's spec as the tensors that training and serving get:
    a `SparseFeature` (a vector feature with `sparse: true`) is the dense
    `FixedLenFeature([size])` it stands for; any other spec is itself."""
    if isinstance(spec, tf.io.SparseFeature):
        return tf.io.FixedLenFeature(list(spec.size), spec.dtype)
    return spec


def densify(tensors: Dict, feature_spec: Dict) -> Dict:
    """`{name: tensor}` with each `SparseFeature` of `feature_spec` made dense (its absent
    columns 0): parsed transformed examples, or the transform graph's outputs."""
    return {name: tf.sparse.to_dense(t) if isinstance(feature_spec.get(name),
                                                      tf.io.SparseFeature) else t
            for name, t in tensors.items()}


def write_id_domains(config: Config, out: str) -> Dict[str, int]:
    """Sets `int_domain {min: 0 max: id_space - 1}` on every id feature of the transformed
    schema under `out` (replacing a domain tf.Transform inferred, which for a vocabulary
    lookup leaves out the project's mask and OOV layout); returns the id spaces written.
    A user `preprocessing_fn` keeps the schema tf.Transform wrote."""
    if config.preprocessing_fn:
        return {}
    tft_output = tft.TFTransformOutput(out)
    sizes = id_spaces(config, tft_output)
    schema = tft_output.transformed_metadata.schema
    written = {}
    for feature in schema.feature:
        if feature.name in sizes:
            feature.int_domain.Clear()
            feature.int_domain.min = 0
            feature.int_domain.max = sizes[feature.name] - 1
            written[feature.name] = sizes[feature.name]
    metadata_io.write_metadata(
        dataset_metadata.DatasetMetadata(schema),
        os.path.join(out, tft.TFTransformOutput.TRANSFORMED_METADATA_DIR))  # tft's own join
    return written
