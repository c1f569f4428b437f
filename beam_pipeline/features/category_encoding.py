"""CategoryEncoding: integer ids to one-hot, multi-hot or count vectors."""

from __future__ import annotations

import dataclasses

from beam_pipeline.features import encoding, lazy
from beam_pipeline.features.base import Feature, check_choice, check_positive

tf = lazy.module("tensorflow")


@dataclasses.dataclass(frozen=True)
class CategoryEncoding(Feature):
    """Encodes an int column of ids in `[0, num_tokens)` as Keras's CategoryEncoding.

    Ids outside the range are dropped (Keras drops ids >= num_tokens and raises on
    negative ones; a batch job must not stop on one row, so both are dropped). A missing
    scalar cell gives a row of zeros.

    Options:
      num_tokens: the number of columns.
      output_mode: "one_hot" (scalar column), "multi_hot" (default), "count".
      sparse: write the vector modes as sparse features (indices and values of the
        nonzero columns; Keras's `sparse=True`); `Output.dataset` and the served model
        still give the dense vectors.

    Config example:
        features:
          weekday: {kind: category_encoding, num_tokens: 7, output_mode: one_hot}

    Output: `<name>`, float32 `[num_tokens]`.
    """

    num_tokens: int = None
    output_mode: str = "multi_hot"
    sparse: bool = False

    KIND = "category_encoding"
    COLUMN_TYPES = ("int",)
    MULTIVALENT = True

    def validate(self) -> None:
        check_positive(self.num_tokens, "num_tokens", allow_none=False)
        check_choice(self.output_mode, "output_mode", ("one_hot", "multi_hot", "count"))
        encoding.check_mode(self.output_mode, self.multivalent)
        encoding.check_sparse(self.sparse, self.output_mode)

    def transform(self, inputs):
        extra = {}
        if self.impute or self.missing_indicator:
            dense, _, extra = self.scalar(inputs)
            values = tf.RaggedTensor.from_tensor(dense[:, tf.newaxis])
        else:
            values = self.values(inputs)
        extra[self.name] = encoding.encode(values, self.output_mode, depth=self.num_tokens,
                                           sparse=self.sparse)
        return extra
