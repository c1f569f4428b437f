# Sourced by the other scripts: creates .venv (Python 3.11) if needed and installs the
# package into it, with the extras named in $1 (e.g. "test"), at the exact versions of
# constraints.txt (the ones the test suite passed with; pyproject.toml keeps ranges).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3.11}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
extras="${1:-}"
.venv/bin/python -m pip install -q -c constraints.txt -e ".${extras:+[$extras]}"
