"""The run summary: rows read and written, statistics learned, where the outputs are."""

import dataclasses
import itertools
import json
import os
from typing import Dict, Iterator, List, Tuple

import numpy as np
import tensorflow_transform as tft
from apache_beam.io.filesystems import FileSystems

from beam_pipeline import sources
from beam_pipeline.outputs import layout, storage
from beam_pipeline.config import Config
from beam_pipeline.features import vocabulary
from beam_pipeline.job.split import SPLITS


def iter_vocabulary(path: str, integer: bool = False) -> Iterator[Dict]:
    """Entries `{"token", "count"}` of a vocabulary written by `features.vocabulary`, in
    order, read line by line (a vocabulary without `max_tokens` can outgrow memory).

    With `integer`, tokens are the int values of an int column's vocabulary. tft's line
    for a vocabulary learned from no values gives no entries.
    """
    with FileSystems.open(path) as f:
        lines = (raw.rstrip(b"\n").decode("utf-8", "backslashreplace") for raw in f)
        lines = (line for line in lines if line)
        head = list(itertools.islice(lines, 2))
        if head == [f"1 {vocabulary.EMPTY_VOCABULARY_DUMMY}"]:
            return  # tft's stand-in for a vocabulary learned from no values
        for line in itertools.chain(head, lines):
            count, _, token = line.partition(" ")
            yield {"token": vocabulary.unescape(token, integer), "count": int(float(count))}


def read_vocabulary(path: str, integer: bool = False) -> List[Dict]:
    """`iter_vocabulary`'s entries as a list."""
    return list(iter_vocabulary(path, integer))


def _vocabulary_summaries(config: Config, top_k: int, statistics: Dict) -> Dict[str, Dict]:
    """Size, top entries with counts, and coverage of each vocabulary.

    Coverage is the share of the train split's values (rows with a value, or tokens for
    text) that the kept vocabulary maps; the rest is OOV.
    """
    tft_output = tft.TFTransformOutput(config.output.dir)
    summaries = {}
    parts = config.features + ((config.label,) if config.label else ())
    for feature in parts:
        for name in feature.vocabulary_names():
            path = tft_output.vocabulary_file_by_name(name)
            size, kept, top = 0, 0, []
            for entry in iter_vocabulary(path, integer=feature.column_type == "int"):
                size, kept = size + 1, kept + entry["count"]
                if len(top) < top_k:
                    top.append(entry)
            summaries[name] = {"size": size, "top": top}
            if name in statistics["text"]:
                total = statistics["text"][name]["tokens"]
            elif feature.column in statistics["categorical"]:
                total = statistics["categorical"][feature.column]["present"]
            else:
                continue
            summaries[name]["coverage"] = kept / total if total else None
            summaries[name]["oov_rate"] = 1 - kept / total if total else None
    if config.preprocessing_fn:
        summaries.update(user_vocabulary_summaries(
            FileSystems.join(config.output.dir, "transform_fn", "assets"), top_k))
    return summaries


def user_vocabulary_summaries(assets: str, top_k: int) -> Dict[str, Dict]:
    """{file name: size and top tokens} of each file in the `assets` folder, which a
    user's preprocessing_fn fills with vocabularies in tft's text format by default."""
    summaries = {}
    prefix = assets.rstrip("/") + "/"
    # storage.files: on an object store the folder itself never "exists".
    for path in storage.files(assets):
        if "/" in path[len(prefix):]:
            continue  # not a file directly under assets/
        with FileSystems.open(path) as f:
            tokens = f.read().decode("utf-8", "backslashreplace").splitlines()
        summaries[path.rsplit("/", 1)[-1]] = {
            "size": len(tokens), "top": [{"token": t} for t in tokens[:top_k]]}
    return summaries


QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def sketch_quantiles(sketch, quantiles=QUANTILES) -> Dict[str, float]:
    """Approximate quantiles (within one sketch bucket, about 3%) from `[low, high, count]` rows."""
    counts = np.array([c for _, _, c in sketch], dtype=np.float64)
    if not counts.size:
        return {}
    cumulative = np.cumsum(counts) / counts.sum()
    out = {}
    for q in quantiles:
        i = int(np.searchsorted(cumulative, q))
        low, high, _ = sketch[min(i, len(sketch) - 1)]
        out[f"p{round(q * 100)}"] = (low + high) / 2
    return out


def _label_distribution(counters: Dict[str, int]) -> Dict[str, Dict[str, int]]:
    """`{split: {label value: rows}}` from the `label_<split>_<value>` counters."""
    out: Dict[str, Dict[str, int]] = {}
    for name, value in counters.items():
        for split in SPLITS:
            prefix = f"label_{split}_"
            if name.startswith(prefix):
                out.setdefault(split, {})[name[len(prefix):]] = value
    return {s: dict(sorted(d.items(), key=lambda kv: int(kv[0]))) for s, d in out.items()}


def rows_read(counters: Dict[str, int]) -> Tuple[int, int]:
    """`(read, rejected)` from the job's counters: read is every record seen, the valid rows
    (split and written) plus the rejected ones. The summary and the progress report agree
    on it."""
    rejected = counters.get("rows_rejected", 0)
    return counters.get("rows_valid", 0) + rejected, rejected


def config_record(path):
    """How a run summary names its config: a local path made absolute (the summary is
    read from other folders than the one preprocess ran in), a gs:// one as it is."""
    if not path or "://" in path:
        return path
    return os.path.abspath(path)


def build_summary(config: Config, counters: Dict[str, int], statistics: Dict,
                  seconds: float) -> Dict:
    """Assembles the run summary dict (see README, "Outputs") from the job's counters and
    the train statistics."""
    out = config.output.dir
    numeric = {}
    for name, stats in statistics["numeric"].items():
        numeric[name] = {k: v for k, v in stats.items() if k != "sketch"}
        numeric[name]["quantiles"] = sketch_quantiles(stats["sketch"])
    return {
        "config": config_record(config.path),
        # The first input's settings at the top (what `inspect` reads rows with), then all.
        "input": {
            **dataclasses.asdict(config.inputs[0]),
            "columns": [{"name": c.name, "type": c.type, "read_type": c.read_type}
                        for c in config.columns],
            "class_names": sources.class_names(config.inputs[0]),
            "inputs": [dataclasses.asdict(i) for i in config.inputs],
        },
        "output": out,
        "wall_seconds": round(seconds, 2),
        # Where the counts come from: "committed" or "attempted" metrics (see
        # `pipeline.read_counters`; attempted ones may count a retried bundle twice).
        "counters": getattr(counters, "kind", None),
        "rows": {
            "read": rows_read(counters)[0],
            "rejected": rows_read(counters)[1],
            "rejected_by_reason": {name[len("rows_rejected_"):]: n
                                   for name, n in sorted(counters.items())
                                   if name.startswith("rows_rejected_")},
            "split": {s: counters.get(f"rows_{s}", 0) for s in SPLITS},
            "written": {s: counters.get(f"rows_written_{s}", 0) for s in SPLITS},
        },
        "statistics": {
            "split": "train",
            "numeric": numeric,
            "vocabularies": _vocabulary_summaries(config, config.output.summary_top_k,
                                                  statistics),
            "text": {name: {"tokens": t["tokens"], "rows": t["rows"],
                            "mean_tokens_per_row": t["tokens"] / t["rows"] if t["rows"] else None}
                     for name, t in statistics["text"].items()},
            "labels": _label_distribution(counters),
        },
        "artifacts": {
            "data": {s: layout.data_pattern(out, s) for s in SPLITS},
            "transform_fn": FileSystems.join(out, "transform_fn"),
            "transformed_metadata": FileSystems.join(out, "transformed_metadata"),
            "raw_metadata": layout.raw_metadata_dir(out),
            "statistics": layout.statistics_path(out),
            "config_copy": layout.config_copy_path(out),
        },
    }


def write_summary(summary: Dict, path: str) -> None:
    with FileSystems.create(path) as f:
        f.write(json.dumps(summary, indent=2, sort_keys=True).encode("utf-8"))


def numeric_line(name: str, s: Dict) -> str:
    """One aligned line of a numeric column's statistics."""
    if not s["count"]:
        return f"{name:<20} no values, missing {s['missing']:,}"
    return (f"{name:<20} mean {s['mean']:<12.6g} std {s['variance'] ** 0.5:<12.6g}"
            f" min {s['min']:<12.6g} max {s['max']:<12.6g} missing {s['missing']:,}")


def template_summary(config: Config, template_location: str, seconds: float) -> Dict:
    """What a `--template_location` run returns: the job was built and staged as a
    template, not run, so there are no rows, counters or statistics (none is written)."""
    return {"config": config_record(config.path), "output": config.output.dir,
            "status": "template",
            "template_location": template_location, "wall_seconds": round(seconds, 2)}


def format_summary(summary: Dict) -> str:
    """A few human lines for the end of the command."""
    if summary.get("status") == "template":
        return "\n".join([
            f"beam_pipeline preprocess: Dataflow template written in "
            f"{summary['wall_seconds']:.1f} s; nothing has run",
            f"  template: {summary['template_location']}",
            f"  a job launched from it writes under {summary['output']}: the data, "
            "transform_fn and statistics, but no run_summary.json or report (they are "
            "written by this command after a run)",
        ])
    rows = summary["rows"]
    lines = [
        f"beam_pipeline preprocess: done in {summary['wall_seconds']:.1f} s",
        f"  rows read {rows['read']:,}: "
        + ", ".join(f"{s} {rows['written'][s]:,}" for s in SPLITS) + " written"
        + (f", {rows['rejected']:,} rejected ("
           + ", ".join(f"{r} {n:,}" for r, n in rows["rejected_by_reason"].items())
           + f"; see {layout.rejected_pattern(summary['output'])})" if rows.get("rejected") else ""),
    ]
    for name, s in summary["statistics"]["numeric"].items():
        lines.append("  " + numeric_line(name, s))
    for name, v in summary["statistics"]["vocabularies"].items():
        top = ", ".join(f"{e['token']!r}" + (f" {e['count']:,}" if "count" in e else "")
                        for e in v["top"][:3])
        lines.append(f"  vocabulary {name}: {v['size']:,} entries (top: {top})")
    lines.append(f"  outputs under {summary['output']} (summary: {layout.RUN_SUMMARY})")
    return "\n".join(lines)
