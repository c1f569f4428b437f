"""A user's own preprocessing_fn still gets every output of the job."""

import collections
import os

import numpy as np
import pytest
from apache_beam.io.localfilesystem import LocalFileSystem

from beam_pipeline.job import preprocess
from beam_pipeline.config import ConfigError, load_config
from tests import reference
from tests.conftest import EVAL_FRACTION, make_config, write_config

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def custom_run(csv_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("custom")
    config = make_config(csv_dir, str(root / "out"), features={},
                         preprocessing_fn=os.path.join(HERE, "data", "custom_preprocessing.py")
                         + ":preprocessing_fn")
    config.pop("label")
    loaded = load_config(write_config(root / "config.yaml", config))
    return loaded, preprocess.run(loaded, preprocess.pipeline_options([]))


def test_custom_fn_outputs_and_summary(custom_run, csv_dir):
    config, summary = custom_run
    raw = reference.raw_frame(csv_dir).set_index("id", drop=False)
    train = raw[~reference.is_eval(raw["id"], EVAL_FRACTION)]
    assert summary["rows"]["read"] == len(raw)
    assert summary["statistics"]["numeric"]["f_normal"]["mean"] == pytest.approx(
        train["f_normal"].mean(), rel=1e-5)
    city = summary["statistics"]["vocabularies"]["city"]
    counts = collections.Counter(train["cat_small"])
    assert [e["token"] for e in city["top"]] == reference.keras_order(counts)[:10]
    data = reference.read_transformed(config.output.dir, "eval")
    lo, hi = train["f_normal"].min(), train["f_normal"].max()
    expected = (raw.loc[data["id"], "f_normal"].to_numpy() - lo) / (hi - lo)
    np.testing.assert_allclose(data["x_scaled"], expected, rtol=1e-4, atol=1e-5)


class _RemoteFileSystem(LocalFileSystem):
    """A Beam file system with its own scheme (as gs:// is) over a local folder: nothing
    but FileSystems can read its paths, `open` and importlib cannot."""

    ROOT = None

    @classmethod
    def scheme(cls):
        return "remotefs"

    def _local(self, path):
        return os.path.join(self.ROOT, path[len("remotefs://"):])

    def exists(self, path):
        return super().exists(self._local(path))

    def open(self, path, mime_type="application/octet-stream", compression_type="auto"):
        return super().open(self._local(path), mime_type, compression_type)


def test_a_preprocessing_fn_file_on_an_object_store_is_read_through_filesystems(tmp_path):
    from beam_pipeline.job.preprocessing import load_user_function  # pylint: disable=import-outside-toplevel
    _RemoteFileSystem.ROOT = str(tmp_path)
    (tmp_path / "fns").mkdir()
    with open(os.path.join(HERE, "data", "custom_preprocessing.py")) as src:
        (tmp_path / "fns" / "user_fn.py").write_text(src.read())
    fn = load_user_function("remotefs://fns/user_fn.py:preprocessing_fn")
    assert callable(fn) and fn.__name__ == "preprocessing_fn"
    with pytest.raises(ConfigError, match="remotefs://fns/missing.py does not exist"):
        load_user_function("remotefs://fns/missing.py:preprocessing_fn")
