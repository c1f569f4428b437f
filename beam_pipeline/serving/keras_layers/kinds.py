"""Per feature kind: the built-in Keras layers, with the learned state, that give exactly
what the kind's transform gives (keyed by kind name; `features/` is not touched).

Each builder takes the raw `keras.Input`s, the feature, the learned `State` and a
`Steps` (compose.py), and returns `{output name: KerasTensor}`. A kind or option that no
built-in layer expresses exactly raises `NotExpressible` naming the feature and why.
"""

import math
from typing import Callable, Dict, Tuple

import numpy as np
import keras

from beam_pipeline.serving.keras_layers.compose import Steps
from beam_pipeline.serving.keras_layers.state import kind_captures

L = keras.layers


class NotExpressible(ValueError):
    """A feature whose transform no built-in Keras layer reproduces exactly."""

    def __init__(self, feature, reason: str):
        super().__init__(f"feature {feature.name!r} (kind {feature.KIND!r}) cannot be "
                         f"expressed as native Keras layers: {reason}")


def _no_multivalent(feature, what="it"):
    if feature.multivalent:
        raise NotExpressible(feature, f"its column {feature.column!r} is multivalent (split "
                                      f"on {feature.separator!r}), and Keras has no layer "
                                      f"that splits on a separator")


# ---------------------------------------------------------------- missing values


def _impute_value(feature, state, dtype: str):
    """The scalar a missing cell becomes, or None when the kind keeps it missing."""
    strategy = feature.impute or feature.DEFAULT_IMPUTE
    if strategy is None:
        return None
    if strategy == "constant":
        return feature.fill_value
    if strategy in ("mean", "median"):
        capture = kind_captures(state, feature)[1]
        if capture is None:
            raise NotExpressible(feature, f"its impute {strategy} is not in the graph")
        return float(np.ravel(capture.value)[0])
    # most_frequent: the first entry of its own vocabulary (float bits as int keys)
    first = state.first_entry(feature, f"{feature.name}_impute_most_frequent",
                              integer=dtype != "string")
    if dtype == "float":
        return float(np.array([first], np.int64).astype(np.int32).view(np.float32)[0])
    return first


def numbers(raw, feature, state, s: Steps, default=None):
    """A scalar numeric column as float32, imputed as `Feature.scalar`/`numbers` do.

    Returns (values, int64 missing mask)."""
    _no_multivalent(feature)
    x = raw[feature.column]
    fill = _impute_value(feature, state, feature.column_type)
    if fill is None:
        fill = default
    if feature.column_type == "int":
        missing = s.int_missing(x)
        if fill is None:
            raise NotExpressible(feature, "a missing int cell stays missing here")
        # The statistic is cast to the column's int64 before it fills (truncation).
        return s.to_float(s.int_fill(x, missing, int(np.float32(fill)))), missing
    missing = s.float_missing(x)
    if fill is None:
        return x, missing
    return s.float_fill(x, missing, float(np.float32(fill))), missing


def ints(raw, feature, state, s: Steps, default: int):
    """A scalar int column as int64 with missing cells imputed (or `default`)."""
    _no_multivalent(feature)
    x = raw[feature.column]
    missing = s.int_missing(x)
    fill = _impute_value(feature, state, "int")
    if fill is None:
        fill = default
    if isinstance(fill, float):
        fill = int(np.float32(fill))  # the statistic is cast to int64: truncation
    return s.int_fill(x, missing, fill), missing


def _string_missing(s, x):
    """int64 1 where a string column is missing ("")."""
    return L.StringLookup(vocabulary=[""], num_oov_indices=1, name=s.name("missing"))(x)


def _indicator(feature, missing, out):
    if feature.missing_indicator:
        out[f"{feature.name}_missing"] = missing


# ---------------------------------------------------------------- numeric kinds


def normalization_moments(feature, state) -> Tuple[float, float]:
    """The (mean, variance) a scalar normalization's transform uses: the float32 constants
    of the graph (as Python floats, exactly), its own or its element of the packed ones."""
    caps = kind_captures(state, feature)[0]
    var = [c for c in caps if "Sqrt" in c.consumers]
    mean = [c for c in caps if "Sqrt" not in c.consumers]
    if len(var) == 1 and len(mean) == 1:
        return float(mean[0].value), float(var[0].value)
    # packed with the other scalars' (features/packing.py)
    mean = state.named_value(f"{feature.name}_packed_mean")
    var = state.named_value(f"{feature.name}_packed_var")
    if mean is None or var is None:
        raise NotExpressible(feature, f"its mean and variance are not found in the graph "
                                      f"({caps})")
    return float(mean), float(var)


def normalization(raw, feature, state, s):
    x, missing = numbers(raw, feature, state, s)
    mean, var = normalization_moments(feature, state)
    if feature.impute is None:  # the mean imputation reuses the normalization mean
        x = s.float_fill(x, missing, mean)
    out = {feature.name: L.Normalization(axis=None, mean=mean, variance=var,
                                         invert=feature.invert, name=s.name("normalization"))(x)}
    _indicator(feature, missing, out)
    return out


def min_max(raw, feature, state, s):
    if feature.log1p:
        raise NotExpressible(feature, "log1p: Keras has no log1p layer")
    x, missing = numbers(raw, feature, state, s)
    caps = kind_captures(state, feature)[0]
    lows = [c for c in caps if any(n.startswith(f"{feature.name}_min/")
                                   for n in c.consumer_names)]
    highs = [c for c in caps if "LessEqual" in c.consumers]
    if len(lows) != 1 or len(highs) != 1:
        raise NotExpressible(feature, f"its min and max are not found in the graph ({caps})")
    low = np.float32(state.op_output(lows[0], f"{feature.name}_min"))
    high = np.float32(highs[0].value)
    width = np.float32(feature.output_max - feature.output_min)
    if high <= low:
        scale, offset = np.float32(0.0), np.float32(feature.output_min + width / 2)
    else:
        scale = np.float32(width / np.float32(high - low))
        offset = np.float32(np.float32(feature.output_min) - np.float32(low * scale))
    y = L.Rescaling(scale=float(scale), offset=float(offset), name=s.name("rescaling"))(x)
    if feature.clip:
        y = s.clip(y, float(feature.output_min), float(feature.output_max))
    out = {feature.name: y}
    _indicator(feature, missing, out)
    return out


def rescaling(raw, feature, state, s):
    x, missing = numbers(raw, feature, state, s)
    out = {feature.name: L.Rescaling(scale=float(feature.scale), offset=float(feature.offset),
                                     name=s.name("rescaling"))(x)}
    _indicator(feature, missing, out)
    return out


def discretization(raw, feature, state, s):
    _no_multivalent(feature)
    if feature.bin_boundaries is not None:
        bounds = [float(np.float32(b)) for b in feature.bin_boundaries]
    else:
        caps = kind_captures(state, feature)[0]
        bounds = [float(b) for b in np.ravel(caps[-1].value)]
    x = raw[feature.column]
    missing = (s.int_missing(x) if feature.column_type == "int" else s.float_missing(x))
    if feature.impute is not None:
        x, missing = numbers(raw, feature, state, s)
    elif feature.column_type == "int":
        x = s.to_float(x)
    buckets = L.Discretization(bin_boundaries=bounds, name=s.name("discretization"))(x)
    buckets = s.to_int64(buckets, len(bounds) + 1)
    if feature.impute is None and feature.column_type == "int":
        buckets = s.select_int(missing, buckets, len(bounds))  # missing is NaN: last bucket
    out = {feature.name: buckets}
    _indicator(feature, missing, out)
    return out


def passthrough(raw, feature, state, s):
    out = {}
    if feature.column_type == "string":
        x = raw[feature.column]
        if feature.impute:
            raise NotExpressible(feature, "Keras has no layer that replaces a missing string")
        out[feature.name] = s.identity(x)
        _indicator(feature, _string_missing(s, x), out)
        return out
    if feature.column_type == "int":
        x, missing = ints(raw, feature, state, s, default=0)
    else:
        x, missing = numbers(raw, feature, state, s, default=0.0)
    out[feature.name] = x
    _indicator(feature, missing, out)
    return out


# ---------------------------------------------------------------- lookups


def _vector(s, y):
    """A lookup/hashing vector output as float32 (the graph's dtype)."""
    return s.to_float(y)


def lookup(raw, feature, state, s):
    _no_multivalent(feature)
    integer = feature.KIND == "integer_lookup"
    vocab = state.vocabulary(feature, feature.name, integer=integer)
    x = raw[feature.column]
    strategy = feature.impute or feature.DEFAULT_IMPUTE
    if strategy in ("mean", "median"):
        raise NotExpressible(feature, f"impute: {strategy} of a lookup column")
    if integer:
        missing = s.int_missing(x)
        if -1 in vocab:
            raise NotExpressible(feature, "-1 is in its vocabulary, and a missing cell looks "
                                          "-1 up as OOV")
        x = s.int_fill(x, missing, -1)  # the graph's placeholder: its OOV bucket is -1's
        layer_cls = L.IntegerLookup
    else:
        missing = _string_missing(s, x)
        if "" in vocab:
            raise NotExpressible(feature, "its vocabulary holds the empty string (a value of "
                                          "U+0000), which a raw input cannot tell from missing")
        layer_cls = L.StringLookup
    options = dict(vocabulary=vocab, num_oov_indices=feature.num_oov_indices,
                   mask_token=feature.mask_token, oov_token=feature.oov_token)
    if feature.output_mode != "int":
        options.update(output_mode=feature.output_mode, max_tokens=feature.max_tokens,
                       pad_to_max_tokens=True)
    layer = layer_cls(name=s.name(feature.KIND), **options)
    ids = layer(x)
    fill = _impute_value(feature, state, "int" if integer else "string")
    if fill is not None:
        if feature.output_mode != "int":
            raise NotExpressible(feature, f"impute with output_mode {feature.output_mode}")
        fill_id = int(np.asarray(layer(np.array([fill]))).reshape(-1)[0])
        ids = s.select_int(missing, ids, fill_id)
    out = {feature.name: ids if feature.output_mode == "int" else _vector(s, ids)}
    _indicator(feature, missing, out)
    return out


def text_vectorization(raw, feature, state, s):
    if feature.split == "none":
        raise NotExpressible(feature, "split: none makes an empty text one empty token, "
                                      "which Keras drops as its mask")
    vocab = state.vocabulary(feature, feature.name)
    for token in ("", "[UNK]"):
        if token in vocab:
            raise NotExpressible(feature, f"its vocabulary holds {token!r}, a Keras "
                                          f"special token")
    options = dict(max_tokens=feature.max_tokens, standardize=(
        None if feature.standardize == "none" else feature.standardize),
        split=feature.split, ngrams=(tuple(feature.ngrams) if isinstance(
            feature.ngrams, (list, tuple)) else feature.ngrams),
        output_mode=feature.output_mode)
    if feature.output_mode == "int":
        options.update(output_sequence_length=feature.output_sequence_length,
                       vocabulary=vocab)
    else:
        options.update(pad_to_max_tokens=True)
        if feature.output_mode == "tf_idf":
            weights = _idf_weights(feature, state)[:len(vocab) + 1]
            options.update(vocabulary=["[UNK]"] + vocab, idf_weights=weights)
        else:
            options.update(vocabulary=vocab)
    layer = L.TextVectorization(name=s.name("text_vectorization"), **options)
    y = layer(raw[feature.column])
    if feature.output_mode != "int":
        y = _vector(s, y)  # Keras's count mode gives int64 (its spec says float32)
    return {feature.name: y}


def _idf_weights(feature, state) -> list:
    """The graph's tf_idf weights, `[max_tokens]`, from its document frequencies (the
    vocabulary's `<name>_df` file) and row count, computed with the same TensorFlow ops as
    `TextVectorization._idf` (Keras's idf `ln(1 + N / (1 + df))` in float64, then float32;
    OOV gets the mean)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    docs = [c for c in state.captures(feature.name) if c.value.dtype.kind == "i"
            and c.value.ndim == 0 and "LookupTableFindV2" not in c.consumers]
    if len(docs) != 1:
        raise NotExpressible(feature, f"its row count is not found ({docs})")
    frequencies = state.document_frequencies(f"{feature.name}_df")
    df = tf.constant(([0] + frequencies + [0] * feature.max_tokens)[:feature.max_tokens],
                     tf.int64)
    idf = tf.cast(tf.math.log(1.0 + tf.cast(docs[0].value, tf.float64) /
                              (1.0 + tf.cast(df, tf.float64))), tf.float32)
    learned = tf.concat([[False], df[1:] > 0], axis=0)
    mean = tf.math.divide_no_nan(tf.reduce_sum(tf.where(learned, idf, 0.0)),
                                 tf.reduce_sum(tf.cast(learned, tf.float32)))
    weights = tf.where(learned, idf, 0.0) + tf.one_hot(0, tf.shape(idf)[0]) * mean
    return [float(w) for w in weights.numpy()]


# ---------------------------------------------------------------- hashing, crossing, ids


def hashing(raw, feature, state, s):
    _no_multivalent(feature)
    if feature.column_type == "string":
        if feature.impute is not None:
            raise NotExpressible(feature, "Keras has no layer that replaces a missing string")
        x = raw[feature.column]
        missing = _string_missing(s, x)
    elif feature.column_type == "int":
        x, missing = ints(raw, feature, state, s, default=0)
    else:
        x, missing = numbers(raw, feature, state, s, default=0.0)
    salt = feature.salt
    if isinstance(salt, (list, tuple)) and len(salt) == 1:
        salt = salt[0]
    options = dict(num_bins=feature.num_bins, mask_value=feature.mask_value, salt=(
        list(salt) if isinstance(salt, (list, tuple)) else salt))
    if feature.output_mode != "int":
        options["output_mode"] = feature.output_mode
    y = L.Hashing(name=s.name("hashing"), **options)(x)
    out = {feature.name: y if feature.output_mode == "int" else _vector(s, y)}
    _indicator(feature, missing, out)
    return out


def hashed_crossing(raw, feature, state, s):
    columns = []
    for column in feature.columns:
        x = raw[column]
        if x.dtype == "int64":
            x = s.int_fill(x, s.int_missing(x), 0)
        elif x.dtype != "string":
            raise NotExpressible(feature, f"column {column!r} is {x.dtype}")
        columns.append(x)
    y = L.HashedCrossing(num_bins=feature.num_bins, output_mode=feature.output_mode,
                         name=s.name("hashed_crossing"))(columns)
    if feature.output_mode == "int":
        return {feature.name: y}
    return {feature.name: _vector(s, y)}


def category_encoding(raw, feature, state, s):
    _no_multivalent(feature)
    x = raw[feature.column]
    out = {}
    if feature.impute or feature.missing_indicator:
        x, missing = ints(raw, feature, state, s, default=-1)
        _indicator(feature, missing, out)
    # One id per row: multi_hot and count of it are its one_hot, which is zeros for an id
    # outside [0, num_tokens) (a missing cell is int64's minimum), as the graph drops them.
    out[feature.name] = L.CategoryEncoding(num_tokens=feature.num_tokens, output_mode="one_hot",
                                           name=s.name("category_encoding"))(x)
    return out


def image(raw, feature, state, s):
    raise NotExpressible(feature, "decoding image bytes (tf.io.decode_image) has no built-in "
                                  "Keras layer; decode outside the model, then use Resizing, "
                                  "CenterCrop, Rescaling and Normalization")


BUILDERS: Dict[str, Callable] = {
    "normalization": normalization,
    "min_max": min_max,
    "rescaling": rescaling,
    "discretization": discretization,
    "passthrough": passthrough,
    "string_lookup": lookup,
    "integer_lookup": lookup,
    "text_vectorization": text_vectorization,
    "hashing": hashing,
    "hashed_crossing": hashed_crossing,
    "category_encoding": category_encoding,
    "image": image,
}
