#!/usr/bin/env bash
# Installs beam_pipeline with its test extras into .venv and runs the test suite.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh" "test"
set +e
# Two worker processes, one test file each at a time (--dist loadfile keeps a file's
# module fixtures in one process): most of a pipeline run uses one core, so this roughly
# halves the suite's wall time on 2 cores. Files go out in collection order, the slowest
# first (tests/conftest.py, SLOW_FIRST). PYTEST_WORKERS=0 runs in one process.
.venv/bin/python -m pytest -n "${PYTEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "test.sh: pytest collected no tests; that is a failure here" >&2
  exit 1
fi
exit "$status"
