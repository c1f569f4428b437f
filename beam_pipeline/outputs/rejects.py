"""The rejected-records gate: a job whose input is mostly bad fails instead of passing.

A few bad records are set aside (the dead-letter files) and the job carries on. When
more than `input.max_rejected_fraction` of the records are rejected the input itself is
wrong (a wrong delimiter, a shifted schema, a file of another kind), so the job fails
with exit code EXIT_TOO_MANY_REJECTED, a message naming the top reasons with an example
of each, and no transformed data left behind to be used by mistake.
"""

import json
from typing import Dict, List

from apache_beam.io.filesystems import FileSystems

from beam_pipeline.outputs import layout

EXIT_TOO_MANY_REJECTED = 3
EXAMPLES_SCANNED = 10_000  # dead-letter lines read to find an example of each top reason


class TooManyRejected(Exception):
    """More records were rejected than the config allows; the message says which and why."""


def examples(out: str, reasons: List[str]) -> Dict[str, Dict]:
    """The first dead-letter record of each reason (reading at most EXAMPLES_SCANNED lines)."""
    found: Dict[str, Dict] = {}
    for match in FileSystems.match([layout.rejected_pattern(out)])[0].metadata_list:
        with FileSystems.open(match.path) as f:
            for i, line in enumerate(f):
                if i >= EXAMPLES_SCANNED or len(found) == len(reasons):
                    break
                record = json.loads(line)
                if record["reason"] in reasons and record["reason"] not in found:
                    found[record["reason"]] = record
    return found


def message(rows: Dict, limit: float, found: Dict[str, Dict], top: int = 3) -> str:
    """The failure message: the share rejected, the top reasons, and an example of each."""
    share = rows["rejected"] / rows["read"] if rows["read"] else 1.0
    lines = [f"{rows['rejected']:,} of {rows['read']:,} records ({share:.1%}) were rejected, "
             f"more than input.max_rejected_fraction ({limit:.1%}); nothing was published. "
             f"Top reasons:"]
    ranked = sorted(rows["rejected_by_reason"].items(), key=lambda kv: -kv[1])[:top]
    for reason, count in ranked:
        lines.append(f"  {reason}: {count:,}")
        example = found.get(reason)
        if example:
            lines.append(f"    e.g. {example['file']} line {example['line']}: "
                         f"{example['detail']}: {example['raw'][:200]!r}")
    return "\n".join(lines)


def check(rows: Dict, limit: float, out: str) -> None:
    """Raises TooManyRejected when the rejected share of `rows` exceeds `limit`."""
    if not rows["rejected"] or rows["rejected"] <= limit * rows["read"]:
        return
    ranked = sorted(rows["rejected_by_reason"], key=lambda r: -rows["rejected_by_reason"][r])
    raise TooManyRejected(message(rows, limit, examples(out, ranked[:3])))
