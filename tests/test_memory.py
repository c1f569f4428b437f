"""Memory handed back between the analysis and the transform: the tables tf.Transform
builds while it traces and saves the final graph (beam_pipeline/features/tables.py,
beam_pipeline/job/memory.py)."""

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import yaml

S = ["a", "b", "a", "c", "a"]
TEXT = ["x y", "y", "z", "y y", "x"]

# Alone in a fresh process: RSS is the measure, and this suite's other tables and caches
# must not blur it.
_SCRIPT = textwrap.dedent("""
    import json
    import sys
    import tensorflow as tf
    from beam_pipeline.features import tables, vocabulary
    from beam_pipeline.job import memory

    def rss_mb():
        return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

    path, release = sys.argv[1], sys.argv[2] == "release"
    with open(path, "w") as f:
        f.writelines(f"{1_000_000 - i} tok{i}\\n" for i in range(1_000_000))
    memory.release_freed_memory()
    before = rss_mb()

    # As tft saves the final graph: traced with the real file, which builds the table
    # (tf_utils.construct_and_lookup_table lifts it out of the graph).
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def transform(x):
        return vocabulary.apply(x, path, "v")

    traced = transform.get_concrete_function()
    found = traced(tf.constant(["tok5", "tok999999", "absent"])).numpy().tolist()
    built = rss_mb()
    del traced, transform
    released = tables.release_traced() if release else 0
    memory.release_freed_memory()
    print(json.dumps({"found": found, "released": released, "before": before,
                      "built": built, "after": rss_mb()}))
""")


def _traced_table_memory(tmp_path, release):
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(tmp_path / "vocab"), release],
        capture_output=True, text=True, check=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_table_traced_into_a_graph_is_freed_on_release(tmp_path):
    """A vocabulary table built while a graph is traced is freed by `release_traced`:
    TensorFlow keeps a named table for the life of the process, and a run held a 20M
    value vocabulary twice (2 x 1 GB) while the transform ran."""
    mb = _traced_table_memory(tmp_path, "release")
    assert mb["found"] == [5, 999_999, -1]
    assert mb["released"] == 1, mb
    table = mb["built"] - mb["before"]
    assert table > 30, mb  # the table was built (about 60 MB)
    assert mb["after"] - mb["before"] < 0.3 * table, mb


def test_a_traced_table_outlives_its_graph_without_release(tmp_path):
    """The reference for the test above: without the release, the table stays."""
    mb = _traced_table_memory(tmp_path, "keep")
    table = mb["built"] - mb["before"]
    assert table > 30 and mb["after"] - mb["before"] > 0.7 * table, mb


def test_a_run_releases_the_final_graphs_tables_before_the_transform(tmp_path, monkeypatch):
    """The job destroys the tables tft built to save the final graph once it is saved,
    and the transform (which builds its own from the SavedModel) still maps every value
    as Keras's adapted layers do."""
    from beam_pipeline.config import load_config
    from beam_pipeline.features import tables
    from beam_pipeline.job import preprocess
    from beam_pipeline import api

    released = []
    real = tables.release_traced
    monkeypatch.setattr(tables, "release_traced", lambda: released.append(real()) or 0)
    data = tmp_path / "data.csv"
    data.write_text("id,s,text\n" + "".join(
        f"{i},{s},{t}\n" for i, (s, t) in enumerate(zip(S, TEXT))))
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "input": {"file_pattern": str(data)},
        "columns": [{"name": "id", "type": "int"}, {"name": "s", "type": "string"},
                    {"name": "text", "type": "string"}],
        "split": {"eval_fraction": 0.0},
        "features": {
            "s": {"kind": "string_lookup"},
            "text": {"kind": "text_vectorization", "output_mode": "tf_idf",
                     "max_tokens": 20}},
        "output": {"dir": str(tmp_path / "out")}}))
    preprocess.run(load_config(str(path)), preprocess.pipeline_options([]))
    # The final save's tables: s, text and text's document frequencies (tft's earlier
    # phases trace with placeholder files, released too).
    assert released and released[-1] >= 3, released
    assert not tables._TRACED  # pylint: disable=protected-access
    out = api.open_output(str(tmp_path / "out"))
    (features,) = list(out.dataset("train", batch_size=10))
    s_keras = keras.layers.StringLookup()
    s_keras.adapt(S)
    text_keras = keras.layers.TextVectorization(max_tokens=20, output_mode="tf_idf")
    text_keras.adapt(TEXT)
    # Row order is the runner's: compare each row's pair of outputs, as sorted lists.
    want = sorted(zip(np.asarray(s_keras(S)).ravel().tolist(),
                      np.round(np.asarray(text_keras(TEXT)), 5).tolist()))
    width = len(want[0][1])
    got = sorted(zip(features["s"].numpy().ravel().tolist(),
                     np.round(features["text"].numpy()[:, :width], 5).tolist()))
    assert got == want
    assert not features["text"].numpy()[:, width:].any()
