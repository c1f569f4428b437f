#!/usr/bin/env bash
# Re-resolves the dependencies from pyproject.toml's ranges in a scratch venv and writes the
# exact versions to constraints.txt. Then run `bash scripts/test.sh` (which installs from the
# new lock) and commit constraints.txt only if the suite passes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3.11}"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
"$PYTHON" -m venv "$scratch/venv"
"$scratch/venv/bin/python" -m pip install -q --upgrade pip
"$scratch/venv/bin/python" -m pip install -q ".[test]"
{
  echo "# The exact versions the test suite passed with; scripts/venv.sh and .ci/run install with them"
  echo "# (pip install -c constraints.txt). Regenerate with: bash scripts/lock.sh (see README, \"Upgrading\")."
  "$scratch/venv/bin/python" -m pip freeze --exclude-editable | grep -viE '^(beam-pipeline|beam_pipeline)( |=|@)'
} > constraints.txt
echo "constraints.txt rewritten; now: rm -rf .venv && bash scripts/test.sh"
