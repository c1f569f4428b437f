"""Beam options reach PipelineOptions unchanged; the sdist carries the package for Dataflow."""

import json
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


# Dataflow templates and the job request, built offline --------------------------------------
# A `--template_location` run writes the job request (`Job.json()`, what CreateJob would send)
# as the template file. Two things would need the network, and only they are replaced:
# the bucket soft-delete check of gs:// temp/staging locations (a warning Beam logs, in
# `GoogleCloudOptions._warn_if_soft_delete_policy_enabled`)
# and uploads to gs:// (`DataflowApplicationClient.stage_file`, which writes local paths
# itself): gs:// uploads go to a local folder instead. `--no_auth`: no credentials are looked up.

REQUEST_LIMIT = 10 * 1024 * 1024  # the Dataflow service's limit on a CreateJob request


def offline_gcs(monkeypatch, root):
    """Uploads to gs://B/P land in `root`/B/P; returns `{gs path: bytes}` of what was staged."""
    from apache_beam.options.pipeline_options import GoogleCloudOptions as Gcp
    from apache_beam.runners.dataflow.internal import apiclient

    staged = {}
    local_stage = apiclient.DataflowApplicationClient.stage_file

    def stage_file(self, gcs_or_local_path, file_name, stream, mime_type=None, total_size=None):
        if not gcs_or_local_path.startswith("gs://"):
            return local_stage(self, gcs_or_local_path, file_name, stream)
        target = os.path.join(root, gcs_or_local_path[len("gs://"):], file_name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as f:
            f.write(stream.read())
        staged[f"{gcs_or_local_path.rstrip('/')}/{file_name}"] = os.path.getsize(target)

    monkeypatch.setattr(Gcp, "_warn_if_soft_delete_policy_enabled", lambda self, arg_name: None)
    monkeypatch.setattr(apiclient.DataflowApplicationClient, "stage_file", stage_file)
    return staged


def template_args(template, setup_file=True):
    return (["--runner", "DataflowRunner", "--project", "my-project", "--region",
             "europe-west1", "--temp_location", "gs://bucket/tmp", "--staging_location",
             "gs://bucket/staging", "--experiments=use_runner_v2", "--no_auth",
             "--template_location", template]
            + (["--setup_file", os.path.join(REPO, "setup.py")] if setup_file else []))


def run_template(monkeypatch, capsys, tmp_path, config_path, setup_file=True):
    """`beam-pipeline preprocess ... --template_location` in this process; returns
    (exit code, stdout, stderr, template path, staged files)."""
    from beam_pipeline import cli

    staged = offline_gcs(monkeypatch, str(tmp_path / "gcs"))

    def no_counters(result):
        raise AssertionError("a template run read counters")

    monkeypatch.setattr(pipeline, "read_counters", no_counters)
    template = str(tmp_path / "templates" / "preprocess.json")
    os.makedirs(os.path.dirname(template))
    code = cli.main(["preprocess", "--config", config_path,
                     *template_args(template, setup_file)])
    out, err = capsys.readouterr()
    return code, out, err, template, staged


def _request_sizes(template, staged):
    with open(template, "rb") as f:
        request = f.read()
    (pipeline_pb,) = [n for n in staged if n.endswith("/pipeline.pb")]
    return len(request), staged[pipeline_pb], json.loads(request)


def test_template_run_ends_cleanly_and_writes_no_summary(csv_dir, tmp_path, monkeypatch, capsys):
    out_dir = str(tmp_path / "out")
    path = write_config(tmp_path / "config.yaml", make_config(csv_dir, out_dir))
    from beam_pipeline.job import progress
    counting_into = []
    real_init = progress.CountRows.__init__

    def record(self, stage, directory):
        counting_into.append(directory)
        real_init(self, stage, directory)

    monkeypatch.setattr(progress.CountRows, "__init__", record)
    code, out, err, template, staged = run_template(monkeypatch, capsys, tmp_path, path)
    assert code == 0, err[-3000:]
    # Dataflow's workers would count rows into their own /tmp, which nobody reads.
    assert counting_into and set(counting_into) == {None}, counting_into
    assert f"template: {template}" in out
    assert "rows read" not in out and "nothing has run" in out
    assert f"Dataflow template written to {template}" in err
    written = sorted(os.path.relpath(os.path.join(d, f), out_dir)
                     for d, _, files in os.walk(out_dir) for f in files)
    # The raw schema, and tf.Transform's temporary files from building the graph in the
    # temp folder the template's job will use; nothing a run writes.
    assert "metadata/schema.pbtxt" in written
    assert all(w.startswith(("metadata/", ".tmp/")) for w in written), written
    request, pipeline_bytes, job = _request_sizes(template, staged)
    # The template is the job request: the staged pipeline and the package built from setup.py.
    options = job["environment"]["sdkPipelineOptions"]["options"]
    assert options["template_location"] == template
    assert any(n.endswith(".tar.gz") or "workflow" in n for n in staged), sorted(staged)
    print(f"sample config: request {request:,} bytes, pipeline proto {pipeline_bytes:,} bytes")
    assert request < REQUEST_LIMIT / 10
    assert pipeline_bytes < REQUEST_LIMIT / 4


def test_template_with_overwrite_of_an_existing_output_is_refused(csv_dir, tmp_path,
                                                                   monkeypatch, capsys):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "old.txt").write_text("previous run")
    path = write_config(tmp_path / "config.yaml", make_config(
        csv_dir, str(out_dir), features={"id": {"kind": "passthrough"}}))
    from beam_pipeline import cli
    offline_gcs(monkeypatch, str(tmp_path / "gcs"))
    template = str(tmp_path / "t.json")
    code = cli.main(["preprocess", "--config", path, "--overwrite", *template_args(template)])
    _, err = capsys.readouterr()
    assert code == 2, err[-3000:]
    assert "--template_location with --overwrite" in err
    assert not os.path.exists(template)
    assert sorted(os.listdir(out_dir)) == ["old.txt"]
    assert [p for p in os.listdir(tmp_path) if p.startswith("out") and p != "out"] == []


WIDE = 40  # 100 took about 3 minutes to build on a loaded machine; the suite has 25


def test_job_request_of_a_wide_config_is_well_under_the_limit(tmp_path, monkeypatch, capsys):
    """WIDE features of three kinds (the staged pipeline grows with them: 100 measured 11 KB
    and 3.4 MB, 200 11 KB and 6.3 MB, but took 8 to 17 minutes to build on the loaded
    2-core machine; scripts/bench_width.py measures width). Without
    --setup_file: building the sdist is the sample's test's to check."""
    kinds = [{"kind": "normalization", "missing_indicator": True},
             {"kind": "string_lookup", "max_tokens": 100},
             {"kind": "hashing", "num_bins": 32}]
    columns = [{"name": "id", "type": "int"}, {"name": "label", "type": "int"}]
    features = {"id": {"kind": "passthrough"}}
    for i in range(WIDE):
        kind = kinds[i % len(kinds)]
        string = kind["kind"] in ("string_lookup", "hashing")
        columns.append({"name": f"c{i}", "type": "string" if string else "float"})
        features[f"c{i}"] = dict(kind)
    data = tmp_path / "data"
    data.mkdir()
    names = [c["name"] for c in columns]
    with open(data / "part-0.csv", "w") as f:
        f.write(",".join(names) + "\n")
        for row in range(4):
            f.write(",".join(str(row) if c["type"] != "string" else f"v{row}"
                             for c in columns) + "\n")
    config = make_config(str(data), str(tmp_path / "out"), columns=columns, features=features)
    path = write_config(tmp_path / "config.yaml", config)
    code, _, err, template, staged = run_template(monkeypatch, capsys, tmp_path, path,
                                                  setup_file=False)
    assert code == 0, err[-3000:]
    request, pipeline_bytes, _ = _request_sizes(template, staged)
    print(f"{WIDE} features: request {request:,} bytes, pipeline proto {pipeline_bytes:,} bytes")
    assert request < REQUEST_LIMIT / 10
    # The pipeline proto is staged as a file (`pipelineUrl` in the request), not sent in it;
    # it grows with the features (tens of KB each), so it is kept in sight too.
    assert pipeline_bytes < REQUEST_LIMIT


def test_a_templated_refresh_is_refused_before_anything_is_written(csv_dir, tmp_path, capsys):
    """A refresh publishes after its job, on the driver; a template only stages the job, so
    `refresh --template_location` is a config error (exit 2) that writes nothing."""
    from beam_pipeline import cli
    out_dir = str(tmp_path / "out")
    path = write_config(tmp_path / "config.yaml", make_config(csv_dir, out_dir))
    template = str(tmp_path / "templates" / "refresh.json")
    code = cli.main(["refresh", "--config", path, *template_args(template, setup_file=False)])
    err = capsys.readouterr().err
    assert code == 2, err[-3000:]
    assert "--template_location cannot be used" in err
    assert not os.path.exists(out_dir) and not os.path.exists(template)
