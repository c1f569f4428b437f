"""Exact element-wise steps composed from built-in Keras layers only (no Lambda, no custom
class), so a model made of them reloads from `.keras` with nothing but Keras installed.

Keras has no layer for "is this NaN", "where(mask, a, b)" or a dtype cast, so they are
built from layers whose documented maths gives them exactly:

* `Discretization(bin_boundaries=[inf])` is 1 for NaN and +inf (NaN goes to the last
  bucket), so NaN is where both x and -x land in bucket 1;
* `ReLU(threshold=t)` is `where(x > t, x, 0)`, 0 for NaN; with t the smallest positive
  float32 the positive and negative parts of x add back to x (values within 1.4e-45 of
  zero become 0);
* `IntegerLookup(vocabulary=[0, 1, ...], num_oov_indices=0)` is the identity on those ids,
  as int64 (a cast); `IntegerLookup(invert=True, vocabulary=[c], oov_token=0)` maps a 0/1
  mask to 0/c (a constant times the mask);
* `Rescaling(scale, offset)` casts to float32 first, so it turns a 0/1 int mask into
  0.0/`scale`;
* `Add`, `Subtract`, `Multiply` on int64 are exact.

The missing-value convention of the raw inputs is the serving signature's (`serving_raw`):
NaN for a float, "" for a string, int64's minimum for an int.
"""

import numpy as np
import keras

L = keras.layers

INT64_MIN = -2**63
TINY = float(np.finfo(np.float32).smallest_subnormal)  # 1.4e-45


class Namer:
    """Unique, readable layer names: `<feature>__<step>`, `<feature>__<step>_2`, ..."""

    def __init__(self):
        self._used = set()

    def __call__(self, feature: str, step: str) -> str:
        base = f"{feature}__{step}"
        name, i = base, 1
        while name in self._used:
            i += 1
            name = f"{base}_{i}"
        self._used.add(name)
        return name


class Steps:
    """The compositions, naming every layer after the feature it belongs to."""

    def __init__(self, namer: Namer, feature: str):
        self._namer = namer
        self.feature = feature

    def name(self, step: str) -> str:
        return self._namer(self.feature, step)

    # ints ----------------------------------------------------------------------------
    def to_int64(self, ids, depth: int):
        """int32 ids in [0, depth) -> the same ids as int64."""
        return L.IntegerLookup(vocabulary=list(range(depth)), num_oov_indices=0,
                               name=self.name("int64"))(ids)

    def times_constant(self, mask01, value: int):
        """A 0/1 int64 mask -> 0 / `value` (int64)."""
        if value == 0:
            return L.Subtract(name=self.name("zero"))([mask01, mask01])
        return L.IntegerLookup(invert=True, vocabulary=[int(value)], oov_token=0,
                               num_oov_indices=1, name=self.name("const"))(mask01)

    def select_int(self, mask01, values, value: int):
        """int64 `where(mask, value, values)`, exact."""
        masked = L.Multiply(name=self.name("masked"))([values, mask01])
        kept = L.Subtract(name=self.name("kept"))([values, masked])
        return L.Add(name=self.name("select"))([kept, self.times_constant(mask01, value)])

    def int_missing(self, x):
        """An int64 raw column -> int64 1 where it is missing (int64's minimum)."""
        return L.IntegerLookup(vocabulary=[INT64_MIN], num_oov_indices=1,
                               name=self.name("missing"))(x)

    def int_fill(self, x, missing, value: int):
        """`where(missing, value, x)` for an int64 raw column (missing = int64's minimum,
        so `x + missing * (value - min)` in two steps that cannot overflow)."""
        first = min(int(value) - INT64_MIN, 2**63 - 1)
        y = L.Add(name=self.name("fill"))([x, self.times_constant(missing, first)])
        rest = int(value) - INT64_MIN - first
        if rest:
            y = L.Add(name=self.name("fill"))([y, self.times_constant(missing, rest)])
        return y

    # floats --------------------------------------------------------------------------
    def to_float(self, x, scale: float = 1.0, offset: float = 0.0):
        """float32 `x * scale + offset` (a cast for ints)."""
        return L.Rescaling(scale=float(scale), offset=float(offset),
                           name=self.name("float"))(x)

    def float_missing(self, x):
        """A float32 column -> int64 1 where it is NaN (+inf and -inf are values)."""
        top = L.Discretization(bin_boundaries=[float("inf")], name=self.name("nan_hi"))(x)
        neg = L.Rescaling(scale=-1.0, name=self.name("neg"))(x)
        bottom = L.Discretization(bin_boundaries=[float("inf")], name=self.name("nan_lo"))(neg)
        both = L.Multiply(name=self.name("nan"))([top, bottom])
        return self.to_int64(both, 2)

    def nan_to_zero(self, x):
        """NaN -> 0, every other value kept (those within 1.4e-45 of 0 become 0)."""
        pos = L.ReLU(threshold=TINY, name=self.name("pos"))(x)
        neg = L.Rescaling(scale=-1.0, name=self.name("neg"))(x)
        neg = L.ReLU(threshold=TINY, name=self.name("neg_pos"))(neg)
        neg = L.Rescaling(scale=-1.0, name=self.name("neg_back"))(neg)
        return L.Add(name=self.name("nan_to_zero"))([pos, neg])

    def float_fill(self, x, missing, value: float):
        """`where(missing, value, x)` for a float32 column whose missing cells are NaN."""
        zeroed = self.nan_to_zero(x)
        if float(value) == 0.0:
            return zeroed
        return L.Add(name=self.name("fill"))([zeroed, self.to_float(missing, scale=value)])

    def clip(self, x, low: float, high: float):
        """`clip(x, low, high)`; exact when low is 0, else within float32 rounding of the
        shift by `low`."""
        if low != 0.0:
            x = self.to_float(x, offset=-low)
        x = L.ReLU(max_value=float(high - low), name=self.name("clip"))(x)
        if low != 0.0:
            x = self.to_float(x, offset=low)
        return x

    def identity(self, x):
        return L.Identity(name=self.name("identity"))(x)
