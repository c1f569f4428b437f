"""A statistic learned from no data is an error, not a default.

Keras's `adapt()` refuses an empty dataset ("adapt() received an empty iterable"), but
tf.Transform learns from nothing without a word: a header-only train CSV gave a mean and
variance of 0 and a transform that maps [0, 1, 2] to [0, 1e7, 2e7]. So when the train
split (the analyzed split) holds no value of a column that a feature learns from (its
vocabulary, mean and variance, min and max, bin boundaries, a learned imputation:
`Feature.learns`), the run fails with `NothingToLearnFrom`, a config error (exit code 2)
that names the feature, its column and the split. A feature whose config gives what it
would learn (a discretization's `bin_boundaries`, `impute: constant`) does not count.

The counts come from the train statistics the job computes anyway (`job.statistics`,
`present` and `rows`), so the check runs after the pipeline; `job.preprocess` then
removes the transform graph and the data before anything is published (as the
rejected-records gate does), and the run summary says why.
"""

from typing import Dict, List, Optional, Tuple

from beam_pipeline.config import Config, ConfigError

SPLIT = "train"  # the split tf.Transform analyzes


class NothingToLearnFrom(ConfigError):
    """A feature learns from its column's train-split values, and the split has none."""


def _learners(config: Config) -> List:
    """The config's features (and label) that learn something from their column."""
    if config.preprocessing_fn:
        return []  # the user's own graph: what it learns is not known here
    parts = list(config.features) + ([config.label] if config.label else [])
    return [f for f in parts if f.learns()]


def columns(config: Config) -> List[str]:
    """The columns whose train-split rows with a value the statistics count."""
    return sorted({f.column for f in _learners(config)})


def _remedy(feature) -> str:
    """What the config could give instead of the learned statistic, if anything."""
    options = []
    if type(feature).__name__ == "Discretization" and feature.bin_boundaries is None:
        options.append("bin_boundaries")
    if feature.imputes_from_data():
        options.append("impute: constant with a fill_value")
    return f", or give {' and '.join(options)} in the config" if options else ""


def empty(config: Config, statistics: Dict) -> List[Tuple[object, int]]:
    """(feature, train rows) of each feature whose column has no value in the train split.

    A label with `fill_value` has a class on every row (the fill stands in for a missing
    label), so it is empty only when the split has no row."""
    present = statistics.get("present", {})
    rows = statistics.get("rows", 0)
    found = []
    for feature in _learners(config):
        if feature is config.label and feature.fill_value is not None:
            count = rows
        else:
            count = present.get(feature.column, 0)
        if count == 0:
            found.append((feature, rows))
    return found


def message(config: Config, found: List[Tuple[object, int]],
            out: Optional[str] = None) -> str:
    """The failure message: one line per feature, naming it, its column and the split."""
    lines = []
    for feature, rows in found:
        kind = getattr(feature, "KIND", "") or getattr(feature, "kind", "")
        what = " and ".join(feature.learns())
        role = "label" if feature is config.label else "feature"
        lines.append(
            f"{role} {feature.name!r} ({kind}) learns its {what} from column "
            f"{feature.column!r}, which has no value in the {SPLIT} split ({rows:,} "
            f"{SPLIT} rows): there is nothing to learn from, as Keras's adapt() refuses an "
            f"empty dataset. Give column {feature.column!r} values in the {SPLIT} "
            f"split{_remedy(feature)}.")
    where = f" (the run summary and report are in {out})" if out else ""
    lines.append(f"Nothing was published: no transform_fn or transformed data{where}.")
    return "\n".join(lines)


def check(config: Config, statistics: Dict, out: Optional[str] = None) -> None:
    """Raises NothingToLearnFrom when a feature would learn from no train value."""
    found = empty(config, statistics)
    if found:
        raise NothingToLearnFrom(message(config, found, out))
