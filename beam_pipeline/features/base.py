"""What every feature kind has: a name, its raw column, and a `transform` in the graph."""

import dataclasses
from typing import Any, ClassVar, Dict, Mapping, Tuple

import tensorflow as tf
import tensorflow_transform as tft


@dataclasses.dataclass(frozen=True)
class Feature:
    """Base of all feature kinds.

    Attributes:
      name: the output feature name (the key under `features:` in the config).
      column: the raw CSV column it reads.
      column_type: that column's declared type, "float", "int" or "string".
    """

    name: str
    column: str
    column_type: str

    KIND: ClassVar[str] = ""
    COLUMN_TYPES: ClassVar[Tuple[str, ...]] = ()

    @classmethod
    def from_options(cls, name: str, column: str, column_type: str,
                     options: Mapping[str, Any]) -> "Feature":
        """Builds the feature from its config options; unknown options raise TypeError."""
        known = {f.name for f in dataclasses.fields(cls)} - {"name", "column", "column_type"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown option(s) {unknown} for kind {cls.KIND!r}; "
                            f"expected some of {sorted(known)}")
        feature = cls(name=name, column=column, column_type=column_type, **options)
        feature.validate()
        return feature

    def validate(self) -> None:
        """Raises ValueError when an option is out of range."""

    def transform(self, inputs: Dict[str, tf.SparseTensor]) -> Dict[str, tf.Tensor]:
        """Maps the batch of raw inputs to this feature's transformed outputs."""
        raise NotImplementedError

    def vocabulary_names(self) -> Tuple[str, ...]:
        """Names of the vocabulary files this feature writes (for the run summary)."""
        return ()


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
