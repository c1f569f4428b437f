"""Beam options reach PipelineOptions unchanged; the sdist carries the package for Dataflow."""

import os
import subprocess
import sys
import tarfile

import apache_beam as beam
from apache_beam.options.pipeline_options import (GoogleCloudOptions, SetupOptions,
                                                  StandardOptions, WorkerOptions)

from beam_pipeline.job import pipeline, preprocess
from beam_pipeline.config import load_config
from tests.conftest import REPO, make_config, write_config

DATAFLOW_ARGS = ["--runner", "DataflowRunner", "--project", "my-project", "--region",
                 "europe-west1", "--temp_location", "gs://bucket/tmp", "--setup_file",
                 "./setup.py", "--max_num_workers", "7", "--direct_num_workers", "2"]


def test_default_runner_is_the_local_fn_api_runner():
    options = preprocess.pipeline_options([])
    assert options.view_as(StandardOptions).runner == "FnApiRunner"


def test_dataflow_options_pass_through_unchanged():
    options = preprocess.pipeline_options(DATAFLOW_ARGS)
    assert options.view_as(StandardOptions).runner == "DataflowRunner"
    gcp = options.view_as(GoogleCloudOptions)
    assert (gcp.project, gcp.region, gcp.temp_location) == (
        "my-project", "europe-west1", "gs://bucket/tmp")
    assert options.view_as(SetupOptions).setup_file == "./setup.py"
    assert options.view_as(WorkerOptions).max_num_workers == 7
    assert options.get_all_options()["direct_num_workers"] == 2


def test_pipeline_builds_for_dataflow_without_submitting(csv_dir, tmp_path):
    path = write_config(tmp_path / "config.yaml", make_config(csv_dir, str(tmp_path / "out")))
    # --dry_run: Beam would otherwise ask GCS about the bucket's soft-delete policy, which
    # hangs on retries without a network.
    p = beam.Pipeline(options=preprocess.pipeline_options(DATAFLOW_ARGS + ["--dry_run", "True"]))
    pipeline.build(p, load_config(path), str(tmp_path / "tft_tmp"))
    labels = set()

    class Collect(beam.pipeline.PipelineVisitor):
        def enter_composite_transform(self, node):
            labels.add(node.full_label)

        def visit_transform(self, node):
            labels.add(node.full_label)

    p.visit(Collect())
    assert type(p.runner).__name__ == "DataflowRunner"
    for label in ("ReadInputForAnalysis", "Analyze", "ReadInput", "WriteRejected", "Transform",
                  "RouteSplits", "WriteTrain", "WriteEval", "TrainStatistics"):
        assert label in labels, label
    assert not os.path.exists(tmp_path / "out"), "nothing may run or be written"


def test_sdist_contains_the_package(tmp_path):
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir",
                    str(tmp_path), REPO], check=True, capture_output=True, timeout=300)
    (sdist,) = tmp_path.glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for module in ("setup.py", "pyproject.toml", "beam_pipeline/job/pipeline.py",
                   "beam_pipeline/features/lookup.py", "beam_pipeline/sources/csv.py"):
        assert module in names, module
