"""`--overwrite` over a run that crashed mid-write: the old outputs go, Beam's `beam-temp-*`
debris included, on the local file system and on an object store (no folders), once the
new run (built beside them, see tests/test_overwrite_atomic.py) is complete."""

import glob
import json
import os
import shutil

import pytest
import tensorflow as tf
from apache_beam.io.filesystem import FileMetadata, FileSystem

from beam_pipeline.outputs import layout
from beam_pipeline.job import preprocess
from beam_pipeline.config import ConfigError, load_config
from tests.conftest import make_config, write_config

DEBRIS_UNDER = ("data/train", "data/eval", "statistics", "rejected")


def _crash_debris(out):
    """What a run killed mid-write leaves: Beam's temp folders next to the outputs, its own
    temp folder, and no run summary or report (they are written last)."""
    for folder in DEBRIS_UNDER:
        temp = os.path.join(out, folder, "beam-temp-xyz")
        os.makedirs(temp, exist_ok=True)
        with open(os.path.join(temp, "0a1b2c3d"), "w") as f:
            f.write("half a shard")
    os.makedirs(os.path.join(out, ".tmp", "tftransform_tmp"), exist_ok=True)
    for name in (layout.RUN_SUMMARY, "report.html"):
        os.remove(os.path.join(out, name))


def _beam_temps(out):
    return [p for p in glob.glob(os.path.join(out, "**"), recursive=True)
            if "beam-temp" in os.path.basename(p.rstrip("/"))]


@pytest.fixture(scope="module")
def crashed_output(pipeline_run, tmp_path_factory):
    """A copy of a real run's output folder, made to look like a crashed run."""
    root = tmp_path_factory.mktemp("crashed")
    out = str(root / "out")
    shutil.copytree(pipeline_run[0].output.dir, out)
    _crash_debris(out)
    return root, out


def test_a_crashed_run_is_not_an_empty_folder(crashed_output):
    """Without --overwrite the folder is refused (it holds only subfolders: no top-level file)."""
    _, out = crashed_output
    assert not [n for n in os.listdir(out) if os.path.isfile(os.path.join(out, n))]
    with pytest.raises(ConfigError, match="is not empty"):
        preprocess.check_output(out, overwrite=False)
    assert _beam_temps(out)


def test_overwrite_after_a_crash_removes_beam_temp_debris(crashed_output, csv_dir,
                                                          pipeline_run):
    root, out = crashed_output
    assert len(_beam_temps(out)) == len(DEBRIS_UNDER)
    config = load_config(write_config(root / "config.yaml", make_config(csv_dir, out)))
    summary = preprocess.run(config, preprocess.pipeline_options([]), overwrite=True)

    assert _beam_temps(out) == []
    assert not os.path.exists(layout.temp_dir(out))
    # The outputs are complete: those of the first run, shard for shard.
    assert summary["status"] == "complete"
    assert summary["rows"] == pipeline_run[1]["rows"]
    with open(layout.run_summary_path(out)) as f:
        assert json.load(f)["status"] == "complete"
    for split, written in summary["rows"]["written"].items():
        shards = sorted(glob.glob(layout.data_pattern(out, split)))
        assert [os.path.basename(s) for s in shards] == [
            f"part-0000{i}-of-00002{layout.DATA_SUFFIX}" for i in range(2)]
        assert sum(1 for _ in tf.data.TFRecordDataset(shards, compression_type="GZIP")) == written
    assert glob.glob(layout.rejected_pattern(out))
    for path in (layout.statistics_path(out), layout.report_path(out),
                 os.path.join(out, "transform_fn", "saved_model.pb"),
                 os.path.join(out, "transformed_metadata", "schema.pbtxt"),
                 os.path.join(layout.raw_metadata_dir(out), "schema.pbtxt")):
        assert os.path.exists(path), path


# --------------------------------------------------------------------------- object store

class _ObjectStore(FileSystem):
    """An object store over a local folder, as gs:// behaves: no folders (`exists` of a
    folder is False; deleting a folder's path without a trailing `/` deletes no object).
    Only what `check_output` and `publish` use is implemented."""

    ROOT = None
    PREFIX = "bptestobjects://"

    @classmethod
    def scheme(cls):
        return "bptestobjects"

    def _local(self, path):
        return os.path.join(self.ROOT, path[len(self.PREFIX):])

    def has_dirs(self):
        return False

    def join(self, basepath, *paths):
        return "/".join([basepath.rstrip("/")] + [p.strip("/") for p in paths])

    def split(self, path):
        return tuple(path.rsplit("/", 1))

    def _list(self, dir_or_prefix):
        for dirpath, _, files in os.walk(self.ROOT):
            for name in files:
                local = os.path.join(dirpath, name)
                path = self.PREFIX + os.path.relpath(local, self.ROOT)
                if path.startswith(dir_or_prefix):
                    yield FileMetadata(path, os.path.getsize(local), os.path.getmtime(local))

    def exists(self, path):
        return os.path.isfile(self._local(path))

    def delete(self, paths):
        for path in paths:
            if path.endswith("/"):
                shutil.rmtree(self._local(path), ignore_errors=True)
            elif os.path.isfile(self._local(path)):
                os.remove(self._local(path))

    def copy(self, source_file_names, destination_file_names):
        for source, destination in zip(source_file_names, destination_file_names):
            os.makedirs(os.path.dirname(self._local(destination)), exist_ok=True)
            shutil.copyfile(self._local(source), self._local(destination))

    def _unused(self, *args, **kwargs):
        raise NotImplementedError

    mkdirs = create = open = rename = size = last_updated = metadata = _unused
    checksum = _unused


def _bucket_files(folder):
    return sorted(os.path.relpath(os.path.join(d, n), folder)
                  for d, _, names in os.walk(folder) for n in names)


def test_overwrite_clears_an_object_store_output(pipeline_run, tmp_path, monkeypatch):
    """On an object store `check_output` deletes nothing any more (the old run stays until
    the new one is complete); `publish` copies the new run's files into place, then deletes
    the old files, debris included, file by file, then the staged copies."""
    bucket = tmp_path / "bucket"
    shutil.copytree(pipeline_run[0].output.dir, bucket / "out")
    _crash_debris(str(bucket / "out"))
    stale = bucket / ("out" + layout.STAGING_MARK + "0123abcd")  # a killed --overwrite run
    shutil.copytree(pipeline_run[0].output.dir, stale)
    monkeypatch.setattr(_ObjectStore, "ROOT", str(bucket))
    out = _ObjectStore.PREFIX + "out"
    assert not layout.is_local(out)
    with pytest.raises(ConfigError, match="is not empty"):
        preprocess.check_output(out, overwrite=False)
    before = _bucket_files(bucket / "out")
    assert preprocess.check_output(out, overwrite=True) is True
    assert _bucket_files(bucket / "out") == before
    assert not os.path.exists(stale) or _bucket_files(stale) == []  # stale staging removed

    staging = layout.staging_dir(out, "4567cdef")
    shutil.copytree(pipeline_run[0].output.dir, bucket / staging[len(_ObjectStore.PREFIX):])
    preprocess.publish(staging, out)
    assert _bucket_files(bucket / "out") == _bucket_files(pipeline_run[0].output.dir)
    # (no debris file is left: the emulated bucket keeps empty local folders, a real one none)
    for name in _bucket_files(pipeline_run[0].output.dir):
        with open(bucket / "out" / name, "rb") as a, \
                open(os.path.join(pipeline_run[0].output.dir, name), "rb") as b:
            assert a.read() == b.read(), name
    # Only the published run's files are left in the bucket.
    assert _bucket_files(bucket) == ["out/" + n for n in _bucket_files(bucket / "out")]
