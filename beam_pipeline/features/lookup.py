"""StringLookup and IntegerLookup: categorical values to ids with a learned vocabulary."""

from __future__ import annotations

import dataclasses
from typing import Optional, Union

from beam_pipeline.features import encoding, lazy, packing, vocabulary
from beam_pipeline.features.base import Feature, check_choice, check_positive

tf = lazy.module("tensorflow")


@dataclasses.dataclass(frozen=True)
class StringLookup(Feature):
    """Maps string values to ids (replaces keras.layers.StringLookup).

    The index layout is Keras's: in `int` mode `[mask] + [OOV] * num_oov_indices +
    vocabulary` (the mask entry only when `mask_token` is set); in the other modes
    `[OOV] * num_oov_indices + vocabulary`, and mask values are dropped. The vocabulary is
    the train split's values by count descending, ties broken by bytes descending; the
    mask and `oov_token` values are never counted. With several OOV indices a value goes
    to FarmHash64(value) mod n. A missing scalar cell is OOV unless `impute` fills it (the
    vocabulary then counts the filled values, as if the data had been filled first).

    Options:
      max_tokens: size of the index space, mask and OOV entries included (Keras's meaning).
        Needed by the vector modes, which always give `max_tokens` columns (Keras's
        `pad_to_max_tokens=True`).
      min_frequency: drop values seen fewer times than this.
      num_oov_indices: OOV entries (>= 1).
      mask_token: a value that means "nothing" (id 0 in `int` mode).
      oov_token: a value never counted into the vocabulary ("[UNK]").
      output_mode: "int", "one_hot" (scalar columns), "multi_hot", "count".
      output_sequence_length: for a multivalent column in `int` mode: ids per row,
        padded with the mask id 0 (so a mask_token is needed).
      sparse: write the vector modes as sparse features (indices and values of the
        nonzero columns; Keras's `sparse=True`); `Output.dataset` and the served model
        still give the dense vectors.

    Config example:
        features:
          city: {kind: string_lookup, max_tokens: 1000}
          tags: {kind: string_lookup, max_tokens: 64, output_mode: multi_hot}

    Output: `<name>`: int64 (`[output_sequence_length]` for a multivalent column), or
    float32 `[max_tokens]` in the vector modes.
    """

    max_tokens: Optional[int] = None
    min_frequency: Optional[int] = None
    num_oov_indices: int = 1
    mask_token: Optional[Union[str, int]] = None
    oov_token: Union[str, int] = "[UNK]"
    output_mode: str = "int"
    output_sequence_length: Optional[int] = None
    sparse: bool = False

    KIND = "string_lookup"
    COLUMN_TYPES = ("string",)
    MULTIVALENT = True

    def validate(self) -> None:
        check_positive(self.max_tokens, "max_tokens")
        check_positive(self.min_frequency, "min_frequency")
        check_positive(self.num_oov_indices, "num_oov_indices", allow_none=False)
        check_positive(self.output_sequence_length, "output_sequence_length")
        check_choice(self.output_mode, "output_mode", encoding.MODES)
        encoding.check_sparse(self.sparse, self.output_mode)
        value_type = str if self.column_type == "string" else int
        for option in ("mask_token", "oov_token"):
            value = getattr(self, option)
            if value is not None and (not isinstance(value, value_type)
                                      or isinstance(value, bool)):
                raise ValueError(f"{option}: expected a {value_type.__name__}, got {value!r}")
        if self.max_tokens is not None and self.max_tokens <= self._reserved():
            raise ValueError(f"max_tokens ({self.max_tokens}) must exceed the "
                             f"{self._reserved()} mask/OOV entries")
        if self.output_mode != "int" and self.max_tokens is None:
            raise ValueError(f"max_tokens: required with output_mode {self.output_mode!r} "
                             f"(it is the number of output columns)")
        encoding.check_mode(self.output_mode, self.multivalent, self.output_sequence_length,
                            self.mask_token)

    def _reserved(self) -> int:
        with_mask = self.mask_token is not None and self.output_mode == "int"
        return self.num_oov_indices + int(with_mask)

    def _counted(self, inputs):
        """(values, missing, extra outputs, mask of the values counted into the vocabulary,
        mask of the mask_token values, top_k) of one batch; the plan's, once it has run."""
        kept = packing.kept(self.name)
        if kept is not None:
            return kept
        extra = {}
        if self.multivalent:
            values = self.values(inputs)
            missing = None
        else:
            dense, missing, extra = self.scalar(inputs)
            # One value per row, so nothing to validate: from_tensor, or a validated
            # partition, takes a large part of tracing a wide config.
            values = tf.RaggedTensor.from_uniform_row_length(dense, 1, validate=False)
        flat = values.flat_values
        counted = tf.logical_not(tf.equal(flat, tf.cast(self.oov_token, flat.dtype)))
        is_mask = None
        if self.mask_token is not None:
            is_mask = tf.equal(flat, tf.cast(self.mask_token, flat.dtype))
            counted = tf.logical_and(counted, tf.logical_not(is_mask))
        if missing is not None and (self.impute or self.DEFAULT_IMPUTE) is None:
            counted = tf.logical_and(counted, tf.logical_not(missing))
        top_k = None if self.max_tokens is None else self.max_tokens - self._reserved()
        return values, missing, extra, counted, is_mask, top_k

    def plan(self, inputs, pack):
        if self.imputes_from_data():  # the counted values wait for their fill statistic
            return
        counted = self._counted(inputs)
        pack.keep(self.name, counted)
        values, _, _, mask, _, top_k = counted
        vocabulary.plan(pack, tf.boolean_mask(values.flat_values, mask), self.name, top_k,
                        self.min_frequency)

    def transform(self, inputs):
        values, missing, extra, counted, is_mask, top_k = self._counted(inputs)
        flat = values.flat_values
        vocab = vocabulary.learn(tf.boolean_mask(flat, counted), self.name, top_k,
                                 self.min_frequency)
        index = vocabulary.apply(flat, vocab, self.name)
        if missing is not None and (self.impute or self.DEFAULT_IMPUTE) is None:
            index = tf.where(missing, tf.constant(-1, tf.int64), index)
        ids = vocabulary.oov_first(index, flat, self.num_oov_indices)
        if self.mask_token is not None:
            if self.output_mode == "int":
                ids = tf.where(is_mask, tf.constant(0, tf.int64), ids + 1)
            else:
                ids = tf.where(is_mask, tf.constant(-1, tf.int64), ids)  # dropped by encode
        ids = values.with_flat_values(ids)
        extra[self.name] = encoding.encode(
            ids, self.output_mode, depth=self.max_tokens,
            sequence_length=self.output_sequence_length if self.multivalent else None,
            sparse=self.sparse)
        return extra

    def learns(self):
        return ("vocabulary",) + super().learns()

    def vocabulary_names(self):
        return (self.name,)

    def needs_full_pass(self):
        return self.imputes_from_data()  # the vocabulary counts the imputed values

    def id_space(self, vocabulary_size):
        return vocabulary_size + self._reserved() if self.output_mode == "int" else None


@dataclasses.dataclass(frozen=True)
class IntegerLookup(StringLookup):
    """Maps integer values to ids (replaces keras.layers.IntegerLookup).

    Same options and layout as `string_lookup`, with integer `mask_token` and
    `oov_token` (default -1). Count ties are broken numerically, descending, as Keras
    does; several OOV indices take `value mod n` (Keras's default `oov_method="floormod"`).

    Config example:
        features:
          store_id: {kind: integer_lookup, max_tokens: 50, mask_token: 0}
    """

    oov_token: Union[str, int] = -1

    KIND = "integer_lookup"
    COLUMN_TYPES = ("int",)
