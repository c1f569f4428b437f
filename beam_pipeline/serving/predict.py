"""`predict`: raw rows (CSV in the training layout, or JSON lines) through the exported model.

Uses only TensorFlow and the SavedModel's `serving_raw` signature, as a serving client would.

Every value is checked against the model's raw columns before anything is predicted: the
signature's inputs (the run's declared columns but the label, with their types) and the
label column(s) the export parses from a tf.Example (accepted, checked, not sent). What
does not fit is a `BadRows` error naming the file, line and column, or, with
`skip_bad_rows`, left out and listed (`Predictions.problems`). The rules:

  * JSON lines: each non-blank line is one JSON object. A float column takes a JSON number
    (3 is 3.0); an int column an integral number (3 or 3.0, not 1.5); a string column a
    JSON string. A string for a number column, a number for a string column, a boolean,
    an array or an object is an error: JSON has types, so nothing is converted. NaN and
    Infinity are not JSON. A key that is no column of the model is an error.
  * CSV: the header (line 1) names the columns; a name that is no column of the model, or
    one named twice, is an error for the whole file. Every row has the header's field
    count. A cell is read as `preprocess` reads it (`sources/csv_values.py`): an int is
    digits with an optional sign (so "3.0" is not an int), a float a decimal number;
    "nan" or "inf" is an error here (training's `input.non_finite` is not in the model).
  * Missing, as before: an absent key, a JSON null, an empty CSV cell (spaces only for a
    number column) or an empty string for a string column is sent as missing (NaN, "" or,
    for an int column, the dtype's minimum); so that minimum, -2**63, is an error as a
    value. A float beyond float32's range is an error (it would become inf).
"""

import csv
import dataclasses
import difflib
import json
import math
import re
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

BATCH = 1024

# preprocess's cell patterns (`beam_pipeline.sources.csv_values`, which imports Beam: not
# imported here); tests/test_predict_cli.py checks that they are the same.
INT_PATTERN = r"^\s*[+-]?[0-9]+\s*$"
FLOAT_PATTERN = r"^\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*$"
NON_FINITE_PATTERN = r"^\s*[+-]?(?i:nan|inf|infinity)\s*$"

MISSING = None  # a checked value that is sent as the column's missing value


class ModelError(ValueError):
    """The --model folder is not a SavedModel with a `serving_raw` signature."""


class InputError(ValueError):
    """The --input file is missing, unreadable or unusable; the message names it."""


@dataclasses.dataclass(frozen=True)
class Problem:
    """Why one value (or a whole row) of the input does not fit the model.

    `line` is the 1-based line the row starts on; `column` the column (JSON key, CSV
    header name) or None for the whole row; `raw` the row's text."""
    line: int
    column: Optional[str]
    reason: str
    raw: str

    def where(self) -> str:
        """Where the problem is, as `line 3, column "x"` or `line 3`."""
        return f"line {self.line}" + ("" if self.column is None else
                                      f", column {json.dumps(self.column)}")

    def as_json(self) -> str:
        """The problem as one JSON line (line, column, reason, raw)."""
        return json.dumps({"line": self.line, "column": self.column, "reason": self.reason,
                           "raw": self.raw}, ensure_ascii=False)


class BadRows(InputError):
    """Rows of the input that do not fit the model's raw columns; the message names the
    first problem, and how many other rows have one."""

    def __init__(self, path: str, problems: Sequence[Problem], bad_rows: int):
        self.problems, self.bad_rows = list(problems), bad_rows
        first = problems[0]
        more = "" if bad_rows == 1 else (
            f" ({bad_rows - 1} more row{'s' if bad_rows > 2 else ''} do not fit either)")
        super().__init__(f"--input {path}: {first.where()}: {first.reason}{more}")


@dataclasses.dataclass(frozen=True)
class Columns:
    """The columns an input row may hold, name -> dtype. `sent` are the signature's
    inputs; the others are label columns."""
    dtypes: Dict[str, tf.DType]
    sent: Tuple[str, ...]

    def describe(self) -> str:
        """The columns, for an error message (at most 12 named)."""
        names = sorted(self.sent)
        shown = ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12
                                         else "")
        labels = sorted(n for n in self.dtypes if n not in self.sent)
        return f"its columns: {shown}" + (f"; label: {', '.join(labels)}" if labels else "")

    def unknown(self, name: str) -> str:
        """The reason for a key or header name that is no column of the model."""
        close = difflib.get_close_matches(name, list(self.dtypes), n=1)
        hint = f"; did you mean {json.dumps(close[0])}?" if close else ""
        return f"not a column of the model{hint} ({self.describe()})"


def _kind(dtype: tf.DType) -> str:
    if dtype == tf.string:
        return "string"
    return "float" if dtype.is_floating else "int"


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return {str: "a string", list: "an array", dict: "an object"}.get(type(value), "a value")


def _check_number(value, name: str, dtype: tf.DType) -> Tuple[Any, Optional[str]]:
    """(value as the column's Python type, None) or (None, why it does not fit)."""
    if _kind(dtype) == "float":
        try:
            number = float(value)
        except OverflowError:  # an int of hundreds of digits
            number = math.inf
        with np.errstate(over="ignore"):  # the overflow is the finding, not a warning
            overflows = math.isinf(float(dtype.as_numpy_dtype(number)))
        if overflows:
            return None, (f"{value} is beyond the range of {dtype.name} "
                          f"({name} is a float column)")
        return number, None
    if isinstance(value, float):
        if not value.is_integer():
            return None, f"{value} is not an integer ({name} is an int column)"
        value = int(value)
    if not dtype.min < value <= dtype.max:
        if value == dtype.min:
            return None, (f"{value} is the int column's missing-value marker; "
                          "write null, or leave the cell empty, for a missing value")
        return None, f"{value} is beyond the range of {dtype.name} ({name} is an int column)"
    return value, None


def _check_json(value: Any, name: str, dtype: tf.DType) -> Tuple[Any, Optional[str]]:
    """A JSON value of column `name`: (checked value or MISSING, None) or (None, why)."""
    if value is None:
        return MISSING, None
    kind = _kind(dtype)
    if kind == "string" and isinstance(value, str):
        return value or MISSING, None
    if kind != "string" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return _check_number(value, name, dtype)
    shown = json.dumps(value, ensure_ascii=False)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    write = "a JSON string" if kind == "string" else "a JSON number, or null for a missing value"
    return None, (f"{shown} is {_json_type(value)}, and {name} is "
                  f"{'an' if kind == 'int' else 'a'} {kind} column (write {write})")


def _check_cell(text: str, name: str, dtype: tf.DType) -> Tuple[Any, Optional[str]]:
    """A CSV cell of column `name`, read as preprocess reads it: (checked value or
    MISSING, None) or (None, why it does not fit)."""
    kind = _kind(dtype)
    if kind == "string":  # only an empty cell is missing; spaces are text
        return text or MISSING, None
    if not text.strip():
        return MISSING, None
    if kind == "int":
        if re.match(INT_PATTERN, text):
            return _check_number(int(text), name, dtype)
        return None, f"{text!r} is not an integer ({name} is an int column)"
    if re.match(FLOAT_PATTERN, text):
        return _check_number(float(text), name, dtype)
    if re.match(NON_FINITE_PATTERN, text):
        return None, (f"{text!r} is not a finite number ({name} is a float column; leave "
                      "the cell empty for a missing value)")
    return None, f"{text!r} is not a number ({name} is a float column)"


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON (write null for a missing value)")


def _object(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"the key {json.dumps(key)} appears twice")
        seen[key] = value
    return seen


def _json_rows(path: str, text: str, columns: Columns
               ) -> Iterator[Tuple[Optional[Dict], List[Problem]]]:
    """(checked row, []) or (None, its problems) for each non-blank line."""
    # Lines end at \n only: a JSON string may hold U+2028 or other line separators that
    # str.splitlines would cut it at.
    for number, line in enumerate(text.split("\n"), 1):
        line = line[:-1] if line.endswith("\r") else line
        if not line.strip():
            continue
        try:
            value = json.loads(line, parse_constant=_no_constant, object_pairs_hook=_object)
        except json.JSONDecodeError as e:
            yield None, [Problem(number, None, f"not JSON ({e.msg} at character {e.colno})",
                                 line)]
            continue
        except ValueError as e:  # from _no_constant or _object
            yield None, [Problem(number, None, f"not a valid row ({e})", line)]
            continue
        if not isinstance(value, dict):
            yield None, [Problem(number, None, f"{_json_type(value)}, not a JSON object "
                                 "(each line is one row: {\"column\": value, ...})", line)]
            continue
        row, problems = {}, []
        for name, item in value.items():
            if name not in columns.dtypes:
                problems.append(Problem(number, name, columns.unknown(name), line))
                continue
            row[name], why = _check_json(item, name, columns.dtypes[name])
            if why:
                problems.append(Problem(number, name, why, line))
        yield (None, problems) if problems else (row, [])


def _csv_rows(path: str, text: str, columns: Columns
              ) -> Iterator[Tuple[Optional[Dict], List[Problem]]]:
    """(checked row, []) or (None, its problems) for each record after the header; a
    header that does not fit the model is an `InputError`."""
    # Lines end at \n, as preprocess counts them (see sources/csv_records.py); the csv
    # module joins the lines of a quoted field that spans several.
    lines = [l + "\n" for l in text.split("\n")]
    if lines[-1] == "\n":
        lines.pop()
    reader = csv.reader(iter(lines))
    header, end = None, 0
    while True:
        start = end + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            end = reader.line_num
            raw = "".join(lines[start - 1:end]).rstrip("\r\n")
            if header is None:
                raise InputError(f"--input {path}: line {start}: the header cannot be "
                                 f"read as CSV ({e})") from None
            yield None, [Problem(start, None, f"not a CSV record ({e})", raw)]
            continue
        end = reader.line_num
        if not fields:
            continue  # a blank line
        raw = "".join(lines[start - 1:end]).rstrip("\r\n")
        if header is None:
            header = [f.strip() for f in fields]
            for i, name in enumerate(header):
                why = (columns.unknown(name) if name not in columns.dtypes else
                       "named twice in the header" if name in header[:i] else None)
                if why:
                    raise InputError(f"--input {path}: line {start}, column "
                                     f"{json.dumps(name)} (field {i + 1} of the header): "
                                     f"{why}")
            continue
        if len(fields) != len(header):
            yield None, [Problem(start, None, f"{len(fields)} fields, and the header (line 1) "
                                 f"has {len(header)}", raw)]
            continue
        row, problems = {}, []
        for name, cell in zip(header, fields):
            row[name], why = _check_cell(cell, name, columns.dtypes[name])
            if why:
                problems.append(Problem(start, name, why, raw))
        yield (None, problems) if problems else (row, [])


def _read_text(path: str) -> str:
    with tf.io.gfile.GFile(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8-sig")  # a leading BOM is not part of the first row
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        line_start = data.rfind(b"\n", 0, e.start) + 1
        raise InputError(f"--input {path}: line {line}: not UTF-8 (byte "
                         f"0x{data[e.start]:02x}, byte {e.start - line_start + 1} of the "
                         "line)") from None


def _const_strings(nodes: Dict, tensor: str) -> List[str]:
    """The strings of the Const node `tensor` ("name:output:0") names in a function."""
    const = nodes.get(tensor.split(":")[0])
    if const is None or const.op != "Const":
        return []
    return [k.decode() for k in tf.make_ndarray(const.attr["value"].tensor).reshape(-1)]


def _parsed_columns(model_dir: str) -> Dict[str, tf.DType]:
    """{column: dtype} of the raw tf.Example the export parses (`serving_default`: the
    run's declared columns, the label too), read from its graph; {} if it parses none."""
    from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=import-outside-toplevel
    path = model_dir.rstrip("/") + "/saved_model.pb"
    if not tf.io.gfile.exists(path):
        return {}
    saved = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(path, "rb") as f:
        saved.ParseFromString(f.read())
    found = {}
    for meta in saved.meta_graphs:
        for function in meta.graph_def.library.function:
            nodes = {n.name: n for n in function.node_def}
            for node in function.node_def:
                if node.op != "ParseExampleV2":
                    continue
                # Inputs: serialized, names, then sparse, dense and ragged keys (Consts),
                # their dtypes in the three type attributes, in the same order.
                names = [k for i in (2, 3, 4) for k in _const_strings(nodes, node.input[i])]
                types = [t for a in ("sparse_types", "Tdense", "ragged_value_types")
                         for t in node.attr[a].list.type]
                if len(names) == len(types):
                    found.update({n: tf.as_dtype(t) for n, t in zip(names, types)})
    return found


def model_columns(model_dir: str, serve) -> Columns:
    """The columns a row may hold: `serve`'s inputs, and the label column(s) the export
    parses beside them (a training-layout row has its label; it is checked, not sent)."""
    specs = serve.structured_input_signature[1]
    dtypes = {name: spec.dtype for name, spec in specs.items()}
    parsed = _parsed_columns(model_dir)
    # Only a parse of every signature input is the raw schema (a model may parse others).
    if set(dtypes) <= set(parsed):
        dtypes.update({n: t for n, t in parsed.items() if n not in dtypes})
    return Columns(dtypes, tuple(specs))


def read_input(input_path: str, columns: Columns) -> Tuple[List[Dict], List[Problem], int]:
    """(the rows that fit, the problems of the others, how many rows have one) of
    `input_path` (.jsonl or .json: JSON lines; else CSV with a header)."""
    text = _read_text(input_path)
    rows_of = _json_rows if input_path.endswith((".jsonl", ".json")) else _csv_rows
    rows, problems, bad = [], [], 0
    for row, found in rows_of(input_path, text, columns):
        if found:
            problems.extend(found)
            bad += 1
        else:
            rows.append(row)
    return rows, problems, bad


def _column_arrays(rows: List[Dict], specs: Dict[str, tf.TensorSpec]) -> Dict[str, np.ndarray]:
    """Checked rows -> one array per signature input; an absent or MISSING value is sent
    as missing: NaN, "" or, for an int column, the dtype's minimum (-2**63), as
    `serving_raw` reads them."""
    arrays = {}
    for name, spec in specs.items():
        values = [row.get(name) for row in rows]
        if spec.dtype == tf.string:
            arrays[name] = np.array(["" if v is None else v for v in values], dtype=object)
        elif spec.dtype.is_floating:
            arrays[name] = np.array([np.nan if v is None else v for v in values],
                                    dtype=spec.dtype.as_numpy_dtype)
        else:  # the signature's missing int: the dtype's minimum (export.MISSING_INT)
            arrays[name] = np.array([spec.dtype.min if v is None else v for v in values],
                                    dtype=spec.dtype.as_numpy_dtype)
    return arrays


def check_input(input_path: str) -> None:
    """`InputError` naming `input_path` unless it is a file."""
    if not tf.io.gfile.exists(input_path):
        raise InputError(f"--input {input_path}: no such file")
    if tf.io.gfile.isdir(input_path):
        raise InputError(f"--input {input_path}: is a folder; expected a CSV or .jsonl file")


def load_raw_signature(model_dir: str):
    """The `serving_raw` signature of the SavedModel in `model_dir`, or `ModelError`
    naming the folder (and the signatures it has)."""
    if not tf.io.gfile.isdir(model_dir):
        what = "is a file, not a folder" if tf.io.gfile.exists(model_dir) else "no such folder"
        raise ModelError(f"--model {model_dir}: {what}; predict takes the serving export of "
                         "`beam-pipeline train`, OUTPUT/model/serving")
    try:
        model = tf.saved_model.load(model_dir)
    except (OSError, ValueError, tf.errors.OpError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"--model {model_dir}: not a loadable SavedModel ({first})") from None
    if "serving_raw" not in model.signatures:
        has = ", ".join(sorted(model.signatures)) or "none"
        raise ModelError(
            f"--model {model_dir}: no serving_raw signature (its signatures: {has}); predict "
            "takes the serving export of `beam-pipeline train`, OUTPUT/model/serving")
    return model, model.signatures["serving_raw"]


class Predictions:
    """`predict`'s result: iterating it gives one prediction dict per row that fits, in
    input order; `problems` lists why the others were skipped (empty unless
    `skip_bad_rows`), `skipped_rows` counts them and `rows` counts the rows that fit."""

    def __init__(self, iterator: Iterator[Dict], rows: int, problems: List[Problem],
                 skipped_rows: int):
        self._iterator, self.rows = iterator, rows
        self.problems, self.skipped_rows = problems, skipped_rows

    def __iter__(self) -> Iterator[Dict]:
        return self._iterator


def predict(model_dir: str, input_path: str, skip_bad_rows: bool = False) -> Predictions:
    """One prediction dict per input row, in input order, keys sorted by name (the
    signature's outputs come back in an order that changes between processes).

    Checks that the input file exists (`InputError`), loads the model and checks its
    `serving_raw` signature (`ModelError`), and reads and checks every row (see the module
    docstring) now; then predicts lazily. A row that does not fit is a `BadRows` error
    (an `InputError`) naming the file, line and column, or with `skip_bad_rows` is left
    out and listed in the result's `problems`. A CSV header that does not fit is an
    `InputError` either way."""
    check_input(input_path)
    model, serve = load_raw_signature(model_dir)
    rows, problems, bad = read_input(input_path, model_columns(model_dir, serve))
    if problems and not skip_bad_rows:
        raise BadRows(input_path, problems, bad)
    return Predictions(_predictions(model, serve, rows), len(rows), problems, bad)


def _predictions(model, serve, rows: List[Dict]) -> Iterator[Dict]:
    # `model` is unused but held by this frame: the signature's variables live in it.
    specs = serve.structured_input_signature[1]
    for start in range(0, len(rows), BATCH):
        outputs = serve(**{k: tf.constant(v) for k, v in
                           _column_arrays(rows[start:start + BATCH], specs).items()})
        outputs = {k: outputs[k].numpy() for k in sorted(outputs)}
        for i in range(len(rows[start:start + BATCH])):
            yield {k: v[i].tolist() for k, v in outputs.items()}
