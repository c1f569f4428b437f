#!/usr/bin/env bash
# Installs beam_pipeline with its test extras into .venv and runs the test suite.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh" "test"
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "test.sh: pytest collected no tests; that is a failure here" >&2
  exit 1
fi
exit "$status"
