"""Is there a good run here? The one check every reader of a run makes (train, inspect,
predict's --model folder, `bp.open_output`), before it reads anything else.

A good run is a folder whose `run_summary.json` says "status": "complete" (summaries
written before preprocess recorded a status count as complete). Anything else raises
`NoGoodRun`, naming the folder and what is there: no such folder, a folder without a run
summary, or a run whose last preprocess failed (the rejected-records gate, exit 3, or a
statistic with no train data, exit 2), which keeps its summary, report and rejects but
no data nor transform graph.

A local output is checked with plain file IO: no TensorFlow, tf.Transform nor Beam (they
take seconds to import), so a command on the wrong folder fails at once. A gs:// output,
a refresh root (runs/ and LATEST) and `--run` go through Beam's FileSystems
(`outputs.storage`, `refresh.runs`), imported only then.
"""

import json
import os
import re
from typing import Dict, Optional, Tuple

from beam_pipeline.config import ConfigError

# outputs.layout's and refresh.runs's names (both modules import Beam's FileSystems;
# tests/test_inspect.py checks these agree with them).
RUN_SUMMARY = "run_summary.json"
RUNS, LATEST = "runs", "LATEST"
CONFIG_COPY = ("metadata", "config.yaml")  # the copy of the config a run was made with
COMPLETE = "complete"

# The statuses preprocess writes when it fails after its pipeline ran (job/preprocess.py),
# with the exit code it had and what, in the output, explains the failure.
FAILURES = {
    "failed: too many rejected records": (3, "rejected/"),
    "failed: a statistic with no train data": (2, "report.html"),
}


class NoGoodRun(ConfigError):
    """No complete run where a reader looked; the message names the folder, says what is
    there and what to do."""


def is_url(path: str) -> bool:
    """Whether `path` has a scheme (gs://...), i.e. is not a local path."""
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", path))


def join(base: str, *parts: str) -> str:
    """What Beam's FileSystems.join gives: os.path.join for a local path, "/" otherwise."""
    if not is_url(base):
        return os.path.join(base, *parts)
    for part in parts:
        base = base + part if base.endswith("/") else f"{base}/{part}"
    return base


def exists(path: str) -> bool:
    """A file or a folder; on an object store a folder is any object under it."""
    if not is_url(path):
        return os.path.exists(path)
    from beam_pipeline.outputs import storage  # pylint: disable=import-outside-toplevel
    return storage.exists(path)


def read_text(path: str) -> Optional[str]:
    """The text of the file `path`, or None when there is none."""
    if not is_url(path):
        try:
            with open(path, "rb") as f:
                return f.read().decode("utf-8")
        except FileNotFoundError:
            return None
    from beam_pipeline.outputs import storage  # pylint: disable=import-outside-toplevel
    return storage.read_text(path)


def run_summary_path(out: str) -> str:
    """`layout.run_summary_path`, without importing Beam."""
    return join(out, RUN_SUMMARY)


def config_copy_path(out: str) -> str:
    """`layout.config_copy_path`, without importing Beam."""
    return join(out, *CONFIG_COPY)


def resolve(root: str, run: Optional[str] = None) -> str:
    """The run folder to read under `root`: `refresh.runs.resolve(root, run)` (a refresh
    root gives its published run, or run `run`), with its errors as `NoGoodRun`. A
    missing local `root` is "no such output"; one without runs/ or LATEST (a one-shot
    preprocess output) is `root` itself, found without importing Beam."""
    if not is_url(root) and not os.path.exists(root):
        raise NoGoodRun(f"no such output: {root}; run preprocess first, or check the path "
                        "(output.dir in the config)")
    if run is None and not is_url(root) and not any(
            os.path.exists(os.path.join(root, name)) for name in (RUNS, LATEST)):
        return root
    from beam_pipeline.refresh import runs  # pylint: disable=import-outside-toplevel
    if run is None and not exists(root):
        raise NoGoodRun(f"no such output: {root}; run preprocess first, or check the path "
                        "(output.dir in the config)")
    try:
        return runs.resolve(root, run)
    except ValueError as e:
        raise NoGoodRun(f"{root}: {e}") from None


def read_summary(out: str) -> Optional[Dict]:
    """The run summary under `out` as a dict, or None when there is none."""
    text = read_text(run_summary_path(out))
    return None if text is None else json.loads(text)


def _contents(out: str) -> str:
    """A few words on what a local folder holds ("" for an object store)."""
    if is_url(out) or not os.path.isdir(out):
        return ""
    names = sorted(n + ("/" if os.path.isdir(os.path.join(out, n)) else "")
                   for n in os.listdir(out))
    if not names:
        return "; the folder is empty"
    shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    return f"; it holds {shown}"


def failure(out: str, summary: Dict) -> Optional[str]:
    """Why the run whose summary is `summary` (under `out`) is not a good run, or None
    when it is complete."""
    status = summary.get("status", COMPLETE)
    if status == COMPLETE:
        return None
    if status in FAILURES:
        code, where = FAILURES[status]
        return (f"{out}: the last preprocess {status} (exit {code}); see "
                f"{join(out, where.rstrip('/'))}{'/' if where.endswith('/') else ''}")
    return (f"{out}: the last preprocess did not complete (status {status!r}); run "
            "preprocess again")


def load(out: str) -> Dict:
    """The summary of the run folder `out`, whatever its status; `NoGoodRun` when `out`
    holds no run summary."""
    summary = read_summary(out)
    if summary is None:
        if not exists(out):
            raise NoGoodRun(f"no such output: {out}; run preprocess first, or check the path "
                            "(output.dir in the config)")
        raise NoGoodRun(f"{out}: no run here (no {RUN_SUMMARY}{_contents(out)}); run "
                        "preprocess first")
    return summary


def check(out: str) -> Dict:
    """The summary of the run folder `out` if it is a good run; else `NoGoodRun`."""
    summary = load(out)
    problem = failure(out, summary)
    if problem is not None:
        raise NoGoodRun(problem)
    return summary


def good_run(root: str, run: Optional[str] = None) -> Tuple[str, Dict]:
    """`(run folder, its summary)` of the good run to read under output root `root`
    (see `resolve`); `NoGoodRun` naming the folder and what is there otherwise."""
    out = resolve(root, run)
    return out, check(out)


def is_output(folder: str) -> bool:
    """Whether `folder` looks like a preprocess or refresh output (a run summary, runs/
    or LATEST directly under it)."""
    return any(exists(join(folder, name)) for name in (RUN_SUMMARY, RUNS, LATEST))


def model_folder_problem(model_dir: str) -> Optional[str]:
    """For `predict --model DIR`: what is wrong when DIR is an output folder rather than
    its model, or OUTPUT/model/serving of an output with no good run; None otherwise
    (predict then loads DIR and says what is wrong with it)."""
    folder = model_dir.rstrip("/")
    if folder and is_output(folder):
        try:
            out, _ = good_run(folder)
        except NoGoodRun as e:
            return f"--model {model_dir} is a preprocess output, not a model, and {e}"
        served = join(out, "model", "serving")
        hint = (f"did you mean {served}?" if exists(join(served, "saved_model.pb"))
                else "run `beam-pipeline train` on it first")
        return (f"--model {model_dir} is a preprocess output, not a model; predict takes "
                f"its OUTPUT/model/serving ({hint})")
    tail = "/model/serving"
    if folder.endswith(tail) and not exists(folder):
        out = folder[:-len(tail)]
        if out and is_output(out):
            try:
                good_run(out)
            except NoGoodRun as e:
                return f"--model {model_dir}: no model there, and {e}"
            return (f"--model {model_dir}: no model there yet; run `beam-pipeline train` "
                    f"for the output {out} first")
    return None
