"""The run summary: rows read and written, statistics learned, where the outputs are."""

import json
from typing import Dict, List

import tensorflow_transform as tft
from apache_beam.io.filesystems import FileSystems

from beam_pipeline import layout
from beam_pipeline.config import Config
from beam_pipeline.features import vocabulary
from beam_pipeline.split import SPLITS


def read_vocabulary(path: str) -> List[Dict]:
    """Entries `{"token", "count"}` of a vocabulary written by `features.vocabulary`, in order."""
    entries = []
    with FileSystems.open(path) as f:
        for line in f.read().decode("utf-8", "backslashreplace").split("\n"):
            if line:
                count, _, token = line.partition(" ")
                entries.append({"token": vocabulary.unescape(token), "count": int(float(count))})
    return entries


def _vocabulary_summaries(config: Config, top_k: int) -> Dict[str, Dict]:
    tft_output = tft.TFTransformOutput(config.output.dir)
    summaries = {}
    parts = config.features + ((config.label,) if config.label else ())
    for feature in parts:
        for name in feature.vocabulary_names():
            path = tft_output.vocabulary_file_by_name(name)
            entries = read_vocabulary(path)
            summaries[name] = {"size": len(entries), "top": entries[:top_k]}
    if config.preprocessing_fn:
        # A user's preprocessing_fn writes vocabularies in tft's text format by default.
        assets = FileSystems.join(config.output.dir, "transform_fn", "assets")
        for match in (FileSystems.match([assets + "/*"])[0].metadata_list
                      if FileSystems.exists(assets) else []):
            with FileSystems.open(match.path) as f:
                tokens = f.read().decode("utf-8", "backslashreplace").splitlines()
            summaries[match.path.rsplit("/", 1)[-1]] = {
                "size": len(tokens), "top": [{"token": t} for t in tokens[:top_k]]}
    return summaries


def build_summary(config: Config, counters: Dict[str, int], numeric: Dict,
                  seconds: float) -> Dict:
    """Assembles the run summary dict (see README, "Outputs")."""
    out = config.output.dir
    return {
        "config": config.path,
        "input": {
            "file_pattern": config.input.file_pattern, "header": config.input.header,
            "delimiter": config.input.delimiter,
            "columns": [{"name": c.name, "type": c.type} for c in config.columns],
        },
        "output": out,
        "wall_seconds": round(seconds, 2),
        "rows": {
            "read": counters.get("rows_read", 0),
            "split": {s: counters.get(f"rows_{s}", 0) for s in SPLITS},
            "written": {s: counters.get(f"rows_written_{s}", 0) for s in SPLITS},
        },
        "statistics": {
            "split": "train",
            "numeric": numeric,
            "vocabularies": _vocabulary_summaries(config, config.output.summary_top_k),
        },
        "artifacts": {
            "data": {s: layout.data_pattern(out, s) for s in SPLITS},
            "transform_fn": FileSystems.join(out, "transform_fn"),
            "transformed_metadata": FileSystems.join(out, "transformed_metadata"),
            "raw_metadata": layout.raw_metadata_dir(out),
        },
    }


def write_summary(summary: Dict, path: str) -> None:
    with FileSystems.create(path) as f:
        f.write(json.dumps(summary, indent=2, sort_keys=True).encode("utf-8"))


def format_summary(summary: Dict) -> str:
    """A few human lines for the end of the command."""
    rows = summary["rows"]
    lines = [
        f"beam_pipeline preprocess: done in {summary['wall_seconds']:.1f} s",
        f"  rows read {rows['read']:,}: "
        + ", ".join(f"{s} {rows['written'][s]:,}" for s in SPLITS) + " written",
    ]
    for name, s in summary["statistics"]["numeric"].items():
        if s["count"]:
            lines.append(f"  {name}: mean {s['mean']:.4g}, std {s['variance'] ** 0.5:.4g}, "
                         f"min {s['min']:.4g}, max {s['max']:.4g}, missing {s['missing']:,}")
        else:
            lines.append(f"  {name}: no values, missing {s['missing']:,}")
    for name, v in summary["statistics"]["vocabularies"].items():
        top = ", ".join(f"{e['token']!r}" + (f" {e['count']:,}" if "count" in e else "")
                        for e in v["top"][:3])
        lines.append(f"  vocabulary {name}: {v['size']:,} entries (top: {top})")
    lines.append(f"  outputs under {summary['output']} (summary: {layout.RUN_SUMMARY})")
    return "\n".join(lines)
