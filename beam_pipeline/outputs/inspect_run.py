"""`inspect`: a readable account of a finished run, optionally with raw rows next to their transform.

The account of a local output needs no TensorFlow, tf.Transform nor Beam (seconds to import):
it reads the run's JSON summary with plain file IO. A gs:// output is read through Beam's
FileSystems, and `--records` runs the transform graph, so those import them when used.
"""

import csv
import itertools
import json
import os
import re
from typing import Dict, List, Optional

from beam_pipeline.outputs import run_state
from beam_pipeline.outputs.run_state import NoGoodRun

# outputs.layout's and refresh.runs's names (both modules import Beam's FileSystems;
# tests/test_inspect.py checks these agree with them).
_RUN_SUMMARY = run_state.RUN_SUMMARY
_REJECTED = ("rejected", "rejected")
_REJECTED_SUFFIX = ".jsonl"
_RUNS, _LATEST = run_state.RUNS, run_state.LATEST

_DTYPES = {"float": "float32", "int": "int64", "string": "string"}

_is_url, _join, _exists = run_state.is_url, run_state.join, run_state.exists
run_summary_path = run_state.run_summary_path


def rejected_pattern(out: str) -> str:
    """`layout.rejected_pattern`, without importing Beam."""
    return _join(out, *_REJECTED) + "*" + _REJECTED_SUFFIX


def resolve(root: str, run: Optional[str] = None) -> str:
    """The folder to inspect under `root`: `run_state.resolve` (a refresh root gives its
    published run; a missing folder is `NoGoodRun`, "no such output")."""
    return run_state.resolve(root, run)


def load_summary(out: str) -> Dict:
    """The run summary of the run under `out`, whatever its status; `NoGoodRun` if there
    is none."""
    return run_state.load(out)


def numeric_line(name: str, s: Dict) -> str:
    """One aligned line of a numeric column's statistics: `outputs.summary.numeric_line`
    (that module imports tf.Transform; tests/test_inspect.py checks the two agree)."""
    if not s["count"]:
        return f"{name:<20} no values, missing {s['missing']:,}"
    return (f"{name:<20} mean {s['mean']:<12.6g} std {s['variance'] ** 0.5:<12.6g}"
            f" min {s['min']:<12.6g} max {s['max']:<12.6g} missing {s['missing']:,}")


def read_raw_rows(input_section: Dict, limit: int) -> List[Dict[str, str]]:
    """The first `limit` rows of the run's input files, as CSV text cells.

    Reads line by line, so only the rows shown are read, however large the file.
    """
    # pylint: disable=import-outside-toplevel
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems
    from beam_pipeline.sources import matching_files
    files = matching_files(input_section["file_pattern"])
    names = [c["name"] for c in input_section["columns"]]
    rows: List[Dict[str, str]] = []
    for path in files:
        with FileSystems.open(path, compression_type=CompressionTypes.AUTO) as f:
            lines = (_keep_bare_cr(line.decode("utf-8-sig" if i == 0 else "utf-8", "replace"))
                     for i, line in enumerate(iter(f.readline, b"")))
            reader = csv.reader(lines, delimiter=input_section["delimiter"])
            positions = list(range(len(names)))
            if input_section["header"]:
                # As the reader does: declared columns by header name, extra ones ignored.
                header = [n.strip().strip('"').strip() for n in next(reader, [])]
                positions = [header.index(n) if n in header else -1 for n in names]
            for cells in itertools.islice(reader, limit - len(rows)):
                cells = [c.replace(_CR, "\r") for c in cells]
                rows.append({n: cells[p] for n, p in zip(names, positions)
                             if 0 <= p < len(cells)})
        if len(rows) >= limit:
            break
    return rows


_CR = "\ue000"  # stands in for a bare CR, which csv would take for a record end


def _keep_bare_cr(line: str) -> str:
    """A line with its CRLF end as LF and any other CR hidden from csv (a bare CR is part
    of a value for this project's reader)."""
    body = line[:-2] + "\n" if line.endswith("\r\n") else line
    return body.replace("\r", _CR)


def _raw_tensors(rows: List[Dict[str, str]], columns: List[Dict]) -> Dict:
    """Rows -> the [batch, 1] VarLen sparse tensors the transform graph takes; "" is missing."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    tensors = {}
    for column in columns:
        name = column["name"]
        dtype = tf.as_dtype(_DTYPES[column.get("read_type", column["type"])])
        present = [i for i, row in enumerate(rows) if row.get(name, "") != ""]
        values = [rows[i][name] for i in present]
        if dtype == tf.string:
            values = tf.constant(values, tf.string)
        else:
            values = tf.constant(np.array(values, dtype=dtype.as_numpy_dtype))
        tensors[name] = tf.SparseTensor(
            indices=[[i, 0] for i in present] or tf.zeros([0, 2], tf.int64),
            values=values, dense_shape=[len(rows), 1])
    return tensors


def transform_rows(out: str, rows: List[Dict[str, str]], columns: List[Dict]) -> Dict:
    """The run's own transform graph applied to raw rows: `{feature: array}`."""
    import tensorflow_transform as tft  # pylint: disable=import-outside-toplevel
    transformed = tft.TFTransformOutput(out).transform_raw_features(
        _raw_tensors(rows, columns), drop_unused_features=True)
    return {k: v.numpy() for k, v in transformed.items()}


def _format_value(value) -> str:
    import numpy as np  # pylint: disable=import-outside-toplevel
    if isinstance(value, np.ndarray):
        return "[" + " ".join(_format_value(v) for v in value.tolist()) + "]"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _rejected(rows: Dict, out: str) -> str:
    """The rejected count with its reasons and where the dead letters are, or "rejected 0"."""
    rejected = rows.get("rejected", 0)
    if not rejected:
        return "rejected 0"
    reasons = ", ".join(f"{r} {n:,}" for r, n in rows.get("rejected_by_reason", {}).items())
    return f"rejected {rejected:,} ({reasons}; see {rejected_pattern(out)})"


def _written(rows: Dict, failed: bool) -> str:
    """"written train N, eval M", or for a failed run, which kept no data, "written
    nothing" with the rows that were split (its counters count rows it then deleted)."""
    if failed:
        split = ", ".join(f"{s} {n:,}" for s, n in rows.get("split", {}).items())
        return ("written nothing (a failed run keeps no data" +
                (f"; split {split}" if split else "") + ")")
    return "written " + ", ".join(f"{s} {n:,}" for s, n in rows["written"].items())


def _folder_entries(path: str) -> str:
    """" (a, b/, c)": what a local folder holds, for the artifact list ("" otherwise)."""
    if _is_url(path) or not os.path.isdir(path):
        return ""
    names = sorted(n + ("/" if os.path.isdir(os.path.join(path, n)) else "")
                   for n in os.listdir(path))
    return f" ({', '.join(names)})" if names else ""


def _artifacts(summary: Dict, out: str, failed: bool) -> List[str]:
    """One line per artifact: the summary's (the config copy among them), then the report,
    the rejected records and what `train` wrote (model/), each when it is there."""
    lines = []
    for name, path in summary.get("artifacts", {}).items():
        if isinstance(path, dict):
            for split, pattern in path.items():
                lines.append(f"    {name} {split}: {pattern}" + ("  (not written)" if failed
                                                                 else ""))
        else:
            exists = "" if _exists(path) else "  (not written)" if failed else "  (missing)"
            lines.append(f"    {name}: {path}{exists}")
    extras = [("report", _join(out, "report.html"))]
    if summary.get("rows", {}).get("rejected"):
        extras.append(("rejected", rejected_pattern(out)))
    for name, path in extras:
        if name == "rejected" or _exists(path):
            lines.append(f"    {name}: {path}")
    model = _join(out, "model")
    if _exists(model):
        lines.append(f"    model: {model}/{_folder_entries(model)}")
    return lines


def format_run(summary: Dict, out: str) -> str:
    """Status (first, for a run that failed), config, rows, statistics, vocabularies and
    where each artifact is, as text."""
    problem = run_state.failure(out, summary)
    lines = []
    if problem is not None:
        # The folder is named on the next line; the reason leads.
        lines.append("FAILED: " + problem[len(out) + 2:] if problem.startswith(out + ": ")
                     else "FAILED: " + problem)
    lines += [f"run under {out}",
              f"  status: {summary.get('status', run_state.COMPLETE)}",
              f"  config: {summary['config']}",
              f"  input: {summary['input']['file_pattern'] or summary['input']['directory']}",
              f"  wall time: {summary['wall_seconds']} s"]
    rows = summary["rows"]
    lines.append(f"  rows read {rows['read']:,}; {_written(rows, problem is not None)}; "
                 f"{_rejected(rows, out)}")
    lines.append("  numeric statistics (train split):")
    for name, s in summary["statistics"]["numeric"].items():
        lines.append("    " + numeric_line(name, s))
    lines.append("  vocabularies:")
    for name, v in summary["statistics"]["vocabularies"].items():
        top = ", ".join(repr(e["token"]) for e in v["top"][:5])
        lines.append(f"    {name:<20} {v['size']:,} entries; top {top}")
    lines.append("  artifacts:")
    lines += _artifacts(summary, out, problem is not None)
    return "\n".join(lines)


def format_records(rows: List[Dict[str, str]], transformed: Dict) -> str:
    """Each raw row followed by its transformed features."""
    lines = []
    for i, row in enumerate(rows):
        lines.append(f"record {i}")
        lines.append("  raw:         " + ", ".join(f"{k}={v!r}" for k, v in row.items()))
        lines.append("  transformed: " + ", ".join(
            f"{k}={_format_value(transformed[k][i])}" for k in sorted(transformed)))
    return "\n".join(lines)


def inspect(out: str, records: int = 0) -> str:
    """The text `beam-pipeline inspect` prints for the run under `out` (a failed run's
    too: its status comes first; see `run_state.failure`)."""
    summary = load_summary(out)
    text = format_run(summary, out)
    if records and run_state.failure(out, summary) is not None:
        text += "\n\n(--records needs the run's transform graph, which a failed run does not keep)"
    elif records and summary["input"].get("format", "csv") != "csv":
        text += "\n\n(--records shows rows of CSV inputs only)"
    elif records:
        rows = read_raw_rows(summary["input"], records)
        transformed = transform_rows(out, rows, summary["input"]["columns"])
        text += "\n\nfirst rows of the input, through this run's transform graph:\n"
        text += format_records(rows, transformed)
    return text
