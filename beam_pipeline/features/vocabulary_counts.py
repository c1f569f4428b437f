"""An exact vocabulary analyzer that counts on Arrow tables: `tft.vocabulary`'s file, faster.

`tft.vocabulary` sends one `(token, count)` element per distinct token per batch through a
Beam shuffle, about 30 µs each; for text that is most of a run. This analyzer keeps its
result (the same file, line for line) and changes how the counts travel:

1. In the graph, each batch is reduced to its distinct keys, their counts and a hash shard
   per key (`tf.unique_with_counts`, FarmHash64 mod `SHARDS`).
2. `_CountInBundle` sums a bundle's batches with pyarrow group-bys and emits one
   `(shard, table)` element per shard when the bundle ends (or when the sums outgrow
   `COMPACT_ROWS`), so the shuffle carries tables, not tokens.
3. `CombinePerKey(_SumCounts)` merges each shard's tables. Beam lifts it (partial sums
   before the shuffle on Dataflow), and no accumulator holds more than one shard's tokens,
   so memory stays bounded as cardinality grows.
4. Each shard keeps the tokens that pass `frequency_threshold` and its own top `top_k`
   (the global top k is among them), and one step sorts that union and writes the file.

The order is tft's: count descending, ties broken by token bytes descending. The file is
"<count> <token>" lines (tft's `store_frequency=True` text format); an empty vocabulary is
tft's single dummy line. The analyzer is cacheable (`tft_beam.AnalyzeDatasetWithCache`):
a span's accumulators are its `(shard, table)` pairs, stored as Arrow IPC.
"""

import struct
from typing import Iterable, List, Optional, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import tensorflow as tf
import tensorflow_transform as tft
from apache_beam.transforms import window
from tensorflow_transform import analyzers
from tensorflow_transform.beam import experimental as tft_beam_experimental

# Hash shards of the key space: the unit of parallelism in the merge and the bound on an
# accumulator (about 1/SHARDS of the distinct tokens).
SHARDS = 32
# Summed rows a bundle or an accumulator holds before it compacts (and a bundle emits).
COMPACT_ROWS = 1 << 20
# What tft writes when a vocabulary has no entries (tensorflow_transform/analyzers.py).
EMPTY_VOCABULARY_LINE = b"1 49d0cd50-04bb-48c0-bc6f-5b575dce351a"
# What lookups read while the graph is traced, before the real file exists (tft's value).
TEMPORARY_ASSET = b"1 TEMPORARY_ASSET_VALUE"

# Part of the analysis cache key: change it when the accumulators' layout changes.
CACHE_FORMAT = 1

_SCHEMA = pa.schema([("token", pa.binary()), ("count", pa.int64())])
_ORDER = [("count", "descending"), ("token", "descending")]


def vocabulary(keys: tf.Tensor, top_k: Optional[int], frequency_threshold: Optional[int],
               vocab_filename: str, name: str) -> tf.Tensor:
    """In a `preprocessing_fn`: the exact vocabulary of the string tensor `keys`.

    Args:
      keys: a 1-D `tf.string` tensor of one batch's values (already flattened).
      top_k: keep the `top_k` most frequent tokens, or all when None.
      frequency_threshold: keep tokens seen at least this many times (None: all).
      vocab_filename: the asset's file name (as `tft.vocabulary`'s argument).
      name: scope for the analyzer's graph nodes.

    Returns:
      The deferred path of a "<count> <token>" text file in tft's order, registered under
      `vocab_filename` so `TFTransformOutput.vocabulary_file_by_name` finds it.
    """
    if top_k is not None and top_k <= 0:
        raise ValueError(f"top_k must be positive, got {top_k}")
    filename = analyzers.sanitized_vocab_filename(vocab_filename)
    with tf.compat.v1.name_scope(name):
        uniques, _, counts = tf.unique_with_counts(tf.reshape(keys, [-1]), out_idx=tf.int64)
        shards = tf.strings.to_hash_bucket_fast(uniques, SHARDS)
        (path,) = tft.experimental.ptransform_analyzer(
            [uniques, counts, shards],
            tft.experimental.CacheablePTransformAnalyzer(
                make_accumulators_ptransform=_CountBatches(),
                merge_accumulators_ptransform=_MergeShards(),
                extract_output_ptransform=_WriteVocabulary(
                    filename, top_k, frequency_threshold or 0),
                cache_coder=ShardCountsCoder()),
            output_dtypes=[tf.string], output_shapes=[[]],
            output_asset_default_values=[TEMPORARY_ASSET], name="counts")
    # ptransform_analyzer cannot mix asset and value outputs, so unlike tft.vocabulary the
    # size is not annotated; TFTransformOutput.vocabulary_size_by_name counts the lines.
    analyzers.register_vocab(filename, file_format="text")
    return path


# --------------------------------------------------------------------------- tables

def sum_counts(tables: List[pa.Table]) -> pa.Table:
    """Tables of (token, count) -> one table with each token once and its counts summed."""
    if not tables:
        return _SCHEMA.empty_table()
    summed = pa.concat_tables(tables).group_by("token", use_threads=False).aggregate(
        [("count", "sum")])
    return pa.table([summed["token"], summed["count_sum"]], schema=_SCHEMA)


def prune(table: pa.Table, top_k: Optional[int], frequency_threshold: int) -> pa.Table:
    """Tokens with count >= `frequency_threshold`, sorted in tft's order, the first `top_k`."""
    if frequency_threshold > 1:
        table = table.filter(pc.greater_equal(table["count"], frequency_threshold))
    table = table.take(pc.sort_indices(table, _ORDER))
    return table if top_k is None else table.slice(0, top_k)


def vocabulary_lines(table: pa.Table) -> bytes:
    """A sorted (token, count) table -> tft's "<count> <token>\\n" file content."""
    if table.num_rows == 0:
        return EMPTY_VOCABULARY_LINE + b"\n"
    counts = table["count"].to_pylist()
    tokens = table["token"].to_pylist()
    return b"".join(b"%d %s\n" % pair for pair in zip(counts, tokens))


class _ShardTables:
    """One shard's (token, count) tables, summed into one when they grow."""

    def __init__(self):
        self.pending: List[pa.Table] = []
        self.rows = 0
        self._summed = True

    def add(self, table: pa.Table) -> None:
        self.pending.append(table)
        self.rows += table.num_rows
        self._summed = len(self.pending) == 1 and self._summed

    def compact(self) -> pa.Table:
        if not (self._summed and len(self.pending) == 1):
            self.pending = [sum_counts(self.pending)]
            self.rows, self._summed = self.pending[0].num_rows, True
        return self.pending[0]


# --------------------------------------------------------------------------- Beam stages

class _CountInBundle(beam.DoFn):
    """(keys, counts, shards) batches -> (shard, summed table) per shard per bundle."""

    def start_bundle(self):
        self._batches: List[pa.Table] = []
        self._rows = 0

    def process(self, batch):
        keys, counts, shards = batch
        self._batches.append(pa.table({"token": pa.array(keys, pa.binary()),
                                       "count": pa.array(counts, pa.int64()),
                                       "shard": pa.array(shards, pa.int64())}))
        self._rows += len(keys)
        if self._rows >= COMPACT_ROWS:
            yield from self._emit()

    def finish_bundle(self):
        for element in self._emit():
            yield window.GlobalWindows.windowed_value(element)

    def _emit(self) -> Iterable[Tuple[int, pa.Table]]:
        if not self._batches:
            return
        summed = pa.concat_tables(self._batches).group_by(
            ["shard", "token"], use_threads=False).aggregate([("count", "sum")])
        self._batches, self._rows = [], 0
        # Sorted by shard, each shard is one contiguous slice.
        summed = summed.take(pc.sort_indices(summed, [("shard", "ascending")]))
        shards = summed["shard"].to_numpy()
        starts = np.flatnonzero(np.diff(shards, prepend=-1))
        ends = np.append(starts[1:], len(shards))
        for start, end in zip(starts, ends):
            part = summed.slice(start, end - start)
            yield int(shards[start]), pa.table([part["token"], part["count_sum"]],
                                               schema=_SCHEMA)


class _SumCounts(beam.CombineFn):
    """Merges one shard's (token, count) tables; compacts before it holds COMPACT_ROWS."""

    def create_accumulator(self):
        return _ShardTables()

    def add_input(self, accumulator, table):
        accumulator.add(table)
        if accumulator.rows >= COMPACT_ROWS:
            accumulator.compact()
        return accumulator

    def merge_accumulators(self, accumulators):
        merged = _ShardTables()
        for accumulator in accumulators:
            for table in accumulator.pending:
                merged.add(table)
        merged.compact()
        return merged

    def compact(self, accumulator):
        accumulator.compact()
        return accumulator

    def extract_output(self, accumulator):
        return accumulator.compact()


class _Stable:
    """A repr without the object's address: tft keys its analysis cache on the repr."""

    def __repr__(self):
        params = "".join(f", {k.lstrip('_')}={getattr(self, k)!r}"
                         for k in self._cache_key_fields)
        return f"{type(self).__name__}(format={CACHE_FORMAT}, shards={SHARDS}{params})"

    _cache_key_fields = ()


class _CountBatches(_Stable, beam.PTransform):
    """make_accumulators: the graph's per-batch counts -> (shard, table) partial sums."""

    def expand(self, batches):
        return batches | "CountInBundle" >> beam.ParDo(_CountInBundle())


class _MergeShards(_Stable, beam.PTransform):
    """merge_accumulators: (shard, table) partial sums -> one (shard, table) per shard."""

    def expand(self, partials):
        return partials | "SumPerShard" >> beam.CombinePerKey(_SumCounts())


class _WriteVocabulary(_Stable, tft_beam_experimental.PTransformAnalyzer):
    """extract_output: per-shard sums -> the vocabulary file's path."""

    _cache_key_fields = ("_filename", "_top_k", "_frequency_threshold")

    def __init__(self, filename: str, top_k: Optional[int], frequency_threshold: int):
        super().__init__()
        self._filename = filename
        self._top_k = top_k
        self._frequency_threshold = frequency_threshold

    def expand(self, shard_sums):
        top_k, threshold = self._top_k, self._frequency_threshold
        path = f"{self.base_temp_dir}/{self._filename}"
        return (
            shard_sums
            | "PruneShards" >> beam.Map(lambda kv: prune(kv[1], top_k, threshold))
            | "Gather" >> beam.combiners.ToList()
            | "SortAndWrite" >> beam.Map(_sort_and_write, path, top_k))


def _sort_and_write(shard_tables: List[pa.Table], path: str, top_k: Optional[int]) -> np.ndarray:
    """The pruned shards -> the file at `path`; returns the path as a bytes scalar."""
    table = prune(pa.concat_tables([_SCHEMA.empty_table()] + shard_tables), top_k, 0)
    tf.io.gfile.makedirs(path.rsplit("/", 1)[0])
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(vocabulary_lines(table))
    return np.array(path.encode())


class ShardCountsCoder(tft.experimental.PTransformAnalyzerCacheCoder):
    """Caches a (shard, table) accumulator as a 4-byte shard then an Arrow IPC stream."""

    def encode_cache(self, cache):
        shard, table = cache
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, _SCHEMA) as writer:
            writer.write_table(table)
        return struct.pack("<i", shard) + sink.getvalue().to_pybytes()

    def decode_cache(self, encoded_cache):
        (shard,) = struct.unpack("<i", encoded_cache[:4])
        return shard, pa.ipc.open_stream(encoded_cache[4:]).read_all()
