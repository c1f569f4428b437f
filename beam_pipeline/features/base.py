"""What every feature kind has: a name, its raw column, how it reads values and imputes them."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Dict, Mapping, Optional, Tuple

from beam_pipeline.features import impute as impute_lib
from beam_pipeline.features import lazy

tf = lazy.module("tensorflow")
tft = lazy.module("tensorflow_transform")

# Each column type's tf.DType, by name (TensorFlow is imported on first use, see `lazy`).
DTYPES = {"float": "float32", "int": "int64", "string": "string"}
# Options every kind has that are not the kind's own (set from the column, not by users).
_COLUMN_FIELDS = ("name", "column", "column_type", "separator", "length")


@dataclasses.dataclass(frozen=True)
class Feature:
    """Base of all feature kinds.

    Attributes:
      name: the output feature name (the key under `features:` in the config).
      column: the raw column it reads (of any source).
      column_type: the type of that column's values, "float", "int" or "string".
      separator: for a multivalent column, the character between its values.
      length: for a fixed-length vector column, its number of positions.
      impute, fill_value, missing_indicator: what a missing scalar cell becomes
        (see `features.impute`), and whether `<name>_missing` marks those rows.
    """

    name: str
    column: str
    column_type: str
    separator: Optional[str] = None
    length: Optional[int] = None
    impute: Optional[str] = None
    fill_value: Any = None
    missing_indicator: bool = False

    KIND: ClassVar[str] = ""
    COLUMN_TYPES: ClassVar[Tuple[str, ...]] = ()
    DEFAULT_IMPUTE: ClassVar[Optional[str]] = None  # None: the kind handles missing values
    MULTIVALENT: ClassVar[bool] = False  # whether the kind accepts a multivalent column

    @classmethod
    def from_options(cls, name: str, column: str, column_type: str,
                     options: Mapping[str, Any], separator: Optional[str] = None,
                     length: Optional[int] = None) -> "Feature":
        """Builds the feature from its config options.

        Raises:
          TypeError: an unknown option. ValueError: an option out of range.
        """
        known = {f.name for f in dataclasses.fields(cls)} - set(_COLUMN_FIELDS)
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown option(s) {unknown} for kind {cls.KIND!r}; "
                            f"expected some of {sorted(known)}")
        feature = cls(name=name, column=column, column_type=column_type,
                      separator=separator, length=length, **options)
        feature._validate_missing()
        feature.validate()
        return feature

    @property
    def multivalent(self) -> bool:
        return self.separator is not None

    @property
    def dtype(self) -> tf.DType:
        return tf.as_dtype(DTYPES[self.column_type])

    def _validate_missing(self) -> None:
        if self.multivalent and not self.MULTIVALENT:
            raise ValueError(f"kind {self.KIND!r} needs a scalar column; {self.column!r} "
                             f"is multivalent")
        if not isinstance(self.missing_indicator, bool):
            raise ValueError(f"missing_indicator: expected true or false, "
                             f"got {self.missing_indicator!r}")
        if self.impute is not None or self.missing_indicator:
            if self.multivalent:
                raise ValueError("impute/missing_indicator: a multivalent column has no "
                                 "missing cells, only empty lists")
        if self.impute is not None:
            impute_lib.check(self.impute, self.fill_value, self.column_type)

    def validate(self) -> None:
        """Raises ValueError when an option is out of range."""

    def transform(self, inputs: Dict[str, tf.SparseTensor]) -> Dict[str, tf.Tensor]:
        """Maps the batch of raw inputs to this feature's transformed outputs."""
        raise NotImplementedError

    def plan(self, inputs: Dict[str, tf.SparseTensor], pack) -> None:
        """Registers with `pack` (a `packing.Pack`) what `transform` will learn, so that
        analyzers of the same kind run packed across features. The default registers
        nothing: the feature's analyzers run alone."""

    def learns(self) -> Tuple[str, ...]:
        """What this feature learns from its column's train-split values and the config
        does not give ("vocabulary", "mean and variance", ...); empty when it learns
        nothing. A run whose train split has no value of the column fails
        (`job.learned.check`), as Keras's adapt() refuses an empty dataset. The base
        reports the learned imputation; kinds that learn more add theirs."""
        if self.imputes_from_data():
            return (f"{self.impute or self.DEFAULT_IMPUTE} to impute missing cells",)
        return ()

    def vocabulary_names(self) -> Tuple[str, ...]:
        """Names of the vocabulary files this feature writes (for the run summary)."""
        return ()

    def needs_full_pass(self) -> bool:
        """Whether an analyzer of this feature reads another's result, so its analysis
        cannot be cached span by span (a refresh then analyzes every span)."""
        return False

    def id_space(self, vocabulary_size: Optional[int]) -> Optional[int]:
        """How many distinct ids `<name>` takes when it is integer ids, else None.

        `vocabulary_size` is the length of the feature's first vocabulary, if it has one.
        """
        return None

    # Reading values ------------------------------------------------------------------------

    def present(self, inputs) -> Tuple[tf.Tensor, tf.Tensor]:
        """The scalar column as dense `[batch]` values of its type, before imputation.

        Returns:
          (values, missing mask): a missing cell (or a NaN float) is True in the mask and
          holds the type's placeholder (NaN, -1 or "") in the values.
        """
        raw = tf.cast(inputs[self.column], self.dtype)
        dense = densify(raw, impute_lib.placeholder(self.dtype))
        present_mask = densify(tf.SparseTensor(raw.indices, tf.ones_like(raw.values, tf.bool),
                                               raw.dense_shape), False)
        if self.dtype.is_floating:
            present_mask = tf.logical_and(present_mask, tf.logical_not(tf.math.is_nan(dense)))
        return dense, tf.logical_not(present_mask)

    def imputes_from_data(self) -> bool:
        """Whether a missing cell is filled with a statistic of the data (mean, median,
        most_frequent): whatever reads the imputed values waits for that analyzer."""
        return (self.impute or self.DEFAULT_IMPUTE) in impute_lib.LEARNED

    def scalar(self, inputs, default=None, present=None
               ) -> Tuple[tf.Tensor, tf.Tensor, Dict[str, tf.Tensor]]:
        """The column as dense `[batch]` values with missing cells imputed.

        Imputation follows the `impute` option or the kind's DEFAULT_IMPUTE; with neither,
        missing cells get `default` (the type's placeholder when None). A NaN float is
        missing. `present` is `self.present(inputs)` when the caller has it already.

        Returns:
          (values, missing mask, extra outputs: `<name>_missing` when asked for).
        """
        dense, missing = present if present is not None else self.present(inputs)
        if default is None:
            default = impute_lib.placeholder(self.dtype)
        strategy = self.impute or self.DEFAULT_IMPUTE
        if strategy is not None:
            fill = impute_lib.statistic(strategy, tf.boolean_mask(dense, tf.logical_not(missing)),
                                        self.fill_value, f"{self.name}_impute")
        else:
            fill = default  # a NaN that arrived as a value is missing too
        dense = tf.where(missing, tf.cast(fill, dense.dtype), dense)
        extra = {}
        if self.missing_indicator:
            extra[f"{self.name}_missing"] = tf.cast(missing, tf.int64)
        return dense, missing, extra

    def numbers(self, inputs) -> Tuple[tf.Tensor, tf.Tensor, Dict[str, tf.Tensor]]:
        """A numeric column as float32 `[batch]`, or `[batch, length]` for a vector column.

        A scalar column is imputed as `scalar` does; a vector's absent positions (and NaN)
        stay NaN, for the kind to fill.

        Returns:
          (values, missing mask of the same shape, extra outputs).
        """
        if self.multivalent:
            dense = tf.cast(self.values(inputs), tf.float32).to_tensor(
                default_value=float("nan"), shape=[None, self.length])
            return dense, tf.math.is_nan(dense), {}
        dense, missing, extra = self.scalar(inputs)
        return tf.cast(dense, tf.float32), missing, extra

    def check_vector(self) -> None:
        """Raises ValueError for a multivalent column that is not a fixed-length vector."""
        if self.multivalent and self.length is None:
            raise ValueError(f"column {self.column!r} needs a `length`: kind {self.KIND!r} "
                             f"takes a scalar or a fixed-length vector")

    def values(self, inputs) -> tf.RaggedTensor:
        """The column as a `[batch, (values)]` ragged tensor of its value type.

        A scalar column gives one value per present row; a multivalent cell is split on
        the separator (an empty cell is an empty list, "a||b" has an empty middle value).
        """
        raw = inputs[self.column]
        if not self.multivalent:
            return tf.RaggedTensor.from_sparse(tf.cast(raw, self.dtype))
        text = densify(raw, "")
        parts = tf.strings.split(text, self.separator)
        keep = tf.repeat(tf.not_equal(text, ""), parts.row_lengths())
        parts = tf.RaggedTensor.from_row_lengths(
            tf.boolean_mask(parts.flat_values, keep),
            tf.where(tf.equal(text, ""), tf.zeros_like(parts.row_lengths()),
                     parts.row_lengths()))
        if self.dtype == tf.string:
            return parts
        return parts.with_flat_values(
            tf.strings.to_number(tf.strings.strip(parts.flat_values), self.dtype))


def densify(x: tf.SparseTensor, default_value) -> tf.Tensor:
    """A [batch, 1] VarLen SparseTensor -> dense [batch], missing rows get `default_value`."""
    dense = tft.sparse_tensor_to_dense_with_shape(x, [None, 1], default_value=default_value)
    return tf.squeeze(dense, axis=1)


def check_positive(value, option: str, allow_none: bool = True) -> None:
    """Raises ValueError unless `value` is a positive int (or None when allowed)."""
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{option}: expected a positive integer, got {value!r}")


def check_choice(value, option: str, choices) -> None:
    """Raises ValueError unless `value` is one of `choices`."""
    if value not in choices:
        raise ValueError(f"{option}: expected one of {list(choices)}, got {value!r}")
