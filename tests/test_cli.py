"""The console script end to end, and config errors that fail before any pipeline starts."""

import json
import os

import numpy as np
import pytest

from beam_pipeline import cli
from tests import reference
from tests.conftest import make_config, write_config


def test_cli_exits_zero_and_writes_every_output(cli_run):
    proc, out = cli_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rows read 1,500" in proc.stdout
    for path in ("transform_fn/saved_model.pb", "transformed_metadata/schema.pbtxt",
                 "metadata/schema.pbtxt", "run_summary.json"):
        assert os.path.exists(os.path.join(out, path)), path
    with open(os.path.join(out, "run_summary.json")) as f:
        summary = json.load(f)
    assert summary["rows"]["read"] == 1500
    assert not os.path.exists(os.path.join(out, ".tmp")), "temp dir left behind"


def test_two_runs_give_identical_split_membership(cli_run, pipeline_run):
    _, cli_out = cli_run
    for split in ("train", "eval"):
        a = reference.read_transformed(cli_out, split)
        b = reference.read_transformed(pipeline_run[0].output.dir, split)
        order_a, order_b = np.argsort(a["id"]), np.argsort(b["id"])
        np.testing.assert_array_equal(a["id"][order_a], b["id"][order_b])
        for key in a:
            if a[key].dtype.kind == "f":
                # tft.var's last float32 bit depends on the combine order (tft-beam-notes.md).
                np.testing.assert_allclose(a[key][order_a], b[key][order_b], rtol=1e-5,
                                           atol=1e-6, err_msg=key)
            else:
                np.testing.assert_array_equal(a[key][order_a], b[key][order_b], err_msg=key)


def test_cli_refuses_a_non_empty_output_folder(cli_run, capsys):
    _, out = cli_run
    config_path = os.path.join(os.path.dirname(out), "config.yaml")
    assert cli.main(["preprocess", "--config", config_path]) == cli.EXIT_CONFIG_ERROR
    err = capsys.readouterr().err
    assert "output.dir" in err and "--overwrite" in err


@pytest.mark.parametrize("change,key", [
    (lambda c: c["features"].update(nope={"kind": "normalization"}), "features.nope.column"),
    (lambda c: c["features"].update(f_normal={"kind": "zscore"}), "features.f_normal.kind"),
    (lambda c: c["features"].update(cat_small={"kind": "string_lookup", "max_tokenz": 3}),
     "features.cat_small"),
    (lambda c: c["features"].update(cat_small={"kind": "string_lookup", "max_tokens": 0}),
     "features.cat_small"),
    (lambda c: c["features"].update(text={"kind": "normalization"}), "features.text.column"),
    (lambda c: c["input"].update(file_pattern="/nonexistent/*.csv"), "input.file_pattern"),
    (lambda c: c["split"].update(eval_fraction=1.5), "split.eval_fraction"),
    (lambda c: c["split"].update(key="nope"), "split.key"),
    (lambda c: c.pop("output"), "output"),
    (lambda c: c["columns"].append({"name": "x", "type": "double"}), "columns[10].type"),
    # A declared column the header lacks (extra header columns are fine: matched by name).
    (lambda c: c["columns"].append({"name": "not_in_header", "type": "int"}), "columns"),
    (lambda c: c.update(preprocessing_fn="no_such_module_xyz:fn", features={}),
     "preprocessing_fn"),
])
def test_config_errors_name_the_key(csv_dir, tmp_path, capsys, change, key):
    config = make_config(csv_dir, str(tmp_path / "out"))
    config["features"] = dict(config["features"])
    config["columns"] = list(config["columns"])
    change(config)
    path = write_config(tmp_path / "config.yaml", config)
    assert cli.main(["preprocess", "--config", path]) == cli.EXIT_CONFIG_ERROR
    err = capsys.readouterr().err
    assert f"config error: {key}" in err, err
    assert not os.path.exists(tmp_path / "out" / "transform_fn")


def test_progress_lines_increase_and_end_at_100_percent(cli_run):
    proc, out = cli_run
    lines = [l for l in proc.stderr.splitlines() if l.startswith("progress:")]
    percents = [float(l.split()[1].rstrip("%")) for l in lines]
    assert len(percents) >= 3, proc.stderr[-2000:]
    assert percents == sorted(percents), percents
    assert percents[-1] == 100.0 and percents[-2] < 100.0
    with open(os.path.join(out, "run_summary.json")) as f:
        read = json.load(f)["rows"]["read"]
    # The summary's rows read (no reject in this input; test_inspect has a run with some).
    assert read == 1500 and f"done: {read:,} of {read:,} rows read (3 files)" in lines[-1]
    assert any("analyze" in l for l in lines) and any("transform and write" in l for l in lines)


# Beam options: a typo must fail, not run locally ------------------------------------------

def _config_must_not_load(path):
    raise AssertionError("the config was read before the Beam options were checked")


@pytest.mark.parametrize("command", ["preprocess", "refresh"])
@pytest.mark.parametrize("typo,name,suggestion", [
    (["--runer", "DataflowRunner"], "--runer", "--runner"),
    (["--runer=DataflowRunner"], "--runer", "--runner"),
    # Beam does not expand abbreviations, so neither does the check.
    (["--run", "DataflowRunner"], "--run", "--runner"),
    (["--runner", "FnApiRunner", "--direct_num_worker", "2"], "--direct_num_worker",
     "--direct_num_workers"),
    # The command's own options are among the names suggested.
    (["--confg", "c.yaml"], "--confg", "--config"),
    (["--log-levl", "debug"], "--log-levl", "--log-level"),
])
def test_an_unknown_beam_option_fails_before_anything_runs(monkeypatch, capsys, command, typo,
                                                           name, suggestion):
    monkeypatch.setattr(cli, "load_config", _config_must_not_load)
    code = cli.main([command, "--config", "/nonexistent/config.yaml", *typo])
    err = capsys.readouterr().err
    assert code == cli.EXIT_CONFIG_ERROR, err
    assert f"unknown argument {name}:" in err and f"did you mean {suggestion}?" in err, err


@pytest.mark.parametrize("command,typo,suggestion", [
    ("preprocess", "--overwite", "--overwrite"),
    ("refresh", "--forse", "--force"),
    ("refresh", "--accept-drfit", "--accept-drift"),
])
def test_a_misspelt_option_of_the_command_gets_did_you_mean(monkeypatch, capsys, command,
                                                            typo, suggestion):
    monkeypatch.setattr(cli, "load_config", _config_must_not_load)
    code = cli.main([command, "--config", "c.yaml", typo])
    err = capsys.readouterr().err
    assert code == cli.EXIT_CONFIG_ERROR, err
    assert err.strip() == (f"beam-pipeline {command}: error: unknown argument {typo}: neither "
                           "an option of the command nor a Beam pipeline option; did you "
                           f"mean {suggestion}?"), err


def test_an_invalid_value_of_a_beam_option_fails_before_anything_runs(monkeypatch, capsys):
    monkeypatch.setattr(cli, "load_config", _config_must_not_load)
    code = cli.main(["preprocess", "--config", "c.yaml", "--direct_num_workers", "two"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_CONFIG_ERROR and "--direct_num_workers" in err, err


def test_known_beam_options_pass_through(monkeypatch, capsys):
    from apache_beam.options.pipeline_options import (DirectOptions, SetupOptions,
                                                      StandardOptions)
    from beam_pipeline.job import preprocess
    from beam_pipeline.config import ConfigError
    beam_args = ["--runner", "FnApiRunner", "--direct_num_workers=2", "--save_main_session",
                 "--direct_running_mode", "multi_processing", "--experiments=a", "--experiments",
                 "b"]

    def config_error(path):
        raise ConfigError("reached the config")
    monkeypatch.setattr(cli, "load_config", config_error)
    for command in ("preprocess", "refresh"):
        assert cli.main([command, "--config", "c.yaml", *beam_args]) == cli.EXIT_CONFIG_ERROR
        err = capsys.readouterr().err
        assert "config error: reached the config" in err and "unknown argument" not in err, err
    options = preprocess.pipeline_options(beam_args)
    assert options.view_as(StandardOptions).runner == "FnApiRunner"
    assert options.view_as(DirectOptions).direct_num_workers == 2
    assert options.view_as(DirectOptions).direct_running_mode == "multi_processing"
    assert options.view_as(SetupOptions).save_main_session is True
    assert preprocess.pipeline_options([]).view_as(StandardOptions).runner == "FnApiRunner"
    with pytest.raises(preprocess.UnknownPipelineOption, match="--runer"):
        preprocess.pipeline_options(["--runer", "DataflowRunner"])


def test_progress_counts_the_records_of_batches_and_dead_letters(tmp_path):
    """A counting step given a read's dead letters counts the records they stand for."""
    import pyarrow as pa  # pylint: disable=import-outside-toplevel
    from beam_pipeline.job import progress  # pylint: disable=import-outside-toplevel
    count = progress.CountRows("transform", str(tmp_path))
    count.setup()
    batch = pa.RecordBatch.from_arrays([pa.array([1, 2, 3])], ["x"])
    letters = [json.dumps({"reason": "wrong_field_count"}), json.dumps({"rows": 4})]
    assert [x for item in [batch] + letters for x in count.process(item)] == [batch] + letters
    count.finish_bundle()
    assert progress.read_counts(str(tmp_path)) == {"analyze": 0, "transform": 3 + 1 + 4}


# Start-up: no heavy imports for --help, no TensorFlow log lines at the default level ----------

import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

NATIVE_LOG = re.compile(r"^[IWEF]\d{4} |cuInit|oneDNN|cpu_feature_guard|absl::InitializeLog",
                        re.MULTILINE)
CONSOLE_SCRIPT = os.path.join(os.path.dirname(sys.executable), "beam-pipeline")


def _quiet_env():
    """The environment of a user who set no TensorFlow log level of their own."""
    return {k: v for k, v in os.environ.items()
            if k not in ("TF_CPP_MIN_LOG_LEVEL", "GRPC_VERBOSITY")}


def test_help_and_a_config_error_print_no_tensorflow_log_lines(csv_dir, tmp_path):
    proc = subprocess.run([CONSOLE_SCRIPT, "--help"], capture_output=True, text=True,
                          env=_quiet_env(), timeout=120)
    assert proc.returncode == 0 and "preprocess" in proc.stdout, proc.stderr
    assert not NATIVE_LOG.search(proc.stdout + proc.stderr), proc.stderr
    config = make_config(csv_dir, str(tmp_path / "out"))
    config["no_such_key"] = 1
    path = write_config(tmp_path / "config.yaml", config)
    proc = subprocess.run([CONSOLE_SCRIPT, "preprocess", "--config", path], capture_output=True,
                          text=True, env=_quiet_env(), timeout=300)
    assert proc.returncode == cli.EXIT_CONFIG_ERROR, proc.stderr
    assert proc.stderr.splitlines() == [l for l in proc.stderr.splitlines()
                                        if l.startswith("beam-pipeline: config error:")], \
        proc.stderr
    assert "no_such_key" in proc.stderr and not NATIVE_LOG.search(proc.stdout), proc.stdout
    # --log-level debug shows TensorFlow's own lines again. (A config error no longer
    # imports TensorFlow at all; predict does, to check its --input file.)
    missing = str(tmp_path / "no_such_rows.csv")
    for level in ([], ["--log-level", "debug"]):
        proc = subprocess.run([CONSOLE_SCRIPT, "predict", "--model", str(tmp_path), "--input",
                               missing, *level], capture_output=True, text=True,
                              env=_quiet_env(), timeout=300)
        assert proc.returncode == cli.EXIT_CONFIG_ERROR and missing in proc.stderr, proc.stderr
        assert bool(NATIVE_LOG.search(proc.stderr)) == bool(level), proc.stderr


HEAVY = ("tensorflow", "tensorflow_transform", "apache_beam", "keras")


def _modules_after(code):
    """The heavy libraries (HEAVY) in `sys.modules` after `code` ran in a fresh interpreter."""
    report = (f"\nimport sys\nprint('\\n' + ' '.join(m for m in {HEAVY!r} "
              "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code + report], capture_output=True, text=True,
                         env=_quiet_env(), timeout=300, check=True)
    return out.stdout.splitlines()[-1].split()  # the last line: --help prints before it


def test_the_cli_and_help_import_no_tensorflow_nor_beam():
    assert _modules_after("import beam_pipeline.cli") == []
    assert _modules_after("from beam_pipeline import cli\ntry:\n    cli.main(['--help'])\n"
                          "except SystemExit:\n    pass") == []


def test_loading_a_config_imports_no_tensorflow(csv_dir, tmp_path):
    path = write_config(tmp_path / "config.yaml", make_config(csv_dir, str(tmp_path / "out")))
    loaded = _modules_after(f"from beam_pipeline import cli\ncli.load_config({path!r})")
    assert loaded == [], loaded


@pytest.mark.parametrize("change", [
    lambda c: c.update(no_such_key=1),
    lambda c: c["features"].update(cat_small={"kind": "string_lookup", "max_tokens": 0}),
    lambda c: c["features"].update(f_normal={"kind": "normalization", "nope": 1}),
])
def test_a_config_error_imports_no_tensorflow_nor_beam(csv_dir, tmp_path, change):
    """A config error is reported before any heavy import (the CLI's start-up budget)."""
    config = make_config(csv_dir, str(tmp_path / "out"))
    config["features"] = dict(config["features"])
    change(config)
    path = write_config(tmp_path / "config.yaml", config)
    loaded = _modules_after(
        f"from beam_pipeline import cli\nassert cli.main(['preprocess', '--config', {path!r}])"
        " == cli.EXIT_CONFIG_ERROR")
    assert loaded == [], loaded


# Paths: local or gs:// only --------------------------------------------------------------

@pytest.mark.parametrize("scheme", ["s3", "hdfs", "az"])
@pytest.mark.parametrize("change,key", [
    (lambda c, url: c["input"].update(file_pattern=url + "/data/part-*"), "input.file_pattern"),
    (lambda c, url: c.update(input=[dict(c["input"]), dict(c["input"], file_pattern=url + "/x",
                                                             split="eval")]),
     "input[1].file_pattern"),
    (lambda c, url: c["output"].update(dir=url + "/out"), "output.dir"),
    (lambda c, url: c.update(preprocessing_fn=url + "/fn.py:preprocessing_fn", features={}),
     "preprocessing_fn"),
])
def test_a_path_with_an_unsupported_scheme_is_a_config_error(csv_dir, tmp_path, capsys,
                                                              scheme, change, key):
    config = make_config(csv_dir, str(tmp_path / "out"))
    config["input"] = dict(config["input"])
    config["output"] = dict(config["output"])
    url = f"{scheme}://bucket"
    change(config, url)
    path = write_config(tmp_path / "config.yaml", config)
    assert cli.main(["preprocess", "--config", path]) == cli.EXIT_CONFIG_ERROR
    err = capsys.readouterr().err
    assert f"config error: {key}: '{url}/" in err, err
    assert f"the {scheme}:// scheme is not supported" in err and "local or gs://" in err, err


def test_a_config_path_with_an_unsupported_scheme_is_a_config_error(capsys):
    for command in ("preprocess", "train", "refresh"):
        assert cli.main([command, "--config", "s3://bucket/config.yaml"]) == 2
        err = capsys.readouterr().err
        assert "config error: --config: 's3://bucket/config.yaml': the s3:// scheme is not " \
               "supported" in err, err


def test_gs_paths_are_kept_and_relative_paths_join_a_gs_config_folder():
    from beam_pipeline import config as config_lib  # pylint: disable=import-outside-toplevel
    raw = {"input": {"file_pattern": "data/part-*.csv"},
           "columns": [{"name": "x", "type": "float"}],
           "features": {"x": {"kind": "normalization"}},
           "output": {"dir": "gs://other/out"}}
    parsed = config_lib.parse_config(raw, "gs://b/c/config.yaml", base_dir="gs://b/c")
    assert parsed.inputs[0].file_pattern == "gs://b/c/data/part-*.csv"
    assert parsed.output.dir == "gs://other/out"


# Commands that run no pipeline take no unknown argument --------------------------------------

@pytest.mark.parametrize("argv,name,hint", [
    (["train", "--config", "c.yaml", "--epochs", "3"], "--epochs", None),
    (["train", "--config", "c.yaml", "--rn", "x"], "--rn", "--run"),
    (["predict", "--model", "m", "--input", "i.csv", "--limt", "3"], "--limt", "--limit"),
    (["predict", "--model", "m", "--input", "i.csv", "--runner=DataflowRunner"], "--runner",
     None),
    (["inspect", "out", "--record", "3"], None, None),  # an abbreviation argparse expands
    (["inspect", "out", "--recods", "3"], "--recods", "--records"),
    (["inspect", "out", "other"], "other", None),
])
def test_train_predict_and_inspect_refuse_unknown_arguments(monkeypatch, capsys, argv, name,
                                                            hint):
    def must_not_run(*_):
        raise AssertionError("the command ran")
    monkeypatch.setattr(cli, "_train", must_not_run)
    monkeypatch.setattr(cli, "_predict", must_not_run)
    monkeypatch.setattr(cli, "load_config", must_not_run)
    if name is None:  # a known argument: the command runs (inspect of a missing folder)
        assert cli.main(argv) == cli.EXIT_CONFIG_ERROR
        assert "unknown" not in capsys.readouterr().err
        return
    assert cli.main(argv) == cli.EXIT_CONFIG_ERROR
    err = capsys.readouterr().err
    assert f"beam-pipeline {argv[0]}: error: unknown " in err and f" {name}" in err, err
    assert (f"did you mean {hint}?" in err) if hint else "did you mean" not in err, err


# predict --model on an output folder, or on the model of an output with no good run ---------

def test_predict_on_an_output_folder_or_a_failed_runs_model_names_the_output(
        rejected_run, pipeline_run, tmp_path, capsys):
    config, _ = rejected_run
    out = config.output.dir
    failed = (f"{out}: the last preprocess failed: too many rejected records (exit 3); see "
              f"{out}/rejected/")
    rows = str(tmp_path / "rows.csv")
    assert cli.main(["predict", "--model", out, "--input", rows]) == cli.EXIT_CONFIG_ERROR
    assert capsys.readouterr().err.strip() == (
        f"beam-pipeline predict: error: --model {out} is a preprocess output, not a model, "
        f"and {failed}")
    model = os.path.join(out, "model", "serving")
    assert cli.main(["predict", "--model", model, "--input", rows]) == cli.EXIT_CONFIG_ERROR
    assert capsys.readouterr().err.strip() == (
        f"beam-pipeline predict: error: --model {model}: no model there, and {failed}")
    good = pipeline_run[0].output.dir
    assert cli.main(["predict", "--model", good, "--input", rows]) == cli.EXIT_CONFIG_ERROR
    err = capsys.readouterr().err
    assert f"--model {good} is a preprocess output, not a model; predict takes its " \
           "OUTPUT/model/serving" in err, err


def test_predict_on_a_failed_output_imports_no_tensorflow(rejected_run):
    config, _ = rejected_run
    code = (f"from beam_pipeline import cli\nassert cli.main(['predict', '--model', "
            f"{config.output.dir!r}, '--input', 'rows.csv']) == 2")
    assert _modules_after(code) == []
