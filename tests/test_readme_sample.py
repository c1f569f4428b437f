"""The README's sample output block against what the console script really prints.

The block's preprocessing lines (from `beam_pipeline preprocess: done` to `outputs under`)
become patterns, numbers, quoted tokens and paths as wildcards and padding of any width,
and must match, in order, lines the `cli_run` fixture's `beam-pipeline preprocess`
printed; its first and last lines must match the run's first and last lines. A change of
the summary's format then fails here instead of leaving the README stale.
"""

import os
import re

from tests.conftest import REPO

NUMBER = r"-?[\d,]*\.?\d+(?:e[-+]?\d+)?"


def readme_sample_block():
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    intro = text.index("It writes everything under `examples/sample/output/`")
    start = text.index("```\n", intro) + 4
    return text[start:text.index("```", start)].splitlines()


def preprocess_lines(block):
    first = next(i for i, l in enumerate(block) if l.startswith("beam_pipeline preprocess:"))
    last = next(i for i, l in enumerate(block) if l.startswith("  outputs under "))
    return block[first:last + 1]


def pattern(line):
    """A README line as a regex: numbers, 'quoted' tokens and paths match any value, and a
    run of 2+ spaces (column padding) any run of spaces."""
    out = []
    for token in re.split(r"( {2,}| )", line):
        if token.strip() == "":
            out.append(" +" if len(token) > 1 and out else re.escape(token))
        elif token.startswith("/"):
            out.append(r"\S+")
        else:
            piece = re.escape(token)
            piece = re.sub(r"'[^']*'", lambda m: "'[^']*'", piece)
            # re.escape turned "-" into "\-" and "." into "\.".
            piece = re.sub(r"(?:\\-)?[\d,]*(?:\\\.)?\d+", lambda m: NUMBER, piece)
            out.append(piece)
    return re.compile("".join(out))


def test_the_readme_sample_block_has_the_shapes_a_real_run_prints(cli_run):
    proc, _ = cli_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = proc.stdout.splitlines()
    lines = [l for l in preprocess_lines(readme_sample_block()) if l.strip() != "..."]
    assert len(lines) >= 4, lines
    assert pattern(lines[0]).fullmatch(printed[0]), (lines[0], printed[0])
    assert pattern(lines[-1]).fullmatch(printed[-1]), (lines[-1], printed[-1])
    at = 0
    for line in lines:
        regex = pattern(line)
        hits = [i for i in range(at, len(printed)) if regex.fullmatch(printed[i])]
        assert hits, f"README line {line!r} matches no line printed (in order):\n" \
                     + "\n".join(printed)
        at = hits[0] + 1


def test_the_patterns_are_not_vacuous():
    line = "  vocabulary text: 1,998 entries (top: 'ka' 7,970, 'lo' 3,528, 'mi' 2,159)"
    assert pattern(line).fullmatch("  vocabulary text: 300 entries (top: 'x' 12, 'y' 3, 'z' 1)")
    assert not pattern(line).fullmatch("  vocabulary text: 300 words (top: 'x' 12, 'y' 3, 'z' 1)")
    stats = "  f_missing            mean 3.0628       std 1.62503      min 0.535104     max 12.9"
    assert pattern(stats).fullmatch("  f_missing            mean 13.0628      std -1e-05       "
                                    "min 0                max 12")
    assert not pattern(stats).fullmatch("  f_missing mean 3.0 sd 1.6 min 0.5 max 12.9")
