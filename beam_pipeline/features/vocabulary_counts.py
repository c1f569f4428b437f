"""An exact vocabulary analyzer that counts on Arrow tables: `tft.vocabulary`'s file, faster.

`tft.vocabulary` sends one `(token, count)` element per distinct token per batch through a
Beam shuffle, about 30 µs each; for text that is most of a run. This analyzer keeps its
result (the same file, line for line) and changes how the counts travel:

1. In the graph, each batch is reduced to its distinct keys, their counts and a hash shard
   per key (`tf.unique_with_counts`, FarmHash64 mod `SHARDS`). Several vocabularies can
   share one analysis (`vocabularies`, for `features.packing`): the shard key is then
   `request * SHARDS + shard`, and everything below is per key.
2. `_CountInBundle` sums a bundle's batches with pyarrow group-bys and emits one
   `(shard, table)` element per shard when the bundle ends (or when the sums outgrow
   `COMPACT_ROWS`); a table of `SPILL_BYTES` or more is written at once to an Arrow IPC
   file in the analysis' temporary folder (`spill_if_large`), so the shuffle carries its
   path: a runner that holds a shuffle in memory holds paths and small tables.
3. Each shard's partial sums are read one by one and summed (`_SumCounts`, which sums
   its pending tables as they grow) and a large sum is spilled again: no step holds more
   than one shard's tokens, so memory stays bounded as cardinality grows.
4. Each shard keeps the tokens that pass `frequency_threshold` and its own top `top_k`
   (the global top k is among them), sorts them and writes them to a part file (Arrow IPC,
   in chunks of `PART_CHUNK_ROWS`) beside the vocabulary.
5. One step per vocabulary merges its sorted part files chunk by chunk into the
   vocabulary file (a k-way merge that holds one chunk per part), stopping at `top_k`.
   Only part paths travel as elements, so no element, and no step, holds the whole
   vocabulary: with no `top_k` and tens of millions of distinct values, memory is bounded
   by a shard's sum and the chunks.

The order is tft's: count descending, ties broken by token bytes descending. The file is
"<count> <token>" lines (tft's `store_frequency=True` text format); an empty vocabulary is
tft's single dummy line. A request with the keys' rows (`vocabulary_with_document_frequencies`)
also counts each token's documents (rows holding it) in the same pass, as a `df` column
that travels with the counts, and writes them as a second file of "<df>" lines in the
vocabulary's order: tf-idf then needs no second analysis phase. The analyzer is
cacheable (`tft_beam.AnalyzeDatasetWithCache`): a span's accumulators are its
`(shard, table)` pairs, stored as Arrow IPC (the table itself, read from its file).
"""

import contextlib
import struct
import uuid
from typing import Iterable, Iterator, List, NamedTuple, Optional, Tuple, Union

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import tensorflow as tf
import tensorflow_transform as tft
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms import window
import tensorflow_transform.beam as tft_beam
from tensorflow_transform import analyzer_nodes, analyzers, nodes
from tensorflow_transform.beam import experimental as tft_beam_experimental

# Hash shards of the key space: the unit of parallelism in the merge and the bound on an
# accumulator (about 1/SHARDS of the distinct tokens).
SHARDS = 32
# Rows of batches a bundle holds before it sums them and emits its shard tables.
COMPACT_ROWS = 1 << 20
# An accumulator sums its pending tables once they hold twice the rows of its last sum,
# and at least this many: it then holds at most about twice its shard's distinct tokens
# (a fixed 1M rows per shard was 32M rows across the shards, 6x the vocabulary at 5M
# distinct values).
ACCUMULATOR_MIN_ROWS = 1 << 16
# A partial sum at least this large (Arrow bytes) crosses the merge's shuffle as a file;
# a smaller one travels inline, so a wide config of small vocabularies does not write
# (on gs://, request) a file per shard per vocabulary per bundle. A bundle's shard table
# holds at most COMPACT_ROWS / SHARDS rows (about 1 MB): the limit must be well under.
SPILL_BYTES = 1 << 16
# Rows per record batch of a part file: the merge holds about one batch per part.
PART_CHUNK_ROWS = 1 << 15
# What tft writes when a vocabulary has no entries (tensorflow_transform/analyzers.py).
EMPTY_VOCABULARY_LINE = b"1 49d0cd50-04bb-48c0-bc6f-5b575dce351a"
# What lookups read while the graph is traced, before the real file exists (tft's value).
TEMPORARY_ASSET = b"1 TEMPORARY_ASSET_VALUE"

# What a document-frequency file reads as before it exists: one 0.
TEMPORARY_DF_ASSET = b"0"

# Part of the analysis cache key: change it when the accumulators' layout changes.
CACHE_FORMAT = 2

_SCHEMA = pa.schema([("token", pa.binary()), ("count", pa.int64())])
_DF_SCHEMA = _SCHEMA.append(pa.field("df", pa.int64()))
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
    (path,) = vocabularies([Request(keys, top_k, frequency_threshold, vocab_filename)], name)
    return path


def vocabulary_with_document_frequencies(
        keys: tf.Tensor, rows: tf.Tensor, top_k: Optional[int],
        frequency_threshold: Optional[int], vocab_filename: str,
        name: str) -> Tuple[tf.Tensor, tf.Tensor]:
    """`vocabulary`, and the number of rows holding each of its tokens, in one pass.

    Args:
      keys: a 1-D `tf.string` tensor of one batch's values (already flattened).
      rows: int64, the row of each key in the batch (a ragged tensor's `value_rowids()`).
      top_k, frequency_threshold, vocab_filename, name: as `vocabulary`.

    Returns:
      (the vocabulary's deferred path, the deferred path of its document frequencies: one
      "<df>" line per vocabulary line, in its order, registered as `<vocab_filename>_df`;
      "0" for tft's dummy line of an empty vocabulary).
    """
    (path, df_path) = vocabularies(
        [Request(keys, top_k, frequency_threshold, vocab_filename, rows)], name)
    return path, df_path


class Request(NamedTuple):
    """One vocabulary of a packed analysis: `vocabulary`'s arguments but the scope, and
    the keys' rows when its document frequencies are counted too."""

    keys: tf.Tensor
    top_k: Optional[int]
    frequency_threshold: Optional[int]
    vocab_filename: str
    rows: Optional[tf.Tensor] = None


def vocabularies(requests: List[Request], name: str) -> List[tf.Tensor]:
    """In a `preprocessing_fn`: several exact vocabularies counted by one Beam analysis.

    Each request's file is the one `vocabulary` writes for it alone, but one analyzer
    counts them all: a token's shard key is `request index * SHARDS + hash shard`, so the
    Beam stages, and the pipeline proto, do not grow with the number of vocabularies
    (tf.Transform adds about 18 transforms per `tft.vocabulary`).

    Returns:
      The deferred paths, in the order of `requests`, a request with rows followed by its
      document frequencies' path.
    """
    for request in requests:
        if request.top_k is not None and request.top_k <= 0:
            raise ValueError(f"top_k must be positive, got {request.top_k}")
    filenames = [analyzers.sanitized_vocab_filename(r.vocab_filename) for r in requests]
    df_filenames = [analyzers.sanitized_vocab_filename(f"{r.vocab_filename}_df")
                    if r.rows is not None else None for r in requests]
    with_df = any(f is not None for f in df_filenames)
    with tf.compat.v1.name_scope(name):
        uniques, counts, dfs, keys = [], [], [], []
        for index, request in enumerate(requests):
            flat = tf.reshape(request.keys, [-1])
            unique, position, count = tf.unique_with_counts(flat, out_idx=tf.int64)
            uniques.append(unique)
            counts.append(count)
            if with_df:
                dfs.append(_document_counts(unique, position, request.rows))
            keys.append(tf.strings.to_hash_bucket_fast(unique, SHARDS) + index * SHARDS)
        inputs = [tf.concat(uniques, 0), tf.concat(counts, 0)]
        inputs += [tf.concat(dfs, 0)] if with_df else []
        outputs = _cacheable_analyzer(
            inputs + [tf.concat(keys, 0)],
            tft.experimental.CacheablePTransformAnalyzer(
                make_accumulators_ptransform=_CountBatches(),
                merge_accumulators_ptransform=_MergeShards(),
                extract_output_ptransform=_WriteVocabularies(
                    filenames, [r.top_k for r in requests],
                    [r.frequency_threshold or 0 for r in requests], df_filenames),
                cache_coder=ShardCountsCoder()),
            temporary_assets=[v for f in df_filenames for v in (
                (TEMPORARY_ASSET,) if f is None else (TEMPORARY_ASSET, TEMPORARY_DF_ASSET))],
            name="counts")
    # ptransform_analyzer cannot mix asset and value outputs, so unlike tft.vocabulary the
    # size is not annotated; TFTransformOutput.vocabulary_size_by_name counts the lines.
    for filename in filenames + [f for f in df_filenames if f is not None]:
        analyzers.register_vocab(filename, file_format="text")
    return list(outputs)


def _document_counts(unique: tf.Tensor, position: tf.Tensor,
                     rows: Optional[tf.Tensor]) -> tf.Tensor:
    """Per unique key, the number of distinct rows holding it (0s without rows)."""
    size = tf.size(unique, out_type=tf.int64)
    if rows is None:
        return tf.zeros([size], tf.int64)
    pairs, _ = tf.unique(tf.cast(rows, tf.int64) * size + position, out_idx=tf.int64)
    return tf.math.bincount(pairs % size, minlength=size, maxlength=size, dtype=tf.int64)


def _cacheable_analyzer(inputs: List[tf.Tensor],
                        analyzer: "tft.experimental.CacheablePTransformAnalyzer",
                        temporary_assets: List[bytes], name: str) -> List[tf.Tensor]:
    """`tft.experimental.ptransform_analyzer` for a cacheable analyzer with one asset path
    per `temporary_assets` (what each file reads as before it is written): tft's own
    version gives every stage as many outputs as the result, and tft caches only
    single-output stages, so here the accumulating stages have one output (the per-key
    sums) and only the last has one per file."""
    def info(values):
        return [analyzer_nodes.TensorInfo(
            tf.string, [], analyzer_nodes.TemporaryAssetInfo(value, "text")) for value in values]

    with tf.compat.v1.name_scope(name):
        sums = analyzer_nodes.get_input_tensors_value_nodes(inputs)
        for stage, ptransform, partitionable, coder in (
                ("make_accumulators", analyzer.make_accumulators_ptransform, True, None),
                ("local_merge_accumulators", analyzer.merge_accumulators_ptransform, True,
                 analyzer.cache_coder),
                ("global_merge_accumulators", analyzer.merge_accumulators_ptransform, False,
                 None)):
            with tf.compat.v1.name_scope(stage):
                (sums,) = nodes.apply_multi_output_operation(
                    analyzer_nodes.PTransform, sums, ptransform=ptransform,
                    is_partitionable=partitionable, cache_coder=coder,
                    output_tensor_info_list=info([TEMPORARY_ASSET]))
        with tf.compat.v1.name_scope("extract_output"):
            paths = nodes.apply_multi_output_operation(
                analyzer_nodes.PTransform, sums, ptransform=analyzer.extract_output_ptransform,
                is_partitionable=False, output_tensor_info_list=info(temporary_assets))
        return [analyzer_nodes.wrap_as_tensor(path) for path in paths]


# --------------------------------------------------------------------------- tables

def sum_counts(tables: List[pa.Table]) -> pa.Table:
    """Tables of (token, count[, df]) -> one table with each token once and its counts
    (and document counts) summed."""
    if not tables:
        return _SCHEMA.empty_table()
    schema = tables[0].schema
    values = schema.names[1:]
    summed = pa.concat_tables(tables).group_by("token", use_threads=False).aggregate(
        [(column, "sum") for column in values])
    return own_buffers(pa.table([summed["token"]] + [summed[f"{c}_sum"] for c in values],
                                schema=schema))


def own_buffers(table: pa.Table) -> pa.Table:
    """The table copied into buffers of its own size, in one chunk.

    A group-by's output chunks, and any slice, are views of larger shared buffers, and
    Beam's pickling coder writes each view's whole buffer: a shard's summed counts,
    pickled between stages, came to chunks x their size (750 MB for 5M distinct tokens
    instead of 160 MB). Tables that cross a shuffle go through this first."""
    return table.take(np.arange(table.num_rows))


def prune(table: pa.Table, top_k: Optional[int], frequency_threshold: int) -> pa.Table:
    """Tokens with count >= `frequency_threshold`, sorted in tft's order, the first `top_k`."""
    if frequency_threshold > 1:
        table = table.filter(pc.greater_equal(table["count"], frequency_threshold))
    table = table.take(pc.sort_indices(table, _ORDER))
    return table if top_k is None else table.slice(0, top_k)


def vocabulary_lines(table: pa.Table) -> bytes:
    """(token, count) rows -> their "<count> <token>\\n" lines, built by Arrow, not per row."""
    if table.num_rows == 0:
        return b""
    counts = pc.cast(pc.cast(table["count"], pa.string()), pa.binary())
    return _joined_lines(pc.binary_join_element_wise(counts, table["token"],
                                                     pa.scalar(b" ", pa.binary())))


def document_frequency_lines(table: pa.Table) -> bytes:
    """(token, count, df) rows -> their "<df>\\n" lines, in the table's order."""
    if table.num_rows == 0:
        return b""
    return _joined_lines(pc.cast(pc.cast(table["df"], pa.string()), pa.binary()))


def _joined_lines(line) -> bytes:
    """Binary values -> their bytes, each followed by a newline, built by Arrow."""
    line = pc.binary_join_element_wise(line, pa.scalar(b"", pa.binary()),
                                       pa.scalar(b"\n", pa.binary()))
    if isinstance(line, pa.ChunkedArray):
        line = pa.concat_arrays(line.chunks) if line.num_chunks != 1 else line.chunk(0)
    line = line.cast(pa.large_binary())  # 64-bit offsets: a chunk may pass 2 GB of text
    offsets = np.frombuffer(line.buffers()[1], np.int64)[line.offset:line.offset + len(line) + 1]
    return line.buffers()[2].to_pybytes()[offsets[0]:offsets[-1]] if len(line) else b""


class _ShardTables:
    """One shard's (token, count) tables, summed into one when they grow."""

    def __init__(self):
        self.pending: List[pa.Table] = []
        self.rows = 0
        self.summed_rows = 0  # rows of the last sum
        self._summed = True

    def add(self, table: pa.Table) -> None:
        self.pending.append(table)
        self.rows += table.num_rows
        self._summed = len(self.pending) == 1 and self._summed

    def full(self) -> bool:
        """Whether the pending tables should be summed now (see ACCUMULATOR_MIN_ROWS)."""
        return self.rows >= max(ACCUMULATOR_MIN_ROWS, 2 * self.summed_rows)

    def compact(self) -> pa.Table:
        if not (self._summed and len(self.pending) == 1):
            self.pending = [sum_counts(self.pending)]
            self.rows, self._summed = self.pending[0].num_rows, True
            self.summed_rows = self.rows
        return self.pending[0]


# --------------------------------------------------------------------------- Beam stages

class _CountInBundle(beam.DoFn):
    """(keys, counts[, dfs], shards) batches -> (shard, summed table) per shard per bundle."""

    def start_bundle(self):
        self._batches: List[pa.Table] = []
        self._rows = 0

    def process(self, batch):
        keys, values, shards = batch[0], batch[1:-1], batch[-1]
        columns = {"token": pa.array(keys, pa.binary())}
        for name, column in zip(_DF_SCHEMA.names[1:], values):
            columns[name] = pa.array(column, pa.int64())
        columns["shard"] = pa.array(shards, pa.int64())
        self._batches.append(pa.table(columns))
        self._rows += len(keys)
        if self._rows >= COMPACT_ROWS:
            yield from self._emit()

    def finish_bundle(self):
        for element in self._emit():
            yield window.GlobalWindows.windowed_value(element)

    def _emit(self) -> Iterable[Tuple[int, pa.Table]]:
        if not self._batches:
            return
        values = self._batches[0].schema.names[1:-1]
        schema = _DF_SCHEMA if len(values) == 2 else _SCHEMA
        summed = pa.concat_tables(self._batches).group_by(
            ["shard", "token"], use_threads=False).aggregate([(c, "sum") for c in values])
        self._batches, self._rows = [], 0
        # One take per shard (fresh buffers, see own_buffers), not slices of one sorted
        # table: each of the SHARDS elements would carry every shard's tokens.
        shards = summed["shard"].to_numpy()
        order = np.argsort(shards, kind="stable")
        starts = np.flatnonzero(np.diff(shards[order], prepend=-1))
        ends = np.append(starts[1:], len(order))
        counts = pa.table([summed["token"]] + [summed[f"{c}_sum"] for c in values],
                          schema=schema)
        for start, end in zip(starts, ends):
            yield int(shards[order[start]]), counts.take(order[start:end])


class _SumCounts(beam.CombineFn):
    """Merges one shard's (token, count) tables; sums them as they grow (`_ShardTables.full`)."""

    def create_accumulator(self):
        return _ShardTables()

    def add_input(self, accumulator, table):
        accumulator.add(table)
        if accumulator.full():
            accumulator.compact()
        return accumulator

    def merge_accumulators(self, accumulators):
        merged = _ShardTables()
        for accumulator in accumulators:
            for table in accumulator.pending:
                merged.add(table)
                if merged.full():
                    merged.compact()
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
    """make_accumulators: the graph's per-batch counts -> (shard, spilled table) partial
    sums. Large tables go to files in the analysis' temporary folder as they are made (one
    fused step): a runner that holds a shuffle's input in memory, as Beam's local runners
    do, then holds paths, not every bundle's counts (at 20M distinct values the shuffle
    after the read took the job from 1.6 to 4.6 GB)."""

    def expand(self, batches):
        spill_dir = tft_beam.Context.create_base_temp_dir()
        return (batches
                | "CountInBundle" >> beam.ParDo(_CountInBundle())
                | "Spill" >> beam.Map(_spill_partial, spill_dir))


def _spill_partial(partial: Tuple[int, pa.Table], spill_dir: str) -> Tuple[int, "Spilled"]:
    shard, table = partial
    return shard, spill_if_large(table, spill_dir)


class _MergeShards(_Stable, beam.PTransform):
    """merge_accumulators: (shard, spilled or inline table) partial sums -> one
    (shard, spilled table) per shard.

    A group by key, not a lifted CombinePerKey: large tables cross the shuffle as file
    paths (small ones, and those from a cached span, inline), and each shard is summed
    from its own partials alone."""

    def expand(self, partials):
        spill_dir = tft_beam.Context.create_base_temp_dir()
        return (partials
                | "GroupByShard" >> beam.GroupByKey()
                | "SumPerShard" >> beam.Map(_sum_shard, spill_dir))


def _sum_shard(grouped: Tuple[int, Iterable["Spilled"]], spill_dir: str):
    """(shard, its partial sums) -> (shard, the spilled sum), the partials read one by one
    and summed as they grow."""
    shard, partials = grouped
    combine = _SumCounts()
    accumulator = combine.create_accumulator()
    for partial in partials:
        accumulator = combine.add_input(accumulator, load(partial))
    return shard, spill_if_large(combine.extract_output(accumulator), spill_dir)


# An accumulator's table: a path to its Arrow IPC file in the analysis' temporary folder,
# or the table itself when it is small or was read from the analysis cache.
Spilled = Union[str, pa.Table]


def spill(table: pa.Table, spill_dir: str) -> str:
    """Writes `table` to a new Arrow IPC file under `spill_dir`; returns its path."""
    path = f"{spill_dir}/{uuid.uuid4().hex}.arrow"
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f, \
            pa.ipc.new_stream(f, table.schema) as writer:
        writer.write_table(table)
    return path


def spill_if_large(table: pa.Table, spill_dir: str) -> Spilled:
    """`table` spilled to a file under `spill_dir` (its path) if it holds at least
    `SPILL_BYTES`, else `table` itself."""
    return spill(table, spill_dir) if table.nbytes >= SPILL_BYTES else table


def load(spilled: Spilled) -> pa.Table:
    """A `spill`ed table back from its file (a table is returned as it is)."""
    if isinstance(spilled, pa.Table):
        return spilled
    with FileSystems.open(spilled, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return pa.ipc.open_stream(f).read_all()


class _WriteVocabularies(_Stable, tft_beam_experimental.PTransformAnalyzer):
    """extract_output: per-key sums -> each file's path, one output per file (a vocabulary,
    then its document frequencies when it has a df filename)."""

    _cache_key_fields = ("_filenames", "_top_ks", "_frequency_thresholds", "_df_filenames")

    def __init__(self, filenames: List[str], top_ks: List[Optional[int]],
                 frequency_thresholds: List[int], df_filenames: List[Optional[str]]):
        super().__init__()
        self._filenames = list(filenames)
        self._top_ks = list(top_ks)
        self._frequency_thresholds = list(frequency_thresholds)
        self._df_filenames = list(df_filenames)

    def expand(self, shard_sums):
        paths = [f"{self.base_temp_dir}/{filename}" for filename in self._filenames]
        df_paths = [f and f"{self.base_temp_dir}/{f}" for f in self._df_filenames]
        tags = [tag for i, df in enumerate(df_paths)
                for tag in ((f"vocabulary_{i}",) if df is None else
                            (f"vocabulary_{i}", f"df_{i}"))]
        merged = (
            shard_sums
            | "SortShards" >> beam.Map(_write_keyed_part, paths, self._top_ks,
                                       self._frequency_thresholds)
            | "GatherPaths" >> beam.combiners.ToList()
            # One element per vocabulary, even one with no part: its file is tft's dummy.
            | "PerVocabulary" >> beam.FlatMap(_parts_by_vocabulary, len(paths))
            | "Spread" >> beam.Reshuffle()
            | "MergeAndWrite" >> beam.ParDo(_MergeVocabulary(), paths, self._top_ks, df_paths)
            .with_outputs(*tags))
        return tuple(merged[tag] for tag in tags)


def _write_keyed_part(key_sum: Tuple[int, "Spilled"], paths: List[str],
                      top_ks: List[Optional[int]], thresholds: List[int]) -> Tuple[int, str]:
    """(request * SHARDS + shard, its spilled sum) -> (request, its shard's part file)."""
    key, table = key_sum
    index, shard = divmod(key, SHARDS)
    part = write_part((shard, load(table)), f"{paths[index]}.parts", top_ks[index],
                      thresholds[index])
    return index, part


def _parts_by_vocabulary(parts: List[Tuple[int, str]], count: int):
    by_index = {index: [] for index in range(count)}
    for index, part in parts:
        by_index[index].append(part)
    return sorted(by_index.items())


class _MergeVocabulary(beam.DoFn):
    """(request, its part paths) -> that vocabulary's path, on the request's own output
    (and its document frequencies' path on its df output)."""

    def process(self, element, paths, top_ks, df_paths):
        index, parts = element
        yield beam.pvalue.TaggedOutput(f"vocabulary_{index}", merge_parts(
            parts, paths[index], top_ks[index], df_paths[index]))
        if df_paths[index] is not None:
            yield beam.pvalue.TaggedOutput(f"df_{index}", np.array(df_paths[index].encode()))


def write_part(shard_sum: Tuple[int, pa.Table], parts_dir: str, top_k: Optional[int],
               frequency_threshold: int) -> str:
    """One shard's summed (token, count) table -> its pruned, sorted part file; its path.

    The name depends only on the shard, so a retried step rewrites the same file.
    """
    shard, table = shard_sum
    part = f"{parts_dir}/shard-{shard:05d}-of-{SHARDS:05d}.arrow"
    # Beam's file objects, unlike GFile, are files that pyarrow can stream to and from.
    with FileSystems.create(part, compression_type=CompressionTypes.UNCOMPRESSED) as f, \
            pa.ipc.new_stream(f, table.schema) as writer:
        writer.write_table(prune(table, top_k, frequency_threshold),
                           max_chunksize=PART_CHUNK_ROWS)
    return part


def merge_parts(parts: List[str], path: str, top_k: Optional[int],
                df_path: Optional[str] = None) -> np.ndarray:
    """Sorted part files -> the vocabulary file at `path` (their merge, the first `top_k`
    lines; tft's dummy line when empty), and with `df_path` the parts' document
    frequencies in the same order ("0" for the dummy line). Returns the path as a bytes
    scalar."""
    tf.io.gfile.makedirs(path.rsplit("/", 1)[0])
    written = 0
    with contextlib.ExitStack() as files:
        out = files.enter_context(tf.io.gfile.GFile(path, "wb"))
        df_out = files.enter_context(tf.io.gfile.GFile(df_path, "wb")) if df_path else None
        for chunk in merge_sorted([_read_part(p) for p in sorted(parts)]):
            if top_k is not None:
                chunk = chunk.slice(0, top_k - written)
            out.write(vocabulary_lines(chunk))
            if df_out is not None:
                df_out.write(document_frequency_lines(chunk))
            written += chunk.num_rows
            if top_k is not None and written >= top_k:
                break
        if not written:
            out.write(EMPTY_VOCABULARY_LINE + b"\n")
            if df_out is not None:
                df_out.write(b"0\n")
    return np.array(path.encode())


def _read_part(part: str) -> Iterator[pa.Table]:
    with FileSystems.open(part, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        for batch in pa.ipc.open_stream(f):
            yield pa.Table.from_batches([batch])


def merge_sorted(sources: List[Iterator[pa.Table]]) -> Iterator[pa.Table]:
    """Streams of (token, count) tables, each in tft's order and no token in two streams ->
    tables in tft's order, together the merge of all of them.

    Holds about one table per stream: each round emits every buffered row at or before
    the frontier, the latest of the buffers' last rows in the order, and no row still
    unread can come before it (every stream is sorted, and each buffer ends at or before
    the frontier)."""
    buffers: List[Optional[pa.Table]] = [None] * len(sources)
    while True:
        for i, buffer in enumerate(buffers):
            while sources[i] is not None and (buffer is None or buffer.num_rows == 0):
                buffer = next(sources[i], None)
                if buffer is None:
                    sources[i] = None
            buffers[i] = buffer if buffer is not None and buffer.num_rows else None
        live = [b for b in buffers if b is not None]
        if not live:
            return
        # In tft's order (count, token) descending, "latest" is the smallest last row.
        frontier = max((b["count"][-1].as_py(), b["token"][-1].as_py()) for b in live)
        count = pa.scalar(frontier[0], pa.int64())
        token = pa.scalar(frontier[1], pa.binary())
        heads = []
        for i, buffer in enumerate(buffers):
            if buffer is None:
                continue
            at_or_before = pc.or_(pc.greater(buffer["count"], count), pc.and_(
                pc.equal(buffer["count"], count), pc.greater_equal(buffer["token"], token)))
            n = pc.sum(at_or_before).as_py() or 0
            heads.append(buffer.slice(0, n))
            buffers[i] = buffer.slice(n)
        merged = pa.concat_tables(heads)
        yield merged.take(pc.sort_indices(merged, _ORDER))


class ShardCountsCoder(tft.experimental.PTransformAnalyzerCacheCoder):
    """Caches a (shard, table) accumulator as a 4-byte shard then an Arrow IPC stream."""

    def encode_cache(self, cache):
        shard, table = cache
        table = load(table)  # the cache holds the table, not the temporary file
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return struct.pack("<i", shard) + sink.getvalue().to_pybytes()

    def decode_cache(self, encoded_cache):
        (shard,) = struct.unpack("<i", encoded_cache[:4])
        return shard, pa.ipc.open_stream(encoded_cache[4:]).read_all()
