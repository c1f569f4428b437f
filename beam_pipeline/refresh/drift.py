"""The drift gate: a new run's statistics against the published run's, before publishing.

Checks (a value beyond its threshold is a breach, and a breach blocks the publish):

    mean_shift           per numeric column: |new mean - old mean| / old std
    variance_ratio       per numeric column: max(new var / old var, old var / new var)
    missing_rate_change  per numeric column: |new - old| of missing / (count + missing)
    vocabulary_churn     per vocabulary: the share of train values whose token moved into
                         or out of the vocabulary between the runs: max(new values the new
                         vocabulary keeps and the old one maps to OOV, old values the old
                         vocabulary kept and the new one maps to OOV), within [0, 1]; 0 for
                         identical data, whatever the vocabulary's own OOV share
    top_k_overlap        per vocabulary: |top-k old & top-k new| / k, k = min(10, sizes);
                         the one check whose threshold is a minimum
    row_count_change     the run ("rows"): |new train rows - old| / old

Thresholds come from the config's `refresh.drift` section (see `parse_thresholds`).
"""

import json
import math
from typing import Callable, Dict, List, Mapping, Optional, Union

EXIT_DRIFT = 4  # the CLI's exit code for a refresh the gate blocked

DEFAULTS = {
    "mean_shift": 0.5,
    "variance_ratio": 2.0,
    "missing_rate_change": 0.05,
    "vocabulary_churn": 0.10,
    "top_k_overlap": 0.5,
    "row_count_change": 0.5,
}
NUMERIC_CHECKS = ("mean_shift", "variance_ratio", "missing_rate_change")
VOCABULARY_CHECKS = ("vocabulary_churn", "top_k_overlap")
MINIMUM_CHECKS = ("top_k_overlap",)  # breached when the value is BELOW the threshold
TOP_K = 10
ROWS = "rows"  # the feature name of the run-level check

# Valid threshold ranges: a ratio is >= 1 by construction, shares are within [0, 1], so a
# threshold outside would breach (or never breach) on every run.
_RANGES = {
    "mean_shift": (0.0, math.inf, "a non-negative number"),
    "variance_ratio": (1.0, math.inf, "a number >= 1"),
    "missing_rate_change": (0.0, 1.0, "a number between 0 and 1"),
    "vocabulary_churn": (0.0, 1.0, "a number between 0 and 1"),
    "top_k_overlap": (0.0, 1.0, "a number between 0 and 1"),
    "row_count_change": (0.0, math.inf, "a non-negative number"),
}

Vocabularies = Union[Mapping[str, List[Dict]], Callable[[str], Optional[List[Dict]]], None]


# ---- thresholds -----------------------------------------------------------------------

def _mapping(value, key: str) -> Dict:
    # YAML's "defaults:" with nothing under it is None: the same as leaving it out.
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{key}: expected a mapping, got {type(value).__name__}")
    return dict(value)


def _checks(raw, key: str) -> Dict[str, Optional[float]]:
    out = {}
    for name, value in _mapping(raw, key).items():
        if name not in DEFAULTS:
            raise ValueError(f"{key}.{name}: unknown check (known: {', '.join(DEFAULTS)})")
        if value is None:
            out[name] = None  # null turns the check off
            continue
        low, high, expected = _RANGES[name]
        # bool is an int in Python; "mean_shift: yes" is a typo, not 1.0.
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or math.isnan(value) or not low <= value <= high):
            raise ValueError(f"{key}.{name}: expected {expected}, got {value!r}")
        out[name] = float(value)
    return out


def parse_thresholds(raw) -> Dict:
    """Validates the `drift` config mapping and merges it over `DEFAULTS`.

    Takes `{defaults: {check: value}, features: {feature_or_column: {check: value}}}`,
    every part optional, a null value turning a check off. Returns
    `{"defaults": {every check: float or None}, "features": {name: {check: float or None}}}`
    (only the overrides under "features"). Raises ValueError naming the key, e.g.
    `drift.features.fare.mean_shift: expected a non-negative number, got -1`.
    Idempotent: its result is a valid input.
    """
    section = _mapping(raw, "drift")
    unknown = sorted(set(section) - {"defaults", "features"})
    if unknown:
        raise ValueError(f"drift.{unknown[0]}: unknown key (known: defaults, features)")
    defaults = dict(DEFAULTS)
    defaults.update(_checks(section.get("defaults"), "drift.defaults"))
    features = {}
    for name, checks in _mapping(section.get("features"), "drift.features").items():
        features[str(name)] = _checks(checks, f"drift.features.{name}")
    return {"defaults": defaults, "features": features}


def _threshold(thresholds: Dict, feature: str, check: str) -> Optional[float]:
    overrides = thresholds["features"].get(feature, {})
    return overrides[check] if check in overrides else thresholds["defaults"][check]


# ---- the measures -----------------------------------------------------------------------

def mean_shift(old: Dict, new: Dict) -> Optional[float]:
    """|new mean - old mean| / old std from two numeric statistics dicts; None without values.

    A constant old column (std 0) gives inf if the mean moved, 0 if not.
    """
    if old.get("mean") is None or new.get("mean") is None:
        return None
    diff = abs(new["mean"] - old["mean"])
    std = math.sqrt(old["variance"] or 0.0)
    if std == 0:
        return math.inf if diff > 0 else 0.0
    return diff / std


def variance_ratio(old: Dict, new: Dict) -> Optional[float]:
    """max(new/old, old/new) of the variances (>= 1); 1 if both are 0, inf if one is."""
    if old.get("variance") is None or new.get("variance") is None:
        return None
    a, b = old["variance"], new["variance"]
    if a == 0 or b == 0:
        return 1.0 if a == b else math.inf
    return max(a / b, b / a)


def _missing_rate(stats: Dict) -> float:
    total = (stats.get("count") or 0) + (stats.get("missing") or 0)
    return stats.get("missing", 0) / total if total else 0.0


def missing_rate_change(old: Dict, new: Dict) -> float:
    """|new - old| of missing / (count + missing) (a column with no rows counts as 0)."""
    return abs(_missing_rate(new) - _missing_rate(old))


def _moved_share(entries: List[Dict], other_tokens, coverage: Optional[float]) -> float:
    """Share of a run's train values kept by its vocabulary (`entries`) whose token is not
    in `other_tokens`: coverage * (their count / kept count)."""
    kept = sum(e["count"] for e in entries)
    if not kept:
        return 0.0
    moved = sum(e["count"] for e in entries if e["token"] not in other_tokens)
    return (1.0 if coverage is None else coverage) * moved / kept


def vocabulary_churn(old_entries: List[Dict], new_entries: List[Dict],
                     new_coverage: Optional[float] = None,
                     old_coverage: Optional[float] = None) -> Optional[float]:
    """The share of train values whose token entered or left the vocabulary between runs.

    Takes the full `{"token", "count"}` entries of both runs and each run's coverage (kept
    count / all its train values; None if unknown: taken as 1). Returns the larger of

      added:   new train values the NEW vocabulary keeps and the OLD one maps to OOV
               (new coverage * new count of tokens not in the old vocabulary / kept), and
      dropped: old train values the OLD vocabulary kept and the NEW one maps to OOV
               (the same with the runs swapped),

    so a new dominant category and a vanished one both count, and identical (or
    reshuffled) data gives exactly 0. `added` is the old vocabulary's OOV share of the new
    values minus the new vocabulary's own: each run's own OOV values (a capped vocabulary's
    tail) are not churn; the tail's tokens are unknown, so a tail value the old vocabulary
    did know still counts as OOV under it (an upper bound, never below the true change).
    Returns None if the new counts are unknown (a user's preprocessing_fn); without old
    counts, `added` alone.
    """
    if any("count" not in e for e in new_entries):
        return None  # a vocabulary written without counts (a user's preprocessing_fn)
    old_tokens = {e["token"] for e in old_entries}
    new_tokens = {e["token"] for e in new_entries}
    added = _moved_share(new_entries, old_tokens, new_coverage)
    dropped = (0.0 if any("count" not in e for e in old_entries)
               else _moved_share(old_entries, new_tokens, old_coverage))
    return min(1.0, max(0.0, added, dropped))


def top_k_overlap(old_entries: List[Dict], new_entries: List[Dict], k: int = TOP_K) -> float:
    """|first k old tokens & first k new tokens| / k, k = min(k, both sizes).

    Entries are in vocabulary order (most frequent first). Two empty vocabularies give 1,
    one empty vocabulary 0.
    """
    k = min(k, len(old_entries), len(new_entries))
    if k == 0:
        return 1.0 if len(old_entries) == len(new_entries) else 0.0
    old_top = {e["token"] for e in old_entries[:k]}
    new_top = {e["token"] for e in new_entries[:k]}
    return len(old_top & new_top) / k


def _train_rows(summary: Dict) -> int:
    rows = summary.get("rows", {})
    return (rows.get("split") or rows.get("written") or {}).get("train", 0)


def row_count_change(old: Dict, new: Dict) -> float:
    """|new train rows - old| / old from two run summaries; inf if old had none and new has."""
    a, b = _train_rows(old), _train_rows(new)
    if a == 0:
        return math.inf if b else 0.0
    return abs(b - a) / a


# ---- the report -------------------------------------------------------------------------

def _entries(source: Vocabularies, name: str) -> Optional[List[Dict]]:
    if source is None:
        return None
    if callable(source):
        return source(name)
    return source.get(name)


def _check(feature: str, check: str, value: Optional[float], threshold: Optional[float],
           note: str = "") -> Dict:
    if value is None or threshold is None:
        breached = False  # not measurable, or turned off
    elif check in MINIMUM_CHECKS:
        breached = value < threshold
    else:
        breached = value > threshold
    out = {"feature": feature, "check": check, "value": value, "threshold": threshold,
           "breached": breached}
    if note:
        out["note"] = note
    return out


def _presence(kind: str, old: Mapping, new: Mapping) -> List[Dict]:
    """"added"/"removed" entries for names in only one run (reported, never a breach)."""
    out = []
    for name in sorted(set(new) - set(old)):
        out.append({"feature": name, "check": "added", "kind": kind, "value": None,
                    "threshold": None, "breached": False})
    for name in sorted(set(old) - set(new)):
        out.append({"feature": name, "check": "removed", "kind": kind, "value": None,
                    "threshold": None, "breached": False})
    return out


def compare(old_summary: Dict, new_summary: Dict, old_vocabularies: Vocabularies,
            new_vocabularies: Vocabularies, thresholds: Optional[Dict] = None) -> Dict:
    """The drift report of `new_summary` against `old_summary` (two run_summary.json dicts).

    The vocabularies are the full `{"token", "count"}` lists per vocabulary name, as a dict
    or a callable name -> list (None: not available, the checks then report no value).
    `thresholds` is `parse_thresholds`'s result (None: the defaults). Returns
    `{"breached": bool, "checks": [{"feature", "check", "value", "threshold", "breached",
    ["note"]}, ...], "summary": {counts}, "thresholds": {...}}`; a threshold of None means
    the check is off, a value of None that it could not be measured.
    """
    thresholds = parse_thresholds(thresholds)
    old_stats, new_stats = old_summary.get("statistics", {}), new_summary.get("statistics", {})
    old_numeric, new_numeric = old_stats.get("numeric", {}), new_stats.get("numeric", {})
    old_vocab, new_vocab = old_stats.get("vocabularies", {}), new_stats.get("vocabularies", {})
    checks = [_check(ROWS, "row_count_change", row_count_change(old_summary, new_summary),
                     _threshold(thresholds, ROWS, "row_count_change"))]

    measures = {"mean_shift": mean_shift, "variance_ratio": variance_ratio,
                "missing_rate_change": missing_rate_change}
    for column in sorted(set(old_numeric) & set(new_numeric)):
        old, new = old_numeric[column], new_numeric[column]
        for name in NUMERIC_CHECKS:
            value = measures[name](old, new)
            # Values in only one run show up as missing_rate_change; mean/variance can't.
            checks.append(_check(column, name, value, _threshold(thresholds, column, name),
                                 "no values in one run" if value is None else ""))

    for name in sorted(set(old_vocab) & set(new_vocab)):
        old_entries = _entries(old_vocabularies, name)
        new_entries = _entries(new_vocabularies, name)
        if old_entries is None or new_entries is None:
            # E.g. a user's preprocessing_fn vocabulary: reported, not gated.
            for check in VOCABULARY_CHECKS:
                checks.append(_check(name, check, None, _threshold(thresholds, name, check),
                                     "full vocabulary not available"))
            continue
        churn = vocabulary_churn(old_entries, new_entries, new_vocab[name].get("coverage"),
                                 old_vocab[name].get("coverage"))
        checks.append(_check(name, "vocabulary_churn", churn,
                             _threshold(thresholds, name, "vocabulary_churn"),
                             "vocabulary without counts" if churn is None else ""))
        checks.append(_check(name, "top_k_overlap", top_k_overlap(old_entries, new_entries),
                             _threshold(thresholds, name, "top_k_overlap")))

    checks += _presence("numeric", old_numeric, new_numeric)
    checks += _presence("vocabulary", old_vocab, new_vocab)
    measured = [c for c in checks if c["check"] in DEFAULTS]
    breached = [c for c in checks if c["breached"]]
    return {
        "breached": bool(breached),
        "checks": checks,
        "summary": {
            "checks": len(measured),
            "breached": len(breached),
            "disabled": sum(c["threshold"] is None for c in measured),
            "not_measured": sum(c["value"] is None for c in measured),
            "added": sum(c["check"] == "added" for c in checks),
            "removed": sum(c["check"] == "removed" for c in checks),
        },
        "thresholds": thresholds,
    }


def _number(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def format_report(report: Dict) -> str:
    """Human lines for the log: the verdict, then breaches, then the other checks.

    Takes `compare`'s report; returns the text (no trailing newline).
    """
    s = report["summary"]
    lines = [f"drift gate: {'BREACHED' if report['breached'] else 'passed'} "
             f"({s['breached']} of {s['checks']} checks breached"
             + (f", {s['disabled']} off" if s["disabled"] else "") + ")"]
    # Breaches first: they are why the run was not published.
    ordered = sorted(report["checks"], key=lambda c: not c["breached"])
    for c in ordered:
        if c["check"] in ("added", "removed"):
            lines.append(f"  {c['check']:<8} {c['kind']} {c['feature']}")
            continue
        if c["threshold"] is None:
            status, limit = "off", ""
        else:
            status = "BREACH" if c["breached"] else "ok"
            limit = (f" (minimum {_number(c['threshold'])})" if c["check"] in MINIMUM_CHECKS
                     else f" (maximum {_number(c['threshold'])})")
        note = f" [{c['note']}]" if c.get("note") else ""
        lines.append(f"  {status:<8} {c['feature']:<20} {c['check']:<20} "
                     f"{_number(c['value'])}{limit}{note}")
    return "\n".join(lines)


REPORT_JSON = "drift.json"
REPORT_TEXT = "drift.txt"


def write_report(report: Dict, directory: str) -> List[str]:
    """Writes `drift.json` and `drift.txt` (format_report) into `directory` (local or gs://).

    Returns the two paths. inf values are written as JSON `Infinity`, as in run_summary.json.
    """
    # Imported here: a config with a refresh.drift section parses its thresholds with this
    # module, and loading a config must not cost Beam's import.
    from apache_beam.io.filesystem import CompressionTypes  # pylint: disable=import-outside-toplevel
    from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel
    paths = []
    for name, data in ((REPORT_JSON, json.dumps(report, indent=2, sort_keys=True)),
                       (REPORT_TEXT, format_report(report) + "\n")):
        path = FileSystems.join(directory, name)
        # UNCOMPRESSED: AUTO would pick a codec from the extension; these must stay text.
        with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            f.write(data.encode("utf-8"))
        paths.append(path)
    return paths
