"""YAML config -> validated, immutable config objects.

Validation happens once, here, before any pipeline starts. Every error names the
config key that is wrong and what was expected, so a user can fix it without
reading a stack trace.

Reading a local config imports neither TensorFlow, tf.Transform nor Beam (the feature kinds
import them on first use), so a config error is reported in well under a second; a gs://
config is read through Beam's FileSystems, imported then.
"""

import dataclasses
import os
import re
from typing import Any, Mapping, Optional, Tuple

import yaml

from beam_pipeline import features

COLUMN_TYPES = ("float", "int", "string")
LABEL_KINDS = ("passthrough", "string_lookup")
MISSING_LABEL = "missing_label"  # the reason a row without its label is set aside


class ConfigError(ValueError):
    """A config value is missing or wrong; the message names the key."""


@dataclasses.dataclass(frozen=True)
class Column:
    """A raw column: the type of its values, and how a multivalent cell is split."""

    name: str
    type: str  # one of COLUMN_TYPES
    separator: Optional[str] = None  # set: a cell holds several values, e.g. "a|b|c"
    length: Optional[int] = None  # with separator: a vector of exactly this many positions
    required: bool = False  # a row with this cell empty is rejected
    missing_reason: str = "missing_required"  # the dead letter's reason when it is

    @property
    def read_type(self) -> str:
        """The type every reader gives this column: a multivalent cell is text, split in
        the graph."""
        return "string" if self.separator else self.type


NON_FINITE = ("missing", "reject")
FOLDER_FORMATS = ("text_directory", "image_directory")


@dataclasses.dataclass(frozen=True)
class Input:
    """One input of the job: a file pattern of a tabular format, or a class-per-folder tree.

    `split` sends every row of the input to that split instead of hashing rows; a folder
    input with `validation_split` and `seed` splits its files exactly as Keras's loader.
    """

    format: str = "csv"
    file_pattern: Optional[str] = None
    directory: Optional[str] = None
    split: Optional[str] = None
    max_rejected_fraction: float = 0.01
    # csv
    header: bool = True
    delimiter: str = ","
    non_finite: str = "missing"  # NaN/inf in a number column: a missing value, or a reject
    max_record_bytes: int = 64 << 20  # a longer record is a record_too_large dead letter
    # folders (Keras's loader options)
    class_names: Optional[Tuple[str, ...]] = None
    follow_links: bool = False
    validation_split: Optional[float] = None
    seed: Optional[int] = None
    max_length: Optional[int] = None  # text: bytes kept per file, as Keras


@dataclasses.dataclass(frozen=True)
class Split:
    eval_fraction: float = 0.2
    key: Optional[str] = None  # None: hash the whole raw row


@dataclasses.dataclass(frozen=True)
class Output:
    dir: str
    # 0: the runner picks the shard count, writing each bundle as it comes; a fixed count
    # adds a shuffle of every output row (held in memory by the local runner).
    num_shards: int = 0
    summary_top_k: int = 10


TASKS = ("auto", "binary", "multiclass", "regression")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The `model:` section of the config, with its defaults."""

    task: str = "auto"
    hidden_units: Tuple[int, ...] = (64, 32)
    embedding_dim: int = 8
    one_hot_max: int = 16  # index spaces up to this size are one-hot encoded
    epochs: int = 5
    batch_size: int = 256
    learning_rate: float = 1e-3
    early_stopping_patience: Optional[int] = 2
    exclude_features: Tuple[str, ...] = ()  # e.g. an id passed through for joins
    seed: int = 42

    @classmethod
    def from_raw(cls, raw) -> "ModelConfig":
        """Validates the `model:` mapping; errors name `model.<key>`."""
        raw = dict(raw or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"model: unknown key(s) {unknown}; expected some of {sorted(known)}")
        for key in ("hidden_units", "exclude_features"):
            if key in raw:
                if not isinstance(raw[key], list):
                    raise ConfigError(f"model.{key}: expected a list, got {raw[key]!r}")
                raw[key] = tuple(raw[key])
        model = cls(**raw)
        if model.task not in TASKS:
            raise ConfigError(f"model.task: expected one of {TASKS}, got {model.task!r}")
        for key in ("embedding_dim", "epochs", "batch_size"):
            value = getattr(model, key)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"model.{key}: expected a positive integer, got {value!r}")
        if not isinstance(model.learning_rate, (int, float)) or model.learning_rate <= 0:
            raise ConfigError(f"model.learning_rate: expected > 0, got {model.learning_rate!r}")
        return model


@dataclasses.dataclass(frozen=True)
class Refresh:
    """The `refresh:` section: how many runs to keep, and the drift gate's thresholds."""

    keep_last: int = 5
    drift: Any = None  # beam_pipeline.refresh.drift.parse_thresholds's result


@dataclasses.dataclass(frozen=True)
class Config:
    path: str
    inputs: Tuple[Input, ...]
    columns: Tuple[Column, ...]
    label: Optional[features.Label]
    split: Split
    features: Tuple[features.Feature, ...]
    output: Output
    preprocessing_fn: Optional[str] = None  # "module:function" escape hatch
    model: ModelConfig = ModelConfig()
    refresh: Refresh = Refresh()

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    @property
    def max_rejected_fraction(self) -> float:
        """The strictest of the inputs' limits: the job-wide share of records rejected."""
        return min(i.max_rejected_fraction for i in self.inputs)


def folder_columns(fmt: str) -> Tuple[Column, ...]:
    """The columns a folder input gives: the file's path, its content, its class id."""
    content = "text" if fmt == "text_directory" else "image"
    return (Column("path", "string"), Column(content, "string"), Column("label", "int"))


_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
# The file systems every step can use: tf.Transform, TFRecord writers and training go
# through TensorFlow's, and TensorFlow 2.21 has no s3, hdfs or az file system.
SUPPORTED_SCHEMES = ("gs",)


def _is_url(path: str) -> bool:
    return bool(_SCHEME.match(path))


def check_scheme(path: str, key: str) -> None:
    """ConfigError naming `key` when `path` has a scheme other than gs:// (local is fine)."""
    match = _SCHEME.match(path)
    if match and match.group(1).lower() not in SUPPORTED_SCHEMES:
        raise ConfigError(
            f"{key}: {path!r}: the {match.group(1)}:// scheme is not supported; paths are "
            "local or " + ", ".join(f"{s}://" for s in SUPPORTED_SCHEMES)
            + f" (TensorFlow has no {match.group(1)} file system, so tf.Transform could not "
            "read or write there)")


def _join(base_dir: str, path: str) -> str:
    """`base_dir/path` as Beam's FileSystems.join makes it (local: os.path.join)."""
    if _is_url(base_dir):
        return base_dir + path if base_dir.endswith("/") else f"{base_dir}/{path}"
    return os.path.join(base_dir, path)


def _resolve(path: str, base_dir: str, key: str) -> str:
    """Makes a relative local path relative to the config file's folder; ConfigError
    naming `key` for an unsupported scheme."""
    check_scheme(path, key)
    if _is_url(path) or path.startswith("/"):
        return path
    return _join(base_dir, path) if base_dir else path


def _take(mapping: Mapping[str, Any], key: str, where: str, expected: type,
          default: Any = dataclasses.MISSING) -> Any:
    """Reads mapping[key], checking its type; errors name `where.key`."""
    if key not in mapping:
        if default is dataclasses.MISSING:
            raise ConfigError(f"{where}.{key}: required key is missing")
        return default
    value = mapping[key]
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(
            f"{where}.{key}: expected {expected.__name__}, got {value!r}")
    return value


def _check_keys(mapping: Mapping[str, Any], allowed, where: str) -> None:
    unknown = sorted(set(mapping) - set(allowed))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {unknown}; expected some of {sorted(allowed)}")


def _section(raw: Mapping[str, Any], key: str, required: bool = True) -> Mapping:
    if key not in raw or raw[key] is None:
        if required:
            raise ConfigError(f"{key}: required section is missing")
        return {}
    if not isinstance(raw[key], dict):
        raise ConfigError(f"{key}: expected a mapping, got {raw[key]!r}")
    return raw[key]


FORMAT_KEYS = {
    "csv": ("file_pattern", "header", "delimiter", "non_finite", "max_record_bytes"),
    "tfrecord": ("file_pattern",),
    "parquet": ("file_pattern",),
    "text_directory": ("directory", "class_names", "follow_links", "validation_split", "seed",
                       "max_length"),
    "image_directory": ("directory", "class_names", "follow_links", "validation_split", "seed"),
}
COMMON_KEYS = ("format", "split", "max_rejected_fraction")


def _parse_one_input(section: Mapping[str, Any], where: str, base_dir: str) -> Input:
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: expected a mapping, got {section!r}")
    fmt = _take(section, "format", where, str, "csv")
    if fmt not in FORMAT_KEYS:
        raise ConfigError(f"{where}.format: expected one of {sorted(FORMAT_KEYS)}, got {fmt!r}")
    _check_keys(section, COMMON_KEYS + FORMAT_KEYS[fmt], f"{where} (format {fmt})")
    location = "directory" if fmt in FOLDER_FORMATS else "file_pattern"
    options = {k: section[k] for k in section if k not in ("format", location)}
    options[location] = _resolve(_take(section, location, where, str), base_dir,
                                 f"{where}.{location}")
    for key, expected in (("header", bool), ("delimiter", str), ("non_finite", str),
                          ("max_rejected_fraction", float), ("split", str),
                          ("follow_links", bool), ("validation_split", float), ("seed", int),
                          ("max_length", int), ("max_record_bytes", int)):
        if key in options:
            options[key] = _take(section, key, where, expected)
    if "class_names" in options:
        names = options["class_names"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"{where}.class_names: expected a list of folder names")
        options["class_names"] = tuple(names)
    item = Input(format=fmt, **options)
    problems = {
        "delimiter": len(item.delimiter) != 1,
        "non_finite": item.non_finite not in NON_FINITE,
        "max_rejected_fraction": not 0.0 <= item.max_rejected_fraction <= 1.0,
        "split": item.split not in (None, "train", "eval"),
        "validation_split": item.validation_split is not None and (
            not 0 < item.validation_split < 1 or item.seed is None or item.split is not None),
        "max_length": item.max_length is not None and item.max_length < 1,
        "max_record_bytes": item.max_record_bytes < 1,
    }
    hints = {
        "delimiter": "one character", "non_finite": f"one of {NON_FINITE}",
        "max_rejected_fraction": "a number in [0, 1]", "split": "train or eval",
        "validation_split": "a number in (0, 1) with a seed (Keras needs one to shuffle), "
                            "and no split",
        "max_length": "a positive integer", "max_record_bytes": "a positive integer",
    }
    for key, bad in problems.items():
        if bad:
            raise ConfigError(f"{where}.{key}: expected {hints[key]}, "
                              f"got {getattr(item, key)!r}")
    return item


def _parse_inputs(raw: Mapping[str, Any], base_dir: str) -> Tuple[Input, ...]:
    """`input:` as one mapping or a list of them (e.g. eval data in its own files)."""
    if raw.get("input") is None:
        raise ConfigError("input: required section is missing")
    entries = raw["input"] if isinstance(raw["input"], list) else [raw["input"]]
    if not entries:
        raise ConfigError("input: expected a mapping or a non-empty list of them")
    where = (lambda i: f"input[{i}]") if isinstance(raw["input"], list) else (lambda i: "input")
    inputs = tuple(_parse_one_input(e, where(i), base_dir) for i, e in enumerate(entries))
    folders = {i.format for i in inputs} & set(FOLDER_FORMATS)
    if folders and len({i.format for i in inputs}) > 1:
        raise ConfigError("input: a folder input cannot be mixed with other formats "
                          "(their columns differ)")
    return inputs


def _parse_columns(raw: Mapping[str, Any]) -> Tuple[Column, ...]:
    if not isinstance(raw.get("columns"), list) or not raw["columns"]:
        raise ConfigError("columns: expected a non-empty list of {name, type}")
    columns = []
    for i, entry in enumerate(raw["columns"]):
        where = f"columns[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a mapping with name and type")
        _check_keys(entry, ("name", "type", "separator", "length", "required"), where)
        name = _take(entry, "name", where, str)
        ctype = _take(entry, "type", where, str)
        separator = _take(entry, "separator", where, str, None)
        length = _take(entry, "length", where, int, None)
        if separator is not None and len(separator) != 1:
            raise ConfigError(f"{where}.separator: expected one character, got {separator!r}")
        if length is not None and (separator is None or length < 1):
            raise ConfigError(f"{where}.length: needs a separator and a positive value, "
                              f"got {length!r}")
        if ctype not in COLUMN_TYPES:
            raise ConfigError(f"{where}.type: expected one of {COLUMN_TYPES}, got {ctype!r}")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ConfigError(f"{where}.name: {name!r} is not a valid feature name")
        if any(c.name == name for c in columns):
            raise ConfigError(f"{where}.name: column {name!r} is declared twice")
        required = _take(entry, "required", where, bool, False)
        columns.append(Column(name, ctype, separator, length, required))
    return tuple(columns)


def _check_column(name: str, columns, where: str, types=COLUMN_TYPES) -> Column:
    match = [c for c in columns if c.name == name]
    if not match:
        raise ConfigError(
            f"{where}: unknown column {name!r}; columns are {[c.name for c in columns]}")
    if match[0].type not in types:
        raise ConfigError(
            f"{where}: column {name!r} has type {match[0].type!r}; expected one of {types}")
    return match[0]


def _parse_label(raw, columns) -> Tuple[Optional[features.Label], Tuple[Column, ...]]:
    """The label, and the columns with the label's marked required (unless it has a
    `fill_value`): a training row without its label is a dead letter, never a guess."""
    section = _section(raw, "label", required=False)
    if not section:
        return None, columns
    _check_keys(section, ("column", "kind", "fill_value"), "label")
    name = _take(section, "column", "label", str)
    kind = _take(section, "kind", "label", str, "passthrough")
    if kind not in LABEL_KINDS:
        raise ConfigError(f"label.kind: expected one of {LABEL_KINDS}, got {kind!r}")
    types = ("string", "int") if kind == "string_lookup" else ("int", "float")
    column = _check_column(name, columns, "label.column", types)
    if column.separator:
        raise ConfigError(f"label.column: {name!r} is multivalent; a label needs one value")
    fill_value = section.get("fill_value")
    if fill_value is not None:
        expected = {"string": str, "int": int, "float": (int, float)}[column.type]
        if not isinstance(fill_value, expected) or isinstance(fill_value, bool):
            raise ConfigError(f"label.fill_value: expected a {column.type} value for column "
                              f"{name!r}, got {fill_value!r}")
    else:
        marked = dataclasses.replace(column, required=True, missing_reason=MISSING_LABEL)
        columns = tuple(marked if c.name == name else c for c in columns)
    label = features.Label(name=name, column=name, column_type=column.type, kind=kind,
                           fill_value=fill_value)
    return label, columns


def _parse_split(raw, columns, inputs) -> Split:
    section = _section(raw, "split", required=False)
    _check_keys(section, ("eval_fraction", "key"), "split")
    # A folder's rows are hashed by their file's path (its bytes could be megabytes).
    default_key = "path" if inputs[0].format in FOLDER_FORMATS else None
    split = Split(eval_fraction=_take(section, "eval_fraction", "split", float, 0.2),
                  key=_take(section, "key", "split", str, default_key))
    if not 0.0 <= split.eval_fraction < 1.0:
        raise ConfigError(
            f"split.eval_fraction: expected a number in [0, 1), got {split.eval_fraction}")
    if split.key is not None:
        _check_column(split.key, columns, "split.key")
    return split


def _parse_features(raw, columns, label) -> Tuple[features.Feature, ...]:
    section = _section(raw, "features", required=False)
    parsed = []
    for name, options in section.items():
        where = f"features.{name}"
        if options is None:
            options = {}
        if not isinstance(options, dict):
            raise ConfigError(f"{where}: expected a mapping with at least 'kind'")
        options = dict(options)
        crossed = options.get("columns")
        default_column = crossed[0] if isinstance(crossed, list) and crossed else name
        column_name = options.pop("column", default_column)
        kind = options.pop("kind", None)
        if kind not in features.KINDS:
            raise ConfigError(
                f"{where}.kind: expected one of {sorted(features.KINDS)}, got {kind!r}")
        feature_cls = features.KINDS[kind]
        column = _check_column(column_name, columns, f"{where}.column",
                               feature_cls.COLUMN_TYPES)
        if label and column.name == label.column:
            raise ConfigError(f"{where}: column {column.name!r} is the label")
        if "columns" in options and isinstance(options["columns"], list):
            # hashed_crossing reads several columns; each must exist and be scalar.
            for i, other in enumerate(options["columns"]):
                crossed = _check_column(other, columns, f"{where}.columns[{i}]",
                                        feature_cls.COLUMN_TYPES)
                if crossed.separator:
                    raise ConfigError(f"{where}.columns[{i}]: {other!r} is multivalent")
            options["columns"] = tuple(options["columns"])
        try:
            parsed.append(feature_cls.from_options(
                name, column.name, column.type, options,
                separator=column.separator, length=column.length))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}: {e}") from None
    return tuple(parsed)


def _parse_output(raw, base_dir) -> Output:
    section = _section(raw, "output")
    _check_keys(section, ("dir", "num_shards", "summary_top_k"), "output")
    out = Output(dir=_resolve(_take(section, "dir", "output", str), base_dir, "output.dir"),
                 num_shards=_take(section, "num_shards", "output", int, 0),
                 summary_top_k=_take(section, "summary_top_k", "output", int, 10))
    if out.num_shards < 0:
        raise ConfigError(f"output.num_shards: expected >= 0 (0: runner decides), "
                          f"got {out.num_shards}")
    return out


TOP_LEVEL_KEYS = ("input", "columns", "label", "split", "features", "output",
                  "preprocessing_fn", "model", "refresh")


def _parse_refresh(raw) -> Refresh:
    section = _section(raw, "refresh", required=False)
    _check_keys(section, ("keep_last", "drift"), "refresh")
    keep_last = _take(section, "keep_last", "refresh", int, 5)
    if keep_last < 1:
        raise ConfigError(f"refresh.keep_last: expected a positive integer, got {keep_last}")
    if section.get("drift") is None:
        # No thresholds of the config's own: the refresh job uses drift's defaults (and
        # drift, which imports Beam, is not imported to read a config without them).
        return Refresh(keep_last=keep_last)
    from beam_pipeline.refresh import drift  # pylint: disable=import-outside-toplevel
    try:
        thresholds = drift.parse_thresholds(section["drift"])
    except ValueError as e:
        raise ConfigError(f"refresh.{e}" if str(e).startswith("drift") else
                          f"refresh.drift: {e}") from None
    return Refresh(keep_last=keep_last, drift=thresholds)


def parse_config(raw: Any, path: str = "<config>", base_dir: str = "") -> Config:
    """Validates a parsed YAML document.

    Args:
      raw: the YAML document as Python objects.
      path: where it came from, for messages.
      base_dir: folder that relative paths in the config are relative to.

    Returns:
      A frozen `Config`.

    Raises:
      ConfigError: naming the offending key.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a YAML mapping at the top level")
    _check_keys(raw, TOP_LEVEL_KEYS, "<top level>")
    inputs = _parse_inputs(raw, base_dir)
    if inputs[0].format in FOLDER_FORMATS:
        if raw.get("columns") is not None:
            raise ConfigError("columns: a folder input has its own columns (path, "
                              "text or image, label); remove `columns`")
        columns = folder_columns(inputs[0].format)
    else:
        columns = _parse_columns(raw)
    label, columns = _parse_label(raw, columns)
    preprocessing_fn = raw.get("preprocessing_fn")
    if preprocessing_fn is not None and (
            not isinstance(preprocessing_fn, str) or ":" not in preprocessing_fn):
        raise ConfigError(
            "preprocessing_fn: expected 'module.name:function' or 'path/to/file.py:function'"
            f", got {preprocessing_fn!r}")
    feats = _parse_features(raw, columns, label)
    if preprocessing_fn and feats:
        raise ConfigError("features: give either features or preprocessing_fn, not both")
    if not preprocessing_fn and not feats:
        raise ConfigError("features: required (or preprocessing_fn) - nothing to compute")
    if preprocessing_fn:
        check_scheme(preprocessing_fn, "preprocessing_fn")
    if preprocessing_fn and not _is_url(preprocessing_fn) and ".py:" in preprocessing_fn:
        preprocessing_fn = _resolve(preprocessing_fn, base_dir, "preprocessing_fn")
    return Config(path=path, inputs=inputs, columns=columns,
                  label=label, split=_parse_split(raw, columns, inputs), features=feats,
                  output=_parse_output(raw, base_dir), preprocessing_fn=preprocessing_fn,
                  model=ModelConfig.from_raw(_section(raw, "model", required=False)),
                  refresh=_parse_refresh(raw))


def _read_text(path: str) -> str:
    """The file's text: a local path with plain file IO, gs:// through Beam's FileSystems
    (imported only then: it takes seconds)."""
    if not _is_url(path):
        with open(path, "rb") as f:
            return f.read().decode("utf-8")
    from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel
    from beam_pipeline.outputs import storage  # pylint: disable=import-outside-toplevel
    try:
        with FileSystems.open(path) as f:
            return f.read().decode("utf-8")
    except Exception as e:  # pylint: disable=broad-except
        # A missing GCS object raises NotFound, not OSError: the same "cannot read" error.
        if storage.is_missing(e):
            raise FileNotFoundError(f"no such object: {e}") from None
        raise


def load_config(path: str) -> Config:
    """Reads and validates the YAML config at `path` (local or gs://)."""
    check_scheme(path, "--config")
    try:
        raw = yaml.safe_load(_read_text(path))
    except (OSError, IOError) as e:
        raise ConfigError(f"--config: cannot read {path}: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"--config: {path} is not UTF-8 text: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    # Relative paths in the config are relative to its folder, made absolute so that a
    # glob such as "data/*.csv" matches whatever the working directory.
    base_dir = path.rsplit("/", 1)[0] if "/" in path else ""
    if not _is_url(path):
        base_dir = os.path.dirname(os.path.abspath(path))
    return parse_config(raw, path=path, base_dir=base_dir)
