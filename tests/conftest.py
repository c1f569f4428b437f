"""Shared pipeline runs: Beam + tf.Transform start slowly, so each run serves many tests."""

import gzip
import os
import shutil
import subprocess
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVAL_FRACTION = 0.25

COLUMNS = [
    {"name": "id", "type": "int"},
    {"name": "f_normal", "type": "float"},
    {"name": "f_uniform", "type": "float"},
    {"name": "f_missing", "type": "float"},
    {"name": "cat_small", "type": "string"},
    {"name": "cat_mid", "type": "string"},
    {"name": "cat_big", "type": "string"},
    {"name": "int_cat", "type": "int"},
    {"name": "text", "type": "string"},
    {"name": "label", "type": "int"},
]

FEATURES = {
    "id": {"kind": "passthrough"},
    "f_normal": {"kind": "normalization"},
    "f_missing": {"kind": "normalization", "missing_indicator": True},
    "cat_small": {"kind": "string_lookup"},
    "cat_mid": {"kind": "string_lookup", "max_tokens": 60, "min_frequency": 2},
    "cat_big": {"kind": "string_lookup", "max_tokens": 100, "num_oov_indices": 4},
    "int_cat": {"kind": "integer_lookup", "num_oov_indices": 3},
    "text": {"kind": "text_vectorization", "max_tokens": 300, "output_sequence_length": 12},
    # Kinds whose outputs are buckets, bins and vectors, so training and the exported model
    # cover them too (their Keras parity is in test_keras_parity).
    "f_uniform_bins": {"kind": "discretization", "column": "f_uniform", "num_bins": 5},
    "f_uniform_scaled": {"kind": "min_max", "column": "f_uniform"},
    "cat_big_hash": {"kind": "hashing", "column": "cat_big", "num_bins": 64},
    "cat_small_x_int_cat": {"kind": "hashed_crossing", "columns": ["cat_small", "int_cat"],
                            "num_bins": 32},
    "cat_mid_one_hot": {"kind": "string_lookup", "column": "cat_mid", "max_tokens": 20,
                        "output_mode": "one_hot"},
    "text_tf_idf": {"kind": "text_vectorization", "column": "text", "max_tokens": 64,
                    "ngrams": 2, "output_mode": "tf_idf"},
}


# The slowest files, first: each is a chain of console-script runs or a whole emulator
# session. scripts/test.sh runs the files two at a time (`--dist loadfile`) in this order
# (`--no-loadscope-reorder`; xdist would otherwise start with the files that have the most
# tests), so both workers start on these and the quick files fill in after, instead of one
# worker running a long chain alone at the end.
SLOW_FIRST = ("test_gcs.py", "test_crash_points_refresh.py", "test_crash_points_preprocess.py",
              "test_messy_property.py", "test_output_lock.py", "test_full_disk.py",
              "test_portable_runner.py", "test_refresh.py")


def pytest_collection_modifyitems(items):
    """Puts the SLOW_FIRST files' tests first, in that order; the rest keep theirs."""
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(os.path.basename(str(item.fspath)), len(rank)))


def make_config(data_dir, out_dir, **overrides):
    """A config dict over the test CSV shards (plain and gzip)."""
    config = {
        "input": {"format": "csv", "file_pattern": os.path.join(data_dir, "part-*"),
                  "header": True},
        "columns": COLUMNS,
        "label": {"column": "label"},
        "split": {"eval_fraction": EVAL_FRACTION, "key": "id"},
        "features": FEATURES,
        "output": {"dir": out_dir, "num_shards": 2},
    }
    config.update(overrides)
    return config


def write_config(path, config):
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
    return str(path)


@pytest.fixture(scope="session")
def csv_dir(tmp_path_factory):
    """1,500 generated rows in three shards, one of them gzipped."""
    data = tmp_path_factory.mktemp("csv")
    subprocess.run([sys.executable, os.path.join(REPO, "scripts", "make_data.py"),
                    "--rows", "1500", "--shards", "3", "--out", str(data), "--seed", "7"],
                   check=True, capture_output=True)
    plain = data / "part-00002-of-00003.csv"
    with open(plain, "rb") as src, gzip.open(str(plain) + ".gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    plain.unlink()
    return str(data)


@pytest.fixture(scope="session")
def pipeline_run(csv_dir, tmp_path_factory):
    """One in-process run of the preprocessing job; returns (config, summary)."""
    from beam_pipeline.job import preprocess
    from beam_pipeline.config import load_config

    root = tmp_path_factory.mktemp("run")
    path = write_config(root / "config.yaml", make_config(csv_dir, str(root / "out")))
    config = load_config(path)
    summary = preprocess.run(config, preprocess.pipeline_options([]))
    return config, summary


def run_preprocess_cli(csv_dir, root, *beam_args):
    """The conftest job through the installed console script, in a subprocess, with
    progress every 0.2 s; returns (completed process, output folder)."""
    out = str(root / "out")
    path = write_config(root / "config.yaml", make_config(csv_dir, out))
    exe = os.path.join(os.path.dirname(sys.executable), "beam-pipeline")
    proc = subprocess.run([exe, "preprocess", "--config", path, "--progress-interval", "0.2",
                           *beam_args], capture_output=True, text=True, timeout=600)
    return proc, out


@pytest.fixture(scope="session")
def cli_run(csv_dir, tmp_path_factory):
    """The same job through the installed console script, in a subprocess."""
    return run_preprocess_cli(csv_dir, tmp_path_factory.mktemp("cli"))


# Messy data on the default path -----------------------------------------------------------
# The fixtures above use one clean generator and `split.key: id`. These run the messy
# shards of tests/messy_data.py through the config a README reader writes: no format,
# header, split, num_shards or reject limit (all defaults).

MESSY_SEED = 11
MESSY_FEATURES = {name: FEATURES[name] for name in (
    "id", "f_normal", "f_missing", "cat_small", "cat_mid", "cat_big", "int_cat", "text")}


def messy_config(data_dir, out_dir, **overrides):
    """The default-path config over the messy shards (`overrides` replace sections)."""
    config = {
        "input": {"file_pattern": os.path.join(data_dir, "part-*")},
        "columns": COLUMNS,
        "label": {"column": "label"},
        "features": MESSY_FEATURES,
        "output": {"dir": out_dir},
    }
    config.update(overrides)
    return config


@pytest.fixture(scope="session")
def messy_data(tmp_path_factory):
    """The messy shards (about 2,000 rows, one 3 MB field) and what each record must become."""
    from tests.messy_data import write_messy_csv
    return write_messy_csv(str(tmp_path_factory.mktemp("messy_csv")), seed=MESSY_SEED)


@pytest.fixture(scope="session")
def messy_csv_dir(messy_data):
    return messy_data.folder


def run_messy(data_dir, root, **overrides):
    """One in-process run of the default-path config; returns (config, summary)."""
    from beam_pipeline.job import preprocess
    from beam_pipeline.config import load_config
    path = write_config(root / "config.yaml",
                        messy_config(data_dir, str(root / "out"), **overrides))
    config = load_config(path)
    return config, preprocess.run(config, preprocess.pipeline_options([]))


@pytest.fixture(scope="session")
def messy_run(messy_csv_dir, tmp_path_factory):
    """The messy shards, default config: no `split` section (the whole row is hashed)."""
    return run_messy(messy_csv_dir, tmp_path_factory.mktemp("messy_run"))


@pytest.fixture(scope="session")
def messy_keyed_run(messy_csv_dir, tmp_path_factory):
    """The same with `split: {key: id}`."""
    return run_messy(messy_csv_dir, tmp_path_factory.mktemp("messy_keyed_run"),
                     split={"key": "id"})


@pytest.fixture(scope="session")
def messy_resharded_cli_run(messy_data, tmp_path_factory):
    """The same records in other shards and order, through the console script with the
    default config; returns (completed process, output folder, the resharded data)."""
    from tests.messy_data import reshard
    root = tmp_path_factory.mktemp("messy_cli")
    data = reshard(messy_data, str(root / "data"), seed=MESSY_SEED + 1)
    out = str(root / "out")
    path = write_config(root / "config.yaml", messy_config(data.folder, out))
    exe = os.path.join(os.path.dirname(sys.executable), "beam-pipeline")
    proc = subprocess.run([exe, "preprocess", "--config", path], capture_output=True,
                          text=True, timeout=600)
    return proc, out, data


@pytest.fixture(scope="session")
def rejected_run(csv_dir, tmp_path_factory):
    """A first run stopped by the rejected-records gate (exit 3): 20 good rows of the
    conftest data and test_inspect's BAD_LINES, 6 rejects in 26 records, over the default
    limit of 1%. Returns (config, the gate's message); the output holds the failed run's
    summary, report and rejected/ only."""
    from beam_pipeline.job import preprocess
    from beam_pipeline.config import load_config
    from beam_pipeline.outputs import rejects
    from tests.test_inspect import BAD_LINES
    root = tmp_path_factory.mktemp("rejected_run")
    data = root / "csv"
    data.mkdir()
    with open(os.path.join(csv_dir, "part-00000-of-00003.csv"), "rb") as f:
        lines = f.readlines()[:21]  # the header and 20 rows
    (data / "part-00000.csv").write_bytes(b"".join(lines) + b"".join(
        line + b"\n" for line, _ in BAD_LINES))
    config = load_config(write_config(root / "config.yaml",
                                      make_config(str(data), str(root / "out"))))
    with pytest.raises(rejects.TooManyRejected) as raised:
        preprocess.run(config, preprocess.pipeline_options([]))
    return config, str(raised.value)
