"""HashedCrossing: the hashed cross of several columns (replaces keras.layers.HashedCrossing)."""

from __future__ import annotations

import dataclasses
from typing import Sequence

from beam_pipeline.features import encoding, lazy
from beam_pipeline.features.base import Feature, check_choice, check_positive, densify

tf = lazy.module("tensorflow")


@dataclasses.dataclass(frozen=True)
class HashedCrossing(Feature):
    """Crosses two or more scalar string/int columns into `num_bins` bins.

    The bin is `tf.sparse.cross_hashed` of the raw values, Keras's op. A missing cell
    crosses as "" (string) or 0 (int).

    Options:
      columns: the crossed columns, in order (the order changes the hash).
      num_bins: number of bins.
      output_mode: "int" or "one_hot".

    Config example:
        features:
          city_x_store: {kind: hashed_crossing, columns: [city, store_id], num_bins: 4096}

    Output: `<name>`: int64 bin, or float32 `[num_bins]` with one_hot.
    """

    columns: Sequence[str] = ()
    num_bins: int = None
    output_mode: str = "int"

    KIND = "hashed_crossing"
    COLUMN_TYPES = ("string", "int")

    def validate(self) -> None:
        if not isinstance(self.columns, (list, tuple)) or len(self.columns) < 2:
            raise ValueError(f"columns: expected a list of two or more columns, "
                             f"got {self.columns!r}")
        check_positive(self.num_bins, "num_bins", allow_none=False)
        check_choice(self.output_mode, "output_mode", ("int", "one_hot"))
        if self.impute or self.missing_indicator:
            raise ValueError("impute/missing_indicator: not available for a crossing")

    def transform(self, inputs):
        crossed = []
        for column in self.columns:
            raw = inputs[column]
            default = "" if raw.dtype == tf.string else tf.constant(0, raw.dtype)
            crossed.append(densify(raw, default)[:, tf.newaxis])
        bins = tf.sparse.to_dense(tf.sparse.cross_hashed(crossed, self.num_bins))
        bins = tf.RaggedTensor.from_tensor(bins[:, :1])
        return {self.name: encoding.encode(bins, self.output_mode, depth=self.num_bins)}

    def id_space(self, vocabulary_size):
        return self.num_bins if self.output_mode == "int" else None
