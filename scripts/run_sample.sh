#!/usr/bin/env bash
# Installs beam_pipeline into .venv, generates the bundled sample (seeded) and runs the
# preprocessing job on it with the local runner. Extra arguments go to the command
# (Beam options included).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh" ""
.venv/bin/python scripts/make_data.py --rows 4000 --shards 4 --out examples/sample/data
.venv/bin/beam-pipeline preprocess --config examples/sample/config.yaml --overwrite "$@"
.venv/bin/beam-pipeline train --config examples/sample/config.yaml
head -6 examples/sample/data/part-00003-of-00004.csv > examples/sample/output/few_rows.csv
echo "predictions of the exported model for 5 raw rows:"
.venv/bin/beam-pipeline predict --model examples/sample/output/model/serving \
  --input examples/sample/output/few_rows.csv
