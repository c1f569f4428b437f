"""beam_pipeline.refresh.drift: the drift gate's checks, thresholds and report files.

Fast: no pipelines. Run summaries are built here from synthetic data with numpy, so the
expected values are computed independently of the module's formulas.
"""

import json
import math
import os
from collections import Counter

import numpy as np
import pytest

from beam_pipeline.refresh import drift

N = 5000
# object dtype: a fixed-width string array would cut longer tokens assigned later.
TOKENS = np.array([f"t{i:02d}" for i in range(12)], dtype=object)
# Weights 12..1: far enough apart that a resample keeps the order of the entries.
PROBS = np.arange(12, 0, -1) / np.arange(12, 0, -1).sum()


def _numeric(values):
    """Numeric statistics of one train column like the job's (NaN = missing row)."""
    present = values[~np.isnan(values)]
    return {"count": int(present.size), "missing": int(np.isnan(values).sum()),
            "mean": float(np.mean(present)) if present.size else None,
            "variance": float(np.var(present)) if present.size else None,
            "min": float(present.min()) if present.size else None,
            "max": float(present.max()) if present.size else None, "quantiles": {}}


def _entries(values, max_tokens=None):
    """Full vocabulary entries, most frequent first, optionally cut at `max_tokens`."""
    tokens, counts = np.unique(values, return_counts=True)
    order = sorted(zip(tokens.tolist(), counts.tolist()), key=lambda tc: (-tc[1], tc[0]))
    return [{"token": t, "count": c} for t, c in order[:max_tokens]]


def _run(numeric=None, categorical=None, train_rows=N, max_tokens=None):
    """(summary, full vocabularies) of a run from numeric and categorical train columns."""
    vocabularies, summaries = {}, {}
    for name, values in (categorical or {}).items():
        entries = _entries(values, max_tokens)
        vocabularies[name] = entries
        kept = sum(e["count"] for e in entries)
        summaries[name] = {"size": len(entries), "top": entries[:10],
                           "coverage": kept / values.size, "oov_rate": 1 - kept / values.size}
    summary = {
        "rows": {"read": train_rows, "rejected": 0, "rejected_by_reason": {},
                 "split": {"train": train_rows, "eval": 0},
                 "written": {"train": train_rows, "eval": 0}},
        "statistics": {"split": "train",
                       "numeric": {n: _numeric(v) for n, v in (numeric or {}).items()},
                       "vocabularies": summaries},
    }
    return summary, vocabularies


def _normal(seed, mean=3.0, std=2.0, missing=0.02):
    rng = np.random.RandomState(seed)
    values = rng.normal(mean, std, N)
    values[rng.random_sample(N) < missing] = np.nan
    return values


def _categories(seed, size=N):
    return np.random.RandomState(seed).choice(TOKENS, size=size, p=PROBS)


def _compare(old, new, thresholds=None):
    return drift.compare(old[0], new[0], old[1], new[1], drift.parse_thresholds(thresholds or {}))


def _check(report, feature, check):
    (found,) = [c for c in report["checks"] if c["feature"] == feature and c["check"] == check]
    return found


def _breached(report):
    return {(c["feature"], c["check"]) for c in report["checks"] if c["breached"]}


def test_a_clean_resample_passes():
    old = _run({"fare": _normal(0)}, {"city": _categories(0)})
    new = _run({"fare": _normal(1)}, {"city": _categories(1)})
    report = _compare(old, new)
    assert not report["breached"], drift.format_report(report)
    assert {c["check"] for c in report["checks"]} == set(drift.DEFAULTS)
    assert report["summary"]["checks"] == 6 and report["summary"]["breached"] == 0
    assert _check(report, "city", "vocabulary_churn")["value"] == 0.0
    assert _check(report, "city", "top_k_overlap")["value"] == 1.0


def test_a_mean_shifted_by_one_std_breaches_mean_shift():
    old_values, new_values = _normal(0), _normal(1, mean=3.0 + 2.0)
    report = _compare(_run({"fare": old_values}), _run({"fare": new_values}))
    old_present, new_present = old_values[~np.isnan(old_values)], new_values[~np.isnan(new_values)]
    expected = abs(new_present.mean() - old_present.mean()) / old_present.std()
    check = _check(report, "fare", "mean_shift")
    assert check["value"] == pytest.approx(expected) and 0.9 < expected < 1.1
    assert check["threshold"] == 0.5 and check["breached"]
    assert _breached(report) == {("fare", "mean_shift")}
    text = drift.format_report(report)
    assert text.startswith("drift gate: BREACHED")
    # Breaches first, naming the feature and its value.
    assert "BREACH" in text.splitlines()[1] and "fare" in text.splitlines()[1]
    assert f"{expected:.4g}" in text.splitlines()[1]


def test_a_doubled_spread_breaches_variance_ratio():
    old_values, new_values = _normal(0), _normal(1, std=4.0)
    report = _compare(_run({"fare": old_values}), _run({"fare": new_values}))
    expected = np.nanvar(new_values) / np.nanvar(old_values)
    check = _check(report, "fare", "variance_ratio")
    assert check["value"] == pytest.approx(expected) and 3.5 < expected < 4.5
    assert _breached(report) == {("fare", "variance_ratio")}
    # The ratio is symmetric: a halved spread breaches the same way.
    back = _compare(_run({"fare": new_values}), _run({"fare": old_values}))
    assert _check(back, "fare", "variance_ratio")["value"] == pytest.approx(expected)


def test_missing_rate_change():
    old_values, new_values = _normal(0, missing=0.02), _normal(1, missing=0.2)
    report = _compare(_run({"fare": old_values}), _run({"fare": new_values}))
    expected = abs(np.isnan(new_values).mean() - np.isnan(old_values).mean())
    check = _check(report, "fare", "missing_rate_change")
    assert check["value"] == pytest.approx(expected) and check["breached"]


def test_constant_columns_and_zero_variances():
    const = np.full(N, 7.0)
    moved = _compare(_run({"c": const}), _run({"c": const + 1}))
    assert _check(moved, "c", "mean_shift")["value"] == math.inf
    assert _check(moved, "c", "mean_shift")["breached"]
    assert _check(moved, "c", "variance_ratio")["value"] == 1.0  # 0 and 0
    same = _compare(_run({"c": const}), _run({"c": const}))
    assert not same["breached"] and _check(same, "c", "mean_shift")["value"] == 0.0
    spread = _compare(_run({"c": const}), _run({"c": _normal(0, mean=7.0, missing=0)}))
    assert _check(spread, "c", "variance_ratio")["value"] == math.inf
    # A column with no values in one run: not measurable, the missing rate shows it.
    empty = _compare(_run({"c": const}), _run({"c": np.full(N, np.nan)}))
    assert _check(empty, "c", "mean_shift")["value"] is None
    assert _check(empty, "c", "missing_rate_change")["value"] == 1.0
    assert _breached(empty) == {("c", "missing_rate_change")}


def test_new_dominant_categories_breach_churn_and_top_k_overlap():
    old_values = _categories(0)
    rng = np.random.RandomState(1)
    new_values = _categories(1)
    # A new source sends six new codes for 70% of the rows.
    replaced = rng.random_sample(N) < 0.7
    new_values[replaced] = rng.choice([f"z{i}" for i in range(6)], size=int(replaced.sum()))
    report = _compare(_run(categorical={"city": old_values}),
                      _run(categorical={"city": new_values}))
    churn = _check(report, "city", "vocabulary_churn")
    # Share of new values the old vocabulary (every old token) does not know.
    assert churn["value"] == pytest.approx(np.mean(~np.isin(new_values, old_values)))
    assert churn["breached"]
    # New top 10: the six z codes and the old t00..t03; old top 10: t00..t09.
    overlap = _check(report, "city", "top_k_overlap")
    assert overlap["value"] == pytest.approx(4 / 10) and overlap["breached"]
    assert _breached(report) == {("city", "vocabulary_churn"), ("city", "top_k_overlap")}


def test_one_new_dominant_category_breaches_churn_and_costs_one_top_k_slot():
    old_values, new_values = _categories(0), _categories(1)
    new_values[np.random.RandomState(2).random_sample(N) < 0.6] = "brand_new"
    report = _compare(_run(categorical={"city": old_values}),
                      _run(categorical={"city": new_values}))
    churn = _check(report, "city", "vocabulary_churn")
    assert churn["value"] == pytest.approx(np.mean(new_values == "brand_new"))
    assert churn["breached"]
    assert _check(report, "city", "top_k_overlap")["value"] == pytest.approx(9 / 10)


def _zipf(seed, size=100_000, a=1.2):
    """Zipf-distributed category tokens: a long tail, so a capped vocabulary covers ~64%."""
    return np.array([f"z{v}" for v in np.random.RandomState(seed).zipf(a, size)], dtype=object)


def _reference_churn(old_values, new_values, max_tokens):
    """Counter reference: max(share of new values kept by the new top-k and not in the old
    top-k, share of old values kept by the old top-k and not in the new top-k)."""
    def top(values):
        counts = Counter(values.tolist())
        return counts, {t for t, _ in sorted(counts.items(), key=lambda tc: (-tc[1], tc[0]))
                        [:max_tokens]}
    (old_counts, old_top), (new_counts, new_top) = top(old_values), top(new_values)
    added = sum(new_counts[t] for t in new_top - old_top) / len(new_values)
    dropped = sum(old_counts[t] for t in old_top - new_top) / len(old_values)
    return max(added, dropped)


def _old_churn(old_values, new_values, max_tokens):
    """What the gate measured before: the new values the old top-k OR the new top-k maps
    to OOV (the new run's own OOV share included)."""
    def top(values):
        counts = Counter(values.tolist())
        return {t for t, _ in sorted(counts.items(), key=lambda tc: (-tc[1], tc[0]))[:max_tokens]}
    old_top, new_top = top(old_values), top(new_values)
    return float(np.mean([v not in old_top or v not in new_top for v in new_values.tolist()]))


@pytest.mark.parametrize("max_tokens", [None, 6])
def test_identical_runs_give_zero_for_every_check(max_tokens):
    values = _categories(0)
    run = _run({"fare": _normal(0)}, {"city": values}, max_tokens=max_tokens)
    report = _compare(run, run)
    assert not report["breached"], drift.format_report(report)
    neutral = {"mean_shift": 0.0, "missing_rate_change": 0.0, "vocabulary_churn": 0.0,
               "row_count_change": 0.0, "variance_ratio": 1.0, "top_k_overlap": 1.0}
    for check in report["checks"]:
        assert check["value"] == neutral[check["check"]], check
    if max_tokens:
        assert run[0]["statistics"]["vocabularies"]["city"]["coverage"] < 0.9


def test_a_capped_vocabulary_on_the_same_data_reshuffled_or_resampled_passes():
    old_values = _zipf(0)
    old = _run(categorical={"city": old_values}, train_rows=old_values.size, max_tokens=100)
    coverage = old[0]["statistics"]["vocabularies"]["city"]["coverage"]
    assert 0.5 < coverage < 0.8  # 100 tokens leave a third of the values OOV in either run
    # The same values reshuffled (another shard order): exactly no churn.
    shuffled = np.random.RandomState(1).permutation(old_values)
    same = _compare(old, _run(categorical={"city": shuffled}, train_rows=shuffled.size,
                              max_tokens=100))
    assert _check(same, "city", "vocabulary_churn")["value"] == 0.0
    assert not same["breached"], drift.format_report(same)
    # A new sample of the same distribution: only tokens near the cut swap places.
    new_values = _zipf(2)
    report = _compare(old, _run(categorical={"city": new_values}, train_rows=new_values.size,
                                max_tokens=100))
    churn = _check(report, "city", "vocabulary_churn")
    assert churn["value"] == pytest.approx(_reference_churn(old_values, new_values, 100))
    assert 0 < churn["value"] < 0.02 and not churn["breached"], churn
    assert not report["breached"], drift.format_report(report)
    # The old measure counted the runs' own OOV tails and breached on both.
    assert _old_churn(old_values, shuffled, 100) > drift.DEFAULTS["vocabulary_churn"]
    assert _old_churn(old_values, new_values, 100) > drift.DEFAULTS["vocabulary_churn"]


def test_a_new_dominant_category_breaches_a_capped_vocabulary():
    old_values, new_values = _zipf(0), _zipf(2)
    new_values[np.random.RandomState(3).random_sample(new_values.size) < 0.2] = "brand_new"
    old = _run(categorical={"city": old_values}, train_rows=old_values.size, max_tokens=100)
    new = _run(categorical={"city": new_values}, train_rows=new_values.size, max_tokens=100)
    churn = _check(_compare(old, new), "city", "vocabulary_churn")
    assert churn["value"] == pytest.approx(_reference_churn(old_values, new_values, 100))
    assert churn["value"] == pytest.approx(np.mean(new_values == "brand_new"), abs=0.02)
    assert churn["breached"]


def test_a_vanished_dominant_category_breaches_churn():
    # The other direction: t00 (a sixth of the old values) no longer arrives.
    old_values, new_values = _categories(0), _categories(1)
    new_values = new_values[new_values != "t00"]
    report = _compare(_run(categorical={"city": old_values}),
                      _run(categorical={"city": new_values}, train_rows=new_values.size))
    churn = _check(report, "city", "vocabulary_churn")
    assert churn["value"] == pytest.approx(np.mean(old_values == "t00")) and churn["breached"]


def test_churn_leaves_each_runs_own_oov_values_out():
    # Both vocabularies cut at 6 entries (max_tokens): values beyond are OOV in either run.
    old_values, new_values = _categories(0), _categories(1)
    new_values[np.random.RandomState(2).random_sample(N) < 0.3] = "brand_new"
    old = _run(categorical={"city": old_values}, max_tokens=6)
    new = _run(categorical={"city": new_values}, max_tokens=6)
    report = _compare(old, new)
    old_kept = [e["token"] for e in old[1]["city"]]
    new_kept = [e["token"] for e in new[1]["city"]]
    assert "brand_new" in new_kept and new[0]["statistics"]["vocabularies"]["city"]["coverage"] < 1
    # Churn: new values kept by the new vocabulary but not the old, or old values kept by
    # the old vocabulary but not the new (t05 made room for brand_new).
    added = np.mean(np.isin(new_values, new_kept) & ~np.isin(new_values, old_kept))
    dropped = np.mean(np.isin(old_values, old_kept) & ~np.isin(old_values, new_kept))
    value = _check(report, "city", "vocabulary_churn")["value"]
    assert value == pytest.approx(max(added, dropped))
    assert value == pytest.approx(np.mean(new_values == "brand_new"))
    assert value == pytest.approx(_reference_churn(old_values, new_values, 6))


def test_vocabularies_given_by_a_callable_or_missing():
    old, new = _run(categorical={"city": _categories(0)}), _run(categorical={"city": _categories(1)})
    report = drift.compare(old[0], new[0], old[1].get, lambda name: new[1][name])
    assert _check(report, "city", "vocabulary_churn")["value"] == 0.0
    unknown = drift.compare(old[0], new[0], {}, new[1])
    check = _check(unknown, "city", "vocabulary_churn")
    assert check["value"] is None and not check["breached"] and "not available" in check["note"]
    assert unknown["summary"]["not_measured"] == 2


def test_per_feature_override_and_null_disabled_checks():
    shifted = {"fare": _normal(1, mean=5.0), "tip": _normal(2, mean=5.0)}
    old, new = _run({"fare": _normal(0), "tip": _normal(3)}), _run(shifted)
    report = _compare(old, new, {"features": {"fare": {"mean_shift": 2.0}}})
    assert _check(report, "fare", "mean_shift")["threshold"] == 2.0
    assert _breached(report) == {("tip", "mean_shift")}

    off = _compare(old, new, {"features": {"tip": {"mean_shift": None}}})
    check = _check(off, "tip", "mean_shift")
    assert check["threshold"] is None and not check["breached"] and check["value"] > 0.5
    assert _breached(off) == {("fare", "mean_shift")}
    assert "off" in drift.format_report(off)

    # Off by default, on again for one column.
    mixed = _compare(old, new, {"defaults": {"mean_shift": None},
                                "features": {"fare": {"mean_shift": 0.5}}})
    assert _breached(mixed) == {("fare", "mean_shift")}
    assert mixed["summary"]["disabled"] == 1


def test_row_count_change():
    old = _run({"fare": _normal(0)}, train_rows=1000)
    report = _compare(old, _run({"fare": _normal(1)}, train_rows=400))
    assert _check(report, "rows", "row_count_change")["value"] == pytest.approx(0.6)
    assert _breached(report) == {("rows", "row_count_change")}
    fine = _compare(old, _run({"fare": _normal(1)}, train_rows=1300))
    assert _check(fine, "rows", "row_count_change")["value"] == pytest.approx(0.3)
    assert not fine["breached"]
    assert not _compare(old, _run({"fare": _normal(1)}, train_rows=400),
                        {"features": {"rows": {"row_count_change": None}}})["breached"]


def test_added_and_removed_features_are_listed_without_breaching():
    old = _run({"fare": _normal(0), "tip": _normal(1)}, {"city": _categories(0)})
    new = _run({"fare": _normal(2), "distance": _normal(3)}, {"zone": _categories(1)})
    report = _compare(old, new)
    listed = {(c["feature"], c["check"], c["kind"]) for c in report["checks"]
              if c["check"] in ("added", "removed")}
    assert listed == {("distance", "added", "numeric"), ("tip", "removed", "numeric"),
                      ("zone", "added", "vocabulary"), ("city", "removed", "vocabulary")}
    assert not report["breached"]
    assert report["summary"]["added"] == 2 and report["summary"]["removed"] == 2
    assert "added    numeric distance" in drift.format_report(report)


def test_parse_thresholds_merges_over_the_defaults():
    assert drift.parse_thresholds({}) == {"defaults": drift.DEFAULTS, "features": {}}
    assert drift.parse_thresholds(None) == drift.parse_thresholds({"defaults": None})
    parsed = drift.parse_thresholds({"defaults": {"mean_shift": 1}, "features": {
        "fare": {"variance_ratio": 3, "top_k_overlap": None}}})
    assert parsed["defaults"]["mean_shift"] == 1.0
    assert parsed["defaults"]["vocabulary_churn"] == drift.DEFAULTS["vocabulary_churn"]
    assert parsed["features"] == {"fare": {"variance_ratio": 3.0, "top_k_overlap": None}}
    assert drift.parse_thresholds(parsed) == parsed


@pytest.mark.parametrize("raw, message", [
    ({"features": {"fare": {"mean_shift": -1}}},
     "drift.features.fare.mean_shift: expected a non-negative number"),
    ({"features": {"fare": {"mean_shift": "high"}}}, "drift.features.fare.mean_shift:"),
    ({"defaults": {"row_count_change": True}}, "drift.defaults.row_count_change:"),
    ({"defaults": {"mean_shift": float("nan")}}, "drift.defaults.mean_shift:"),
    ({"defaults": {"top_k_overlap": 1.5}},
     "drift.defaults.top_k_overlap: expected a number between 0 and 1"),
    ({"defaults": {"variance_ratio": 0.5}}, "drift.defaults.variance_ratio: expected a number >= 1"),
    ({"defaults": {"mean_shfit": 1}}, "drift.defaults.mean_shfit: unknown check"),
    ({"features": {"fare": 3}}, "drift.features.fare: expected a mapping"),
    ({"features": ["fare"]}, "drift.features: expected a mapping"),
    ({"thresholds": {}}, "drift.thresholds: unknown key"),
    ([1], "drift: expected a mapping"),
])
def test_parse_thresholds_errors_name_the_key(raw, message):
    with pytest.raises(ValueError) as e:
        drift.parse_thresholds(raw)
    assert str(e.value).startswith(message), str(e.value)


def test_write_report_writes_json_and_text(tmp_path):
    const = np.full(N, 7.0)
    report = _compare(_run({"c": const}, {"city": _categories(0)}),
                      _run({"c": const + 1}, {"city": _categories(1)}))
    directory = str(tmp_path / "run")
    paths = drift.write_report(report, directory)
    assert paths == [os.path.join(directory, "drift.json"), os.path.join(directory, "drift.txt")]
    with open(paths[0]) as f:
        written = json.load(f)
    assert written == report  # inf round-trips (as JSON Infinity, like run_summary.json)
    with open(paths[1]) as f:
        text = f.read()
    assert text == drift.format_report(report) + "\n"
    assert "BREACH" in text and "c" in text and "inf" in text


def test_exit_code():
    assert drift.EXIT_DRIFT == 4
