"""The run's static HTML report: plots made with matplotlib, embedded as PNG data, no network.

Every number shown is also in the element's `data-value` attribute, taken straight from
the run summary, so tests (and scripts) can read the report back exactly.
"""

import base64
import html
import io
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np
from apache_beam.io.filesystems import FileSystems

from beam_pipeline.outputs import layout

HISTOGRAM_BINS = 30
TOP_BARS = 20

_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1100px; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .5em 0 1em; }
td, th { border: 1px solid #ddd; padding: .25em .6em; text-align: right; }
th { background: #f4f4f4; } td.name { text-align: left; font-weight: bold; }
.feature { display: inline-block; vertical-align: top; margin: 0 1.5em 1.5em 0; }
img { max-width: 480px; }
tr.breach td { background: #fbe3e3; color: #a40000; font-weight: bold; }
p.breach { color: #a40000; font-weight: bold; } p.passed { color: #2a7a2a; font-weight: bold; }
"""


def _png(figure) -> str:
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(figure)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def _figure(width=6.0, height=2.6):
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    return plt.subplots(figsize=(width, height))


def histogram_from_sketch(sketch: Sequence, low: float, high: float, bins: int = HISTOGRAM_BINS):
    """Rebins `[bucket_low, bucket_high, count]` sketch rows into equal-width bins on [low, high]."""
    edges = np.linspace(low, high, bins + 1) if high > low else np.array([low - 0.5, low + 0.5])
    counts = np.zeros(len(edges) - 1)
    for bucket_low, bucket_high, count in sketch:
        middle = min(max((bucket_low + bucket_high) / 2, edges[0]), edges[-1])
        index = min(int(np.searchsorted(edges, middle, side="right")) - 1, len(counts) - 1)
        counts[max(index, 0)] += count
    return edges, counts


def _cell(key: str, value, fmt: str = "{:,.6g}") -> str:
    shown = "–" if value is None else (fmt.format(value) if isinstance(value, (int, float))
                                         else html.escape(str(value)))
    return f'<td data-key="{html.escape(key)}" data-value="{html.escape(repr(value))}">{shown}</td>'


def _table(header: Iterable[str], rows: List[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _rows_section(summary: Dict) -> str:
    rows = summary["rows"]
    cells = [_cell("rows.read", rows["read"])]
    cells += [_cell(f"rows.written.{s}", n) for s, n in rows["written"].items()]
    cells.append(_cell("rows.rejected", rows.get("rejected", 0)))
    header = ["read"] + [f"written {s}" for s in rows["written"]] + ["rejected"]
    text = "<h2>Rows</h2>" + _table(header, ["<tr>" + "".join(cells) + "</tr>"])
    reasons = sorted((rows.get("rejected_by_reason") or {}).items(), key=lambda kv: -kv[1])
    if reasons:
        text += "<h3>Top rejection reasons</h3>" + _table(["reason", "rows"], [
            f'<tr><td class="name">{html.escape(r)}</td>{_cell(f"rejected.{r}", n)}</tr>'
            for r, n in reasons[:10]])
    return text


def _labels_section(summary: Dict) -> str:
    labels = summary["statistics"].get("labels") or {}
    if not labels:
        return ""
    values = sorted({v for d in labels.values() for v in d}, key=int)
    fig, ax = _figure()
    width = 0.8 / len(labels)
    for i, (split, counts) in enumerate(sorted(labels.items(), reverse=True)):
        total = sum(counts.values())
        ax.bar(np.arange(len(values)) + i * width, [counts.get(v, 0) / total for v in values],
               width, label=split)
    ax.set_xticks(np.arange(len(values)) + width * (len(labels) - 1) / 2, values)
    ax.set_ylabel("share of rows")
    ax.legend()
    rows = [f'<tr><td class="name">{html.escape(v)}</td>'
            + "".join(_cell(f"labels.{s}.{v}", labels[s].get(v, 0)) for s in sorted(labels))
            + "</tr>" for v in values]
    return ("<h2>Label distribution per split</h2>" + _png(fig)
            + _table(["label"] + sorted(labels), rows))


def _numeric_section(summary: Dict, statistics: Dict) -> str:
    parts = ["<h2>Numeric columns (train split)</h2>"]
    for name, s in summary["statistics"]["numeric"].items():
        total = s["count"] + s["missing"]
        std = None if s["variance"] is None else s["variance"] ** 0.5
        table = _table(["mean", "std", "min", "max", "missing rate"], ["<tr>" + "".join([
            _cell(f"numeric.{name}.mean", s["mean"]), _cell(f"numeric.{name}.std", std),
            _cell(f"numeric.{name}.min", s["min"]), _cell(f"numeric.{name}.max", s["max"]),
            _cell(f"numeric.{name}.missing_rate", s["missing"] / total if total else None,
                  "{:.2%}")]) + "</tr>"])
        plot = ""
        if s["count"]:
            edges, counts = histogram_from_sketch(
                statistics["numeric"][name]["sketch"], s["min"], s["max"])
            fig, ax = _figure()
            ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="#4878a8")
            ax.set_ylabel("rows")
            plot = _png(fig)
        parts.append(f'<div class="feature"><h3>{html.escape(name)}</h3>{plot}{table}</div>')
    return "".join(parts)


def _vocabulary_section(summary: Dict) -> str:
    parts = ["<h2>Vocabularies</h2>"]
    for name, v in summary["statistics"]["vocabularies"].items():
        table = _table(["size", "coverage", "OOV rate"], ["<tr>" + "".join([
            _cell(f"vocabulary.{name}.size", v["size"]),
            _cell(f"vocabulary.{name}.coverage", v.get("coverage"), "{:.2%}"),
            _cell(f"vocabulary.{name}.oov_rate", v.get("oov_rate"), "{:.2%}")]) + "</tr>"])
        top = v["top"][:TOP_BARS]
        plot = ""
        if top and "count" in top[0]:
            fig, ax = _figure(height=0.22 * len(top) + 0.6)
            ax.barh(range(len(top))[::-1], [e["count"] for e in top], color="#6a9f58")
            ax.set_yticks(range(len(top))[::-1], [str(e["token"])[:24] for e in top])
            ax.set_xlabel("train count")
            plot = _png(fig)
        parts.append(f'<div class="feature"><h3>{html.escape(name)}</h3>{table}{plot}</div>')
    return "".join(parts)


def _text_section(summary: Dict, statistics: Dict) -> str:
    if not statistics.get("text"):
        return ""
    parts = ["<h2>Text: tokens per row (train split)</h2>"]
    for name, t in statistics["text"].items():
        lengths = np.array([k for k, _ in t["tokens_per_row"]])
        counts = np.array([c for _, c in t["tokens_per_row"]])
        fig, ax = _figure()
        ax.bar(lengths, counts, width=1.0, color="#b86b4b")
        ax.set_xlabel("tokens")
        ax.set_ylabel("rows")
        mean = summary["statistics"]["text"][name]["mean_tokens_per_row"]
        table = _table(["rows", "tokens", "mean per row"], ["<tr>" + "".join([
            _cell(f"text.{name}.rows", t["rows"]), _cell(f"text.{name}.tokens", t["tokens"]),
            _cell(f"text.{name}.mean_tokens_per_row", mean)]) + "</tr>"])
        parts.append(f'<div class="feature"><h3>{html.escape(name)}</h3>{_png(fig)}{table}</div>')
    return "".join(parts)


# The drift gate's check kinds whose threshold is a minimum (drift.MINIMUM_CHECKS; not
# imported: drift reads vocabularies with tf.Transform, the report needs none of that).
_MINIMUM_CHECKS = ("top_k_overlap",)


def _threshold_cell(key: str, check: Dict) -> str:
    threshold = check.get("threshold")
    if threshold is None:
        shown = "off" if check["check"] not in ("added", "removed") else "–"
    else:
        bound = "≥" if check["check"] in _MINIMUM_CHECKS else "≤"
        shown = f"{bound} {threshold:,.6g}"
    return (f'<td data-key="{html.escape(key)}" data-value="{html.escape(repr(threshold))}">'
            f"{html.escape(shown)}</td>")


def _drift_section(drift_report: Optional[Dict], previous: Optional[str]) -> str:
    """The drift gate's verdict and every check (breaches first and highlighted), for a
    run compared with a published one (`drift.compare`'s report, as in drift.json)."""
    if not drift_report:
        return ""
    s = drift_report.get("summary", {})
    breached = bool(drift_report.get("breached"))
    verdict = "breached" if breached else "passed"
    against = f" against run {html.escape(previous)}" if previous else ""
    text = (f'<h2>Drift</h2><p class="{"breach" if breached else "passed"}" '
            f'data-key="drift.verdict" data-value="{html.escape(repr(verdict))}">Drift gate'
            f"{against}: {'BREACHED' if breached else 'passed'} ({s.get('breached', 0)} of "
            f"{s.get('checks', 0)} checks breached"
            + (f", {s['disabled']} off" if s.get("disabled") else "") + ")"
            + (". A breach blocks the publish: the run stays unpublished until its drift is "
               "accepted (refresh --accept-drift)" if breached else "") + "</p>")
    rows = []
    for c in sorted(drift_report.get("checks", []), key=lambda c: not c.get("breached")):
        key = f"drift.{c['feature']}.{c['check']}"
        if c["check"] in ("added", "removed"):
            status = c["check"]
        elif c.get("threshold") is None:
            status = "off"
        else:
            status = "BREACH" if c.get("breached") else "ok"
        row_class = ' class="breach"' if c.get("breached") else ""
        rows.append(
            f"<tr{row_class}>"
            f'<td data-key="{html.escape(key)}.status" data-value="{html.escape(repr(status))}">'
            f"{html.escape(status)}</td>"
            f'<td class="name">{html.escape(str(c["feature"]))}</td>'
            f'<td class="name">{html.escape(str(c["check"]))}</td>'
            + _cell(f"{key}.value", c.get("value"), "{:,.4g}")
            + _threshold_cell(f"{key}.threshold", c)
            + f'<td class="name">{html.escape(c.get("note") or c.get("kind") or "")}</td></tr>')
    return text + _table(["status", "feature", "check", "value", "threshold", "note"], rows)


def render(summary: Dict, statistics: Dict, drift_report: Optional[Dict] = None,
           previous: Optional[str] = None) -> str:
    """The report page for a run summary and its train statistics (statistics/train.json);
    with a "Drift" section when `drift_report` (drift.json's contents) is given, from the
    comparison with the published run `previous`."""
    title = f"beam_pipeline run: {summary['output']}"
    body = "".join([
        f"<h1>{html.escape(title)}</h1>",
        f"<p>config {html.escape(str(summary['config']))}; input "
        f"{html.escape(', '.join(i['file_pattern'] or i['directory'] for i in summary['input']['inputs']))}; {summary['wall_seconds']} s</p>",
        _drift_section(drift_report, previous),
        _rows_section(summary), _labels_section(summary),
        _numeric_section(summary, statistics), _vocabulary_section(summary),
        _text_section(summary, statistics),
    ])
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title><style>{_STYLE}</style></head><body>{body}</body></html>")


def write_report(summary: Dict, statistics: Dict, out: str, drift_report: Optional[Dict] = None,
                 previous: Optional[str] = None) -> str:
    """Writes `OUTPUT/report.html` (see `render`); returns its path."""
    path = layout.report_path(out)
    with FileSystems.create(path) as f:
        f.write(render(summary, statistics, drift_report, previous).encode("utf-8"))
    return path
