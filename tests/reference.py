"""Independent references: the raw CSV through pandas, the transformed TFRecords through tf.data."""

import glob
import os

import numpy as np
import pandas as pd
import tensorflow as tf

HASH_BUCKETS = 10_000


def raw_frame(csv_dir):
    """Every row of the test shards (plain and .gz), empty cells as NaN/None."""
    frames = [pd.read_csv(p, keep_default_na=False, na_values={"f_missing": [""]},
                          dtype={"cat_small": str, "cat_mid": str, "cat_big": str, "text": str})
              for p in sorted(glob.glob(os.path.join(csv_dir, "part-*")))]
    return pd.concat(frames, ignore_index=True)


def is_eval(ids, eval_fraction):
    """The documented split rule: FarmHash64(key as text) mod 10000 < fraction * 10000."""
    keys = np.array([str(i).encode() for i in ids], dtype=object)
    buckets = tf.strings.to_hash_bucket_fast(keys, HASH_BUCKETS).numpy()
    return buckets < int(round(eval_fraction * HASH_BUCKETS))


def keras_order(counts):
    """Tokens sorted by count descending, ties by token descending (bytes for strings,
    numerically for ints), as Keras's index_lookup does."""
    items = list(counts.items())
    items.sort(key=lambda kv: (kv[1], kv[0].encode() if isinstance(kv[0], str) else kv[0]),
               reverse=True)
    return [k for k, _ in items]


def read_transformed(out_dir, split):
    """The split's transformed TFRecords parsed with the transformed feature spec."""
    import tensorflow_transform as tft  # pylint: disable=import-outside-toplevel
    spec = tft.TFTransformOutput(out_dir).transformed_feature_spec()
    files = sorted(glob.glob(os.path.join(out_dir, "data", split, "part-*.tfrecord.gz")))
    assert files, f"no TFRecords for split {split} under {out_dir}"
    batches = [tf.io.parse_example(b, spec) for b in
               tf.data.TFRecordDataset(files, compression_type="GZIP").batch(4096)]
    return {k: np.concatenate([b[k].numpy() for b in batches]) for k in spec}
