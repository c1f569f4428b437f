#!/usr/bin/env bash
# Installs beam_pipeline into .venv, generates the bundled sample (seeded) and runs the
# preprocessing job on it with the local runner. Extra arguments go to the command
# (Beam options included).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh" ""
.venv/bin/python scripts/make_data.py --rows 4000 --shards 4 --out examples/sample/data
.venv/bin/beam-pipeline preprocess --config examples/sample/config.yaml --overwrite "$@"
