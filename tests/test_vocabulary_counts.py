"""The Arrow-counted vocabulary writes exactly the file tft.vocabulary writes.

Each case runs both analyzers in one preprocessing_fn on the same tensor and compares the
files byte for byte: order (count descending, ties by bytes descending), top_k,
frequency_threshold, the empty-vocabulary line, ragged and integer inputs, many small
batches, and accumulators restored from tft's analysis cache. A property test checks
the pyarrow merge logic against collections.Counter on random splits.
"""

import collections
import os
import tempfile

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from beam_pipeline.features import vocabulary, vocabulary_counts
from tests.test_storage import bucket  # noqa: F401  (the object-store fixture)

# As shipped: the module fixture's "compact_often" case patches the module's value.
COMPACT_ROWS = vocabulary_counts.COMPACT_ROWS

# (name, input, top_k, frequency_threshold)
CASES = [
    ("all", "s", None, None),
    ("top10", "s", 10, None),
    ("min3", "s", None, 3),
    ("top10_min3", "s", 10, 3),
    ("top1", "s", 1, None),
    ("empty", "s", None, 10**9),
    ("tokens", "text", None, None),
    ("tokens_top25", "text", 25, 2),
    ("ints", "i", None, None),
]


def _data(rows, seed):
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(400)] + ["é", "ß", "a b", "A", "a", "zz", "\u4e2d"]
    pick = lambda: words[min(int(rng.zipf(1.4)), len(words)) - 1]  # noqa: E731
    return [{"s": pick(), "text": " ".join(pick() for _ in range(rng.integers(0, 6))),
             "i": int(rng.zipf(1.5)) - 20} for _ in range(rows)]


FEATURE_SPEC = {"s": tf.io.FixedLenFeature([], tf.string),
                "text": tf.io.FixedLenFeature([], tf.string),
                "i": tf.io.FixedLenFeature([], tf.int64)}


def preprocessing_fn(inputs):
    tensors = {"s": inputs["s"], "text": tf.strings.split(inputs["text"], " "),
               "i": inputs["i"]}
    outputs = {}
    for name, column, top_k, threshold in CASES:
        x = tensors[column]
        # The reference sees the same keys ours does (escaped; ints as sortable text).
        keys = vocabulary._escape(x)
        keys = keys.flat_values if isinstance(keys, tf.RaggedTensor) else keys
        ref = tft.vocabulary(keys, top_k=top_k, frequency_threshold=threshold,
                             vocab_filename=f"ref_{name}", store_frequency=True,
                             file_format=vocabulary.FILE_FORMAT)
        ours = vocabulary.learn(x, f"ours_{name}", top_k, threshold)
        # tft computes only the analyzers the outputs depend on.
        outputs[f"ref_{name}"] = vocabulary.apply(x, ref, f"ref_{name}")
        outputs[f"ours_{name}"] = vocabulary.apply(x, ours, f"ours_{name}")
    # tf_idf's vocabulary and the number of rows holding each entry, in one analysis.
    text = tensors["text"]
    vocab, df_path = vocabulary.learn_with_document_frequencies(text, "ours_df", 25, 2)
    outputs["ours_df"] = vocabulary.apply(text, vocab, "ours_df")
    df = vocabulary.document_frequencies(df_path, DF_TOP_K, "ours_df")
    outputs["ours_df_sum"] = tf.gather(tf.reduce_sum(df, keepdims=True),
                                       tf.zeros_like(inputs["i"]))
    return {k: v.flat_values if isinstance(v, tf.RaggedTensor) else v
            for k, v in outputs.items()}


DF_TOP_K = 25


def _analyze(data_by_span, out_dir, cache_dir=None, cached_spans=()):
    """AnalyzeDatasetWithCache over spans (None data = taken from the cache); writes
    transform_fn to out_dir and the new spans' cache to cache_dir."""
    metadata = tft.DatasetMetadata.from_feature_spec(FEATURE_SPEC)
    with beam.Pipeline(runner="FnApiRunner") as p:
        with tft_beam.Context(temp_dir=os.path.join(out_dir, "tmp"), desired_batch_size=64):
            data = {}
            for span, rows in data_by_span.items():
                key = tft_beam.analyzer_cache.DatasetKey(span)
                data[key] = None if rows is None else p | f"Create{span}" >> beam.Create(rows)
            keys = [tft_beam.analyzer_cache.DatasetKey(s) for s in cached_spans]
            cache = (p | tft_beam.analyzer_cache.ReadAnalysisCacheFromFS(cache_dir, keys)
                     if keys else {})
            transform_fn, output_cache = (
                (data, cache, metadata) | tft_beam.AnalyzeDatasetWithCache(preprocessing_fn))
            _ = transform_fn | tft_beam.WriteTransformFn(out_dir)
            new = [k for k, v in data.items() if v is not None]
            if cache_dir and new:
                _ = output_cache | tft_beam.analyzer_cache.WriteAnalysisCacheToFS(
                    p, cache_dir, new)
    return tft.TFTransformOutput(out_dir)


def _files(output, name):
    def read(prefix):
        with open(output.vocabulary_file_by_name(f"{prefix}_{name}"), "rb") as f:
            return f.read()
    return read("ref"), read("ours")


@pytest.fixture(scope="module", params=["default", "compact_often"])
def analyzed(request, tmp_path_factory):
    """Both analyzers over two spans, then again with both spans from the cache."""
    if request.param == "compact_often":  # emit and compact every few batches
        patch = pytest.MonkeyPatch()
        patch.setattr(vocabulary_counts, "COMPACT_ROWS", 50)
        # Part files of many small chunks: the merge goes round by round.
        patch.setattr(vocabulary_counts, "PART_CHUNK_ROWS", 3)
        request.addfinalizer(patch.undo)
    root = tmp_path_factory.mktemp(f"vocab_{request.param}")
    spans = {"a": _data(1500, 1), "b": _data(900, 2)}
    fresh = _analyze(spans, str(root / "fresh"), str(root / "cache"))
    # The spans' data is withheld: only the cached accumulators can produce the files.
    cached = _analyze({"a": None, "b": None}, str(root / "cached"), str(root / "cache"),
                      cached_spans=("a", "b"))
    return fresh, cached, spans


@pytest.mark.parametrize("name", [c[0] for c in CASES])
def test_same_file_as_tft_vocabulary(analyzed, name):
    fresh, _, _ = analyzed
    ref, ours = _files(fresh, name)
    assert ours == ref
    assert ours.count(b"\n") >= 1


@pytest.mark.parametrize("name", [c[0] for c in CASES])
def test_same_file_from_cached_accumulators(analyzed, name):
    fresh, cached, _ = analyzed
    assert _files(cached, name) == _files(fresh, name)


def test_counts_are_the_datas(analyzed):
    """Against an independent count: the data's tokens by Counter, sorted as tft sorts."""
    fresh, _, spans = analyzed
    rows = spans["a"] + spans["b"]
    counter = collections.Counter(r["s"].replace(" ", "\x1f").encode() for r in rows)
    want = sorted(((c, t) for t, c in counter.items()), reverse=True)[:10]
    _, ours = _files(fresh, "top10")
    assert ours == b"".join(b"%d %s\n" % pair for pair in want)


def _document_frequencies(output):
    with open(output.vocabulary_file_by_name("ours_df_df"), "rb") as f:
        return [int(line) for line in f.read().split()]


def test_document_frequencies_are_the_datas(analyzed):
    """tf_idf's vocabulary is tft's file; its df file holds, line for line, how many rows
    hold that entry (a row repeating a token counts once), from the data and from the
    cached accumulators alike."""
    fresh, cached, spans = analyzed
    rows = spans["a"] + spans["b"]
    with open(fresh.vocabulary_file_by_name("ours_df"), "rb") as f:
        ours = f.read()
    assert ours == _files(fresh, "tokens_top25")[0]
    # TF's split on " " keeps empty tokens, as Python's does.
    holding = collections.Counter(
        t for r in rows for t in set(r["text"].encode().split(b" ")))
    tokens = [vocabulary.unescape(line.split(b" ", 1)[1].decode()).encode()
              for line in ours.splitlines()]
    assert len(tokens) == DF_TOP_K
    want = [holding[t] for t in tokens]
    assert _document_frequencies(fresh) == want
    assert _document_frequencies(cached) == want
    # Fewer rows hold a token than it occurs, for some token (the check can tell).
    counts = [int(line.split(b" ", 1)[0]) for line in ours.splitlines()]
    assert any(d < c for d, c in zip(want, counts))
    assert all(d <= c for d, c in zip(want, counts))


def test_document_frequencies_in_the_graph_are_the_files(analyzed):
    fresh, _, _ = analyzed
    result = fresh.transform_raw_features(
        {"s": tf.constant(["a"]), "text": tf.constant(["a"]), "i": tf.constant([1], tf.int64)})
    assert int(result["ours_df_sum"].numpy()[0]) == sum(_document_frequencies(fresh))


def test_tf_idf_is_learned_in_one_analysis_phase(tmp_path):
    """tf_idf's document frequencies are counted with its vocabulary: the analysis of a
    config with tf_idf has one phase (it had two, the second reading the data again for
    the frequencies of the learned tokens)."""
    from beam_pipeline.config import load_config
    from beam_pipeline.job import preprocessing, schema
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "input": {"file_pattern": str(tmp_path / "unused-*.csv")},
        "columns": [{"name": "text", "type": "string"}, {"name": "x", "type": "float"}],
        "features": {
            "text": {"kind": "text_vectorization", "max_tokens": 50, "output_mode": "tf_idf"},
            "sparse": {"kind": "text_vectorization", "column": "text", "max_tokens": 50,
                       "output_mode": "tf_idf", "sparse": True, "ngrams": 2},
            "x": {"kind": "normalization"}},
        "output": {"dir": str(tmp_path / "out")}}))
    config = load_config(str(path))
    p = beam.Pipeline()
    with tft_beam.Context(temp_dir=str(tmp_path / "tmp")):
        _ = ((p | beam.Create([{"text": [b"a b"], "x": [1.0]}]),
              schema.raw_metadata(config.columns))
             | tft_beam.AnalyzeDataset(preprocessing.preprocessing_fn_for(config)))
    names = [t.unique_name for t in p.to_runner_api().components.transforms.values()]
    assert any("[Phase0]" in n for n in names)
    assert not [n for n in names if "[Phase1]" in n]


def test_empty_vocabulary_is_tfts_dummy_line(analyzed):
    fresh, _, _ = analyzed
    assert _files(fresh, "empty")[1] == vocabulary_counts.EMPTY_VOCABULARY_LINE + b"\n"


def test_cache_coder_round_trip():
    coder = vocabulary_counts.ShardCountsCoder()
    table = pa.table({"token": pa.array([b"a", b"\x00b", "é".encode()], pa.binary()),
                      "count": pa.array([3, 1, 2 ** 40], pa.int64())})
    shard, back = coder.decode_cache(coder.encode_cache((17, table)))
    assert shard == 17 and back.equals(table)


def test_top_k_must_be_positive():
    with pytest.raises(ValueError, match="top_k"):
        vocabulary_counts.vocabulary(tf.constant(["a"]), 0, None, "v", "v")


@settings(max_examples=60, deadline=None)
@given(tokens=st.lists(st.sampled_from([b"a", b"b", b"c", b"d", b"\xc3\xa9", b"", b"aa"]),
                       max_size=80),
       cuts=st.lists(st.integers(0, 80), max_size=6),
       top_k=st.one_of(st.none(), st.integers(1, 8)),
       threshold=st.integers(0, 4), compact_rows=st.integers(1, 30),
       accumulator_rows=st.integers(1, 30), chunk_rows=st.integers(1, 5))
def test_bundle_combine_and_merge_logic_matches_counter(tokens, cuts, top_k, threshold,
                                                        compact_rows, accumulator_rows,
                                                        chunk_rows):
    """The DoFn, the CombineFn and the part-file merge by hand, over random batch cuts,
    compaction points (of bundles and accumulators) and part chunk sizes (so the merge
    crosses many chunks)."""
    with pytest.MonkeyPatch.context() as patch, tempfile.TemporaryDirectory() as tmp:
        patch.setattr(vocabulary_counts, "COMPACT_ROWS", compact_rows)
        patch.setattr(vocabulary_counts, "ACCUMULATOR_MIN_ROWS", accumulator_rows)
        patch.setattr(vocabulary_counts, "PART_CHUNK_ROWS", chunk_rows)
        _check_by_hand(tokens, cuts, top_k, threshold, tmp)


def _check_by_hand(tokens, cuts, top_k, threshold, tmp):
    bounds = [0] + sorted(c for c in cuts if c <= len(tokens)) + [len(tokens)]
    do_fn = vocabulary_counts._CountInBundle()
    do_fn.start_bundle()
    partials = []
    for lo, hi in zip(bounds, bounds[1:]):
        batch = collections.Counter(tokens[lo:hi])
        keys = np.array(list(batch), dtype=object)
        partials += list(do_fn.process(
            (keys, np.array(list(batch.values()), np.int64),
             np.array([len(k) % 3 for k in batch], np.int64))))
    partials += [w.value for w in do_fn.finish_bundle()]
    combine = vocabulary_counts._SumCounts()
    # Two accumulators per shard, each fed tables in turn, then merged (as lifted
    # partial combines are).
    by_shard = collections.defaultdict(lambda: [combine.create_accumulator(),
                                                combine.create_accumulator()])
    for i, (shard, table) in enumerate(partials):
        accs = by_shard[shard]
        accs[i % 2] = combine.add_input(accs[i % 2], table)
    parts = [vocabulary_counts.write_part(
        (shard, combine.extract_output(combine.merge_accumulators(accs))),
        os.path.join(tmp, "parts"), top_k, threshold) for shard, accs in by_shard.items()]
    path = os.path.join(tmp, "vocab")
    vocabulary_counts.merge_parts(parts, path, top_k)
    want = sorted(((c, t) for t, c in collections.Counter(tokens).items()
                   if c >= threshold), reverse=True)[:top_k]
    with open(path, "rb") as f:
        got = f.read()
    assert got == (b"".join(b"%d %s\n" % pair for pair in want)
                   or vocabulary_counts.EMPTY_VOCABULARY_LINE + b"\n")


def test_an_accumulator_holds_about_twice_its_distinct_tokens():
    """Pending tables are summed once they hold twice the rows of the last sum: one
    shard's accumulator stays near its distinct tokens however many tables arrive (with
    a fixed row limit, 32 shards held 6x the vocabulary at 5M distinct values)."""
    rng = np.random.default_rng(3)
    distinct = np.array([b"tok-%05d" % i for i in range(2_000)], dtype=object)
    combine = vocabulary_counts._SumCounts()
    accumulator = combine.create_accumulator()
    most, added = 0, collections.Counter()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(vocabulary_counts, "ACCUMULATOR_MIN_ROWS", 256, raising=False)
        for _ in range(400):
            keys = np.unique(rng.choice(distinct, 300))
            added.update(keys)
            accumulator = combine.add_input(accumulator, pa.table({
                "token": pa.array(keys, pa.binary()),
                "count": pa.array(np.ones(len(keys), np.int64))}))
            most = max(most, accumulator.rows)
    assert most <= 2 * len(distinct) + 300, most
    summed = combine.extract_output(accumulator)
    assert dict(zip(summed["token"].to_pylist(), summed["count"].to_pylist())) == added


def test_each_shard_element_encodes_only_its_own_tokens():
    """A bundle's (shard, table) elements cross the shuffle through Beam's pickling coder;
    each must carry its own shard's tokens, not the buffers of the whole bundle's sums
    (a pickled slice holds its parent's buffers: at 20M distinct values that was 22 GB)."""
    import pickle
    keys = np.array([b"token-%06d" % i for i in range(20_000)], dtype=object)
    shards = np.arange(len(keys), dtype=np.int64) % vocabulary_counts.SHARDS
    do_fn = vocabulary_counts._CountInBundle()
    do_fn.start_bundle()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(vocabulary_counts, "COMPACT_ROWS", 1 << 20)  # one emission, at the end
        elements = list(do_fn.process((keys, np.ones(len(keys), np.int64), shards)))
        elements += [w.value for w in do_fn.finish_bundle()]
    assert sorted(shard for shard, _ in elements) == list(range(vocabulary_counts.SHARDS))
    whole = sum(table.nbytes for _, table in elements)
    for _, table in elements:
        assert table.num_rows == len(keys) // vocabulary_counts.SHARDS
        assert len(pickle.dumps(table)) < 4 * table.nbytes + 4096 < whole


def test_summed_shard_counts_encode_at_their_own_size():
    """A shard's summed counts cross two shuffles (the merge and the part write) through
    Beam's pickling coder: they must not carry the group-by's shared buffers."""
    import pickle
    rng = np.random.default_rng(7)
    universe = np.array([b"tok-%07d" % i for i in range(200_000)], dtype=object)
    tables = [pa.table({"token": pa.array(rng.choice(universe, 20_000), pa.binary()),
                        "count": pa.array(np.ones(20_000, np.int64))},
                       schema=vocabulary_counts._SCHEMA) for _ in range(6)]
    combine = vocabulary_counts._SumCounts()
    accumulators = []
    for table in tables:
        accumulators.append(combine.add_input(combine.create_accumulator(), table))
    merged = combine.merge_accumulators(accumulators)
    out = combine.extract_output(merged)
    assert out["count"].to_numpy().sum() == 6 * 20_000
    for encoded, table in ((pickle.dumps(merged), out), (pickle.dumps(out), out)):
        assert len(encoded) < 1.2 * table.nbytes + 4096


def test_the_merge_shuffles_carry_file_paths_not_tables(tmp_path):
    """A bundle's shard sums are spilled to Arrow files as they are made, and each shard
    is summed from its files: the shuffles after the read carry paths (Beam's local
    runners hold a shuffle's whole input in memory; with tables in it the job went from
    1.6 to 4.6 GB at 20M distinct values). The sums from the files are the data's."""
    from apache_beam.testing.util import assert_that
    rng = np.random.default_rng(11)
    batches = []
    for _ in range(5):
        keys = np.array([b"t%03d" % i for i in rng.choice(300, 120)], dtype=object)
        batches.append((keys, np.ones(len(keys), np.int64),
                        np.array([int(k[1:]) % 4 for k in keys], np.int64)))
    want = collections.Counter(k for keys, _, _ in batches for k in keys)
    temp = str(tmp_path / "tmp")

    def check(kind):
        def _check(elements):
            assert elements, kind
            for shard, spilled in elements:
                assert isinstance(spilled, str) and spilled.startswith(temp), (kind, spilled)
                table = vocabulary_counts.load(spilled)
                assert set(table["token"].to_pylist()) <= {k for k in want
                                                           if int(k[1:]) % 4 == shard}
            if kind == "merged":
                got = collections.Counter()
                for _, spilled in elements:
                    table = vocabulary_counts.load(spilled)
                    got.update(dict(zip(table["token"].to_pylist(),
                                        table["count"].to_pylist())))
                assert got == want
                assert sorted(s for s, _ in elements) == [0, 1, 2, 3]
        return _check

    with pytest.MonkeyPatch.context() as patch, tft_beam.Context(temp_dir=temp), \
            beam.Pipeline() as p:
        patch.setattr(vocabulary_counts, "SPILL_BYTES", 0)  # these tables are tiny
        partials = (p | beam.Create(batches, reshuffle=False)
                    | vocabulary_counts._CountBatches())
        merged = partials | vocabulary_counts._MergeShards()
        assert_that(partials, check("partial"), label="partials")
        assert_that(merged, check("merged"), label="merged")


def test_spill_and_load_round_trip(tmp_path):
    table = pa.table({"token": pa.array([b"a", b"", "é".encode()], pa.binary()),
                      "count": pa.array([3, 1, 2 ** 40], pa.int64()),
                      "df": pa.array([1, 1, 7], pa.int64())})
    path = vocabulary_counts.spill(table, str(tmp_path))
    assert os.path.dirname(path) == str(tmp_path)
    assert vocabulary_counts.load(path).equals(table)
    assert vocabulary_counts.load(table) is table


def test_spill_and_load_on_an_object_store(bucket):
    """On an object store (gs:// on Dataflow: no folders, NotFound for a missing object),
    through Beam's FileSystems: the spill never assumes the driver's disk."""
    table = pa.table({"token": pa.array([b"a", b"b"], pa.binary()),
                      "count": pa.array([2, 1], pa.int64())})
    path = vocabulary_counts.spill(table, "bpstore://tmp/tftransform_tmp")
    assert path.startswith("bpstore://tmp/tftransform_tmp/") and path.endswith(".arrow")
    assert [str(p.relative_to(bucket)) for p in bucket.rglob("*.arrow")] == [
        path[len("bpstore://"):]]
    assert vocabulary_counts.load(path).equals(table)


def test_only_large_tables_are_spilled(tmp_path):
    """Small partial sums travel inline: a wide config's many small vocabularies must not
    write a file per shard per vocabulary per bundle."""
    small = pa.table({"token": pa.array([b"a"], pa.binary()), "count": pa.array([1])})
    keys = np.array([b"token-%07d" % i for i in range(80_000)], dtype=object)
    large = pa.table({"token": pa.array(keys, pa.binary()),
                      "count": pa.array(np.ones(len(keys), np.int64))})
    assert large.nbytes >= vocabulary_counts.SPILL_BYTES > small.nbytes
    assert vocabulary_counts.spill_if_large(small, str(tmp_path)) is small
    path = vocabulary_counts.spill_if_large(large, str(tmp_path))
    assert os.listdir(tmp_path) == [os.path.basename(path)]
    assert vocabulary_counts.load(path).equals(large)
    # A bundle's fullest shard table (COMPACT_ROWS / SHARDS rows) of short tokens is
    # spilled: at the scale that needs it, partial sums cross the shuffle as files (a
    # 1 MB limit let them all travel inline, and 5M distinct values peaked at 1.8 GB).
    rows = COMPACT_ROWS // vocabulary_counts.SHARDS
    full = pa.table({"token": pa.array([b"t%07d" % i for i in range(rows)], pa.binary()),
                     "count": pa.array(np.ones(rows, np.int64))})
    assert isinstance(vocabulary_counts.spill_if_large(full, str(tmp_path)), str)
