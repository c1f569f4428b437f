"""Folder semantics of `beam_pipeline.outputs.storage`: on local paths, and on a
folder-less object store emulated on disk (as GCS behaves: no folder exists, a delete
without the trailing `/` deletes nothing, a missing object raises NotFound, not OSError).
gs:// itself, against an emulator, is tests/test_gcs.py."""

import io
import os
import shutil

import pytest
from apache_beam.io.filesystem import FileMetadata, FileSystem
from apache_beam.io.filesystems import FileSystems
from google.api_core import exceptions as gexc

from beam_pipeline.outputs import storage


def _write(path, data=b"x"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


class _Objects(FileSystem):
    """`bpstore://...` objects kept as files under ROOT; folders do not exist."""

    ROOT = None
    PREFIX = "bpstore://"

    @classmethod
    def scheme(cls):
        return "bpstore"

    def _local(self, path):
        return os.path.join(self.ROOT, path[len(self.PREFIX):])

    def has_dirs(self):
        return False

    def join(self, basepath, *paths):
        return "/".join([basepath.rstrip("/")] + [p.strip("/") for p in paths])

    def split(self, path):
        return tuple(path.rsplit("/", 1))

    def _list(self, dir_or_prefix):
        for dirpath, _, names in os.walk(self.ROOT):
            for name in names:
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

    def rename(self, source_file_names, destination_file_names):
        self.copy(source_file_names, destination_file_names)
        self.delete(source_file_names)

    def open(self, path, mime_type="application/octet-stream", compression_type=None):
        if not os.path.isfile(self._local(path)):
            raise gexc.NotFound(f"GET {path}")  # what GCS raises, not an OSError
        with open(self._local(path), "rb") as f:
            return io.BytesIO(f.read())

    def create(self, path, mime_type="application/octet-stream", compression_type=None):
        os.makedirs(os.path.dirname(self._local(path)), exist_ok=True)
        return open(self._local(path), "wb")

    def _unused(self, *args, **kwargs):
        raise NotImplementedError

    mkdirs = size = last_updated = metadata = checksum = _unused


@pytest.fixture
def bucket(tmp_path, monkeypatch):
    root = tmp_path / "bucket"
    root.mkdir()
    monkeypatch.setattr(_Objects, "ROOT", str(root))
    return root


def _objects(root):
    return sorted(os.path.relpath(os.path.join(d, n), root)
                  for d, _, names in os.walk(root) for n in names)


# ---- local ------------------------------------------------------------------------------

def test_local_files_exists_is_empty(tmp_path):
    out = str(tmp_path / "out")
    assert not storage.exists(out) and storage.is_empty(out) and storage.files(out) == []
    os.makedirs(os.path.join(out, "data", "beam-temp-1"))
    assert storage.exists(out) and storage.is_empty(out)  # only folders: nothing to train on
    _write(os.path.join(out, "data", "train", "part-0"))
    _write(os.path.join(out, "a.json"))
    assert not storage.is_empty(out)
    assert storage.files(out) == sorted([os.path.join(out, "a.json"),
                                         os.path.join(out, "data", "train", "part-0")])
    assert storage.subfolders(out) == ["data"]


def test_local_delete_tree(tmp_path):
    out = str(tmp_path / "out")
    storage.delete_tree(out)  # absent: nothing happens
    _write(os.path.join(out, "x", "y", "z"))
    keep = str(tmp_path / "outside")
    _write(keep)
    storage.delete_tree(out)
    assert not os.path.exists(out) and os.path.exists(keep)


def test_local_replace_puts_the_new_run_in_place(tmp_path):
    out, staging = str(tmp_path / "out"), str(tmp_path / "out.staging-0")
    _write(os.path.join(out, "old"))
    _write(os.path.join(staging, "new"))
    storage.replace(staging, out, aside=str(tmp_path / "out.replaced-0"))
    assert os.listdir(out) == ["new"] and not os.path.exists(staging)
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_local_replace_puts_the_old_run_back_when_the_second_rename_fails(tmp_path,
                                                                           monkeypatch):
    out, staging = str(tmp_path / "out"), str(tmp_path / "out.staging-0")
    _write(os.path.join(out, "old"))
    _write(os.path.join(staging, "new"))
    rename = os.rename

    def failing(a, b):
        if a == staging:
            raise OSError("disk full")
        rename(a, b)
    monkeypatch.setattr(os, "rename", failing)
    with pytest.raises(OSError, match="disk full"):
        storage.replace(staging, out, aside=str(tmp_path / "out.replaced-0"))
    assert os.listdir(out) == ["old"]


def test_local_read_text_missing_is_none(tmp_path):
    assert storage.read_text(str(tmp_path / "nope")) is None
    assert storage.read_bytes(str(tmp_path / "no" / "such" / "dir")) is None
    _write(str(tmp_path / "f"), b"abc\n")
    assert storage.read_text(str(tmp_path / "f")) == "abc\n"


def test_local_move_tree_merges(tmp_path):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    _write(os.path.join(src, "a", "b"), b"1")
    _write(os.path.join(dst, "c"), b"2")
    storage.move_tree(src, dst)
    assert _objects(dst) == ["a/b", "c"] and not os.path.exists(src)


def test_local_siblings(tmp_path):
    os.makedirs(tmp_path / "out.staging-1")
    os.makedirs(tmp_path / "out.staging-2")
    _write(str(tmp_path / "out.staging-file"))  # a file, not a folder
    os.makedirs(tmp_path / "other")
    assert storage.siblings(str(tmp_path / "out.staging-")) == [
        str(tmp_path / "out.staging-1"), str(tmp_path / "out.staging-2")]


def test_missing_errors():
    import tensorflow as tf
    assert storage.is_missing(FileNotFoundError("x"))
    assert storage.is_missing(gexc.NotFound("x"))
    assert storage.is_missing(tf.errors.NotFoundError(None, None, "x"))
    assert not storage.is_missing(PermissionError("x"))
    assert not storage.is_missing(gexc.Forbidden("x"))


# ---- an object store (no folders) -------------------------------------------------------

def test_object_store_folder_exists_only_through_its_objects(bucket):
    out = _Objects.PREFIX + "out"
    assert not storage.exists(out) and storage.is_empty(out)
    _write(str(bucket / "out" / "data" / "train" / "part-0"))
    _write(str(bucket / "outside"))
    assert not FileSystems.exists(out)  # what made every check a no-op before
    assert storage.exists(out) and not storage.is_empty(out)
    assert storage.files(out) == [out + "/data/train/part-0"]
    assert storage.subfolders(out) == ["data"]
    assert not storage.exists(_Objects.PREFIX + "ou")  # a prefix of a name is no folder


def test_object_store_delete_tree_deletes_every_object_under_it(bucket):
    _write(str(bucket / "out" / "a" / "b"))
    _write(str(bucket / "out" / "c"))
    _write(str(bucket / "out2" / "d"))
    FileSystems.delete([_Objects.PREFIX + "out"])  # what the job did: deletes nothing
    assert _objects(bucket) == ["out/a/b", "out/c", "out2/d"]
    storage.delete_tree(_Objects.PREFIX + "out")
    assert _objects(bucket) == ["out2/d"]
    storage.delete_tree(_Objects.PREFIX + "out")  # absent: nothing happens


def test_object_store_read_missing_is_none(bucket):
    with pytest.raises(gexc.NotFound):  # what broke LATEST on gs://
        FileSystems.open(_Objects.PREFIX + "LATEST")
    assert storage.read_text(_Objects.PREFIX + "LATEST") is None
    _write(str(bucket / "LATEST"), b"id\n")
    assert storage.read_text(_Objects.PREFIX + "LATEST") == "id\n"


def test_object_store_replace_copies_summary_last_and_deletes_stale(bucket, monkeypatch):
    out, staging = _Objects.PREFIX + "out", _Objects.PREFIX + "out.staging-1"
    _write(str(bucket / "out" / "data" / "part-00000-of-00001"), b"old")
    _write(str(bucket / "out" / "summary.json"), b"old")
    _write(str(bucket / "out.staging-1" / "data" / "part-00000-of-00002"), b"new0")
    _write(str(bucket / "out.staging-1" / "data" / "part-00001-of-00002"), b"new1")
    _write(str(bucket / "out.staging-1" / "summary.json"), b"new")
    copied = []
    copy = _Objects.copy

    def recording(self, sources, targets):
        copied.append(list(targets))
        copy(self, sources, targets)
    monkeypatch.setattr(_Objects, "copy", recording)
    storage.replace(staging, out, last=lambda rel: rel == "summary.json")
    assert _objects(bucket) == ["out/data/part-00000-of-00002", "out/data/part-00001-of-00002",
                                "out/summary.json"]
    assert copied[-1] == [out + "/summary.json"]
    assert all(out + "/summary.json" not in c for c in copied[:-1])
    with open(bucket / "out" / "summary.json", "rb") as f:
        assert f.read() == b"new"


def test_object_store_move_tree_and_siblings(bucket):
    _write(str(bucket / "tmp" / "cache" / "span" / "a"), b"1")
    _write(str(bucket / "out.staging-1" / "x"))
    _write(str(bucket / "out.staging-2" / "y" / "z"))
    _write(str(bucket / "out.staging-file"))  # an object, not a folder
    storage.move_tree(_Objects.PREFIX + "tmp/cache", _Objects.PREFIX + "cache")
    assert storage.files(_Objects.PREFIX + "cache") == [_Objects.PREFIX + "cache/span/a"]
    assert storage.is_empty(_Objects.PREFIX + "tmp")
    assert storage.siblings(_Objects.PREFIX + "out.staging-") == [
        _Objects.PREFIX + "out.staging-1", _Objects.PREFIX + "out.staging-2"]


# ---- the commands' uses, on the folder-less store ---------------------------------------

def test_progress_dir_is_local_for_an_object_store_temp(tmp_path):
    from beam_pipeline.outputs import layout
    remote = layout.progress_dir("gs://bkt/out/.tmp")
    assert storage.is_local(remote) and remote == layout.progress_dir("gs://bkt/out/.tmp")
    assert remote != layout.progress_dir("gs://bkt/other/.tmp")
    local = layout.progress_dir(str(tmp_path / ".tmp"))
    assert local.startswith(str(tmp_path / ".tmp"))


def test_analysis_cache_commit_on_an_object_store(bucket):
    from beam_pipeline.job.pipeline import COMPLETE, AnalysisCache
    cache = AnalysisCache(_Objects.PREFIX + "cache", {"old": ["a"], "new": ["b"]},
                          staging=_Objects.PREFIX + "out/.tmp/analysis_cache")
    old, new = cache.key("old"), cache.key("new")
    _write(str(bucket / "cache" / old / COMPLETE), b"")
    _write(str(bucket / "cache" / old / "part"), b"old")
    _write(str(bucket / "cache" / new / "half"), b"interrupted commit")
    _write(str(bucket / "out" / ".tmp" / "analysis_cache" / new / "x" / "part"), b"new")
    assert cache.cached == ["old"]
    cache.commit()
    assert cache.cached == ["old", "new"]
    assert sorted(_objects(bucket / "cache")) == sorted([
        f"{old}/{COMPLETE}", f"{old}/part", f"{new}/{COMPLETE}", f"{new}/x/part"])
    assert storage.is_empty(_Objects.PREFIX + "out/.tmp/analysis_cache")


def test_runs_on_an_object_store(bucket):
    from beam_pipeline.refresh import runs
    root = _Objects.PREFIX + "root"
    assert runs.latest(root) is None  # no LATEST object: NotFound means absent
    assert runs.resolve(root) == root
    ids = ["20261101T000000Z-0000000a", "20261102T000000Z-0000000b", "20261103T000000Z-0000000c"]
    for rid in ids:
        _write(str(bucket / "root" / "runs" / rid / "data" / "part"))
        runs.write_manifest(runs.run_dir(root, rid), {"run_id": rid})
    _write(str(bucket / "root" / "runs" / "20261104T000000Z-0000000d" / "half"))  # killed
    runs.publish(root, ids[-1])
    assert runs.latest(root) == ids[-1]
    assert runs.clean_debris(root) == ["20261104T000000Z-0000000d"]
    assert runs.apply_retention(root, 1) == ids[:2]
    assert _objects(bucket / "root") == ["LATEST", f"runs/{ids[-1]}/MANIFEST.json",
                                         f"runs/{ids[-1]}/data/part"]


def test_a_missing_config_object_is_a_config_error(bucket, monkeypatch):
    """A missing config on an object store raises NotFound, not OSError: it must still be
    "cannot read" (exit 2), not a traceback (exit 1)."""
    from beam_pipeline import config as config_lib
    monkeypatch.setattr(config_lib, "SUPPORTED_SCHEMES", ("gs", "bpstore"))
    with pytest.raises(config_lib.ConfigError, match="cannot read bpstore://b/none.yaml"):
        config_lib.load_config("bpstore://b/none.yaml")
    _write(os.path.join(bucket, "b", "c.yaml"), b"{}")
    with pytest.raises(config_lib.ConfigError) as found:  # read, then rejected as a config
        config_lib.load_config("bpstore://b/c.yaml")
    assert "cannot read" not in str(found.value)


def test_user_vocabularies_are_summarized_on_an_object_store(bucket):
    """A user preprocessing_fn's vocabularies under transform_fn/assets/ are found on an
    object store, where the assets "folder" itself does not exist."""
    from beam_pipeline.outputs.summary import user_vocabulary_summaries
    _write(os.path.join(bucket, "out", "transform_fn", "assets", "city"), b"paris\nrome\n")
    _write(os.path.join(bucket, "out", "transform_fn", "assets", "sub", "x"), b"y\n")
    found = user_vocabulary_summaries("bpstore://out/transform_fn/assets", top_k=1)
    assert found == {"city": {"size": 2, "top": [{"token": "paris"}]}}


def test_a_file_gone_since_listing_is_a_reject_not_a_crash(monkeypatch):
    """On GCS a file deleted between listing and reading raises NotFound, not OSError: a
    folder input's file becomes an `unreadable_file` reject and a CSV header probe reads
    nothing, as a missing local file does."""
    import types
    from beam_pipeline.sources import csv as csv_source, folder_files

    def gone(path, *args, **kwargs):
        raise gexc.NotFound(f"GET {path}")

    monkeypatch.setattr(folder_files.FileSystems, "open", gone)
    reader = folder_files.FolderReader(types.SimpleNamespace(format="text_directory",
                                                             max_length=None))
    ((_, rejects),) = list(reader([("gs://b/class_a/1.txt", 0)]))
    assert [(r.reason, r.file) for r in rejects] == [("unreadable_file", "gs://b/class_a/1.txt")]
    assert csv_source._first_line("gs://b/x.csv", 1024) is None


def test_a_refused_job_removes_what_it_wrote_on_an_object_store(bucket, tmp_path):
    """submit's cleanup of a refused job goes through storage.delete_tree: every object
    under the folder, and a local folder, are gone; a missing folder is no error."""
    from beam_pipeline.job import submit
    _write(os.path.join(bucket, "out", "transformed_metadata", "schema.pbtxt"))
    _write(os.path.join(bucket, "keep", "x"))
    _write(str(tmp_path / "local" / "a" / "b"))
    submit._remove(["bpstore://out/transformed_metadata", str(tmp_path / "local"),
                    "bpstore://never"])
    assert _objects(bucket) == ["keep/x"] and not (tmp_path / "local").exists()
