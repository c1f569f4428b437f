#!/usr/bin/env bash
# Runs every source's example end to end (generate data, preprocess, train) with the
# local runner: CSV (the sample), Parquet, TFRecord, text folders, image folders.
set -euo pipefail
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh" ""
py=.venv/bin/python
bp=.venv/bin/beam-pipeline
$py scripts/make_data.py --rows 4000 --shards 4 --out examples/sample/data
for format in parquet tfrecord; do
  $py scripts/csv_to.py "$format" --config examples/sample/config.yaml --out "examples/$format/data"
done
rm -rf examples/text/data examples/images/data
$py scripts/make_folders.py --out examples/text/data --kind text --per-class 40 --seed 1
$py scripts/make_folders.py --out examples/images/data --kind image --per-class 40 --seed 1
for example in sample parquet tfrecord text images; do
  echo "== $example"
  $bp preprocess --config "examples/$example/config.yaml" --overwrite "$@"
  $bp train --config "examples/$example/config.yaml"
done
