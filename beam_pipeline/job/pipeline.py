"""The Beam graph: read -> split -> analyze(train) -> transform(every split) -> write.

The input is read twice on purpose: once for the analysis and once for the transform.
A local runner buffers a PCollection that two stages consume, and the transform cannot
start before the analysis ends, so one shared read would hold the whole dataset in
memory. Two reads keep peak memory flat in the number of rows.
"""

import dataclasses
import json
from typing import Dict, List, Optional

import apache_beam as beam
import numpy as np
import pyarrow.compute as pc
import tensorflow_transform.beam as tft_beam
from apache_beam.io.filesystems import FileSystems
from tfx_bsl.coders import example_coder
from tfx_bsl.tfxio.tensor_adapter import TensorAdapterConfig

from beam_pipeline.outputs import layout, storage
from beam_pipeline.job import learned, memory, preprocessing, progress
from beam_pipeline.config import Config
from beam_pipeline import crash_points, sources
from beam_pipeline.sources.dead_letter import REJECTED
from beam_pipeline.sources.label_classes import LabelClasses
from beam_pipeline.sources.read import ReadSource
from beam_pipeline.job.split import (METRICS_NAMESPACE, SPLIT_COLUMN, SPLIT_FIELD, SPLITS,
                                  RouteSplits, SplitRecordBatches, TagSplits)
from beam_pipeline import features
from beam_pipeline.job.statistics import TrainStatistics
from beam_pipeline.job.tfrecord_sink import WriteRecordBatches


class EncodeExamples(beam.DoFn):
    """Transformed Arrow record batches -> lists of serialized tf.Example, in C++ (tfx_bsl).

    One list per batch, so the writer handles a batch per element rather than a row.
    """

    def __init__(self, transformed_schema, split: str, label: Optional[str] = None):
        self._schema = transformed_schema.SerializeToString()
        self._split = split
        self._label = label
        self._encoder = None
        self._written = None

    def setup(self):
        from tensorflow_metadata.proto.v0 import schema_pb2  # pylint: disable=import-outside-toplevel
        schema = schema_pb2.Schema.FromString(self._schema)
        self._encoder = example_coder.RecordBatchToExamplesEncoder(schema)
        self._written = beam.metrics.Metrics.counter(
            METRICS_NAMESPACE, f"rows_written_{self._split}")

    def process(self, element):
        record_batch, _ = element
        examples = self._encoder.encode(record_batch)
        self._written.inc(len(examples))
        if self._label:
            # A class label's distribution per split, as counters (few distinct values).
            labels = pc.list_flatten(record_batch.column(
                record_batch.schema.get_field_index(self._label)))
            for value, count in zip(*np.unique(labels.to_numpy(), return_counts=True)):
                beam.metrics.Metrics.counter(
                    METRICS_NAMESPACE, f"label_{self._split}_{value}").inc(int(count))
        if examples:
            yield examples


def statistics_for(config: Config) -> TrainStatistics:
    """The statistics combiner for the config's columns and features."""
    # Coverage counts rows with a value, so it is kept for scalar columns only, and for
    # text split on whitespace without n-grams (tokens the statistics can count).
    lookups = [f for f in config.features
               if isinstance(f, features.StringLookup) and not f.multivalent]
    if config.label and config.label.kind == "string_lookup":
        lookups.append(config.label)
    return TrainStatistics(
        numeric=[c.name for c in config.columns if c.read_type in ("float", "int")],
        categorical=sorted({f.column for f in lookups}),
        text={f.name: (f.column, f.standardize) for f in config.features
              if isinstance(f, features.TextVectorization)
              and f.split == "whitespace" and not f.ngrams},
        present=learned.columns(config))


@dataclasses.dataclass(frozen=True)
class Handles:
    """What a built pipeline will produce once run (paths under the output folder)."""

    statistics_path: str
    data_prefixes: Dict[str, str]
    rejected_prefix: str


def _with_split_field(adapter_config):
    """The raw layout plus the SPLIT_COLUMN that `TagSplits` appends last."""
    return TensorAdapterConfig(adapter_config.arrow_schema.append(SPLIT_FIELD),
                               adapter_config.tensor_representations)


def _split(rows, name: str, read, split_args, emit=SPLITS, count=False):
    """A read's batches to its splits: the input's fixed split, or the hash rule."""
    return rows | f"Split{name}" >> beam.ParDo(SplitRecordBatches(
        *split_args, emit=emit, count_rows=count, fixed=read.split)).with_outputs(*emit)


def _train_rows(pipeline, reads, split_args, progress_dir):
    """The analysis read: the train rows of every input, flattened."""
    parts = []
    for read in reads:
        if read.split == "eval":
            continue  # nothing of it is analyzed
        outputs = pipeline | f"Read{read.name}ForAnalysis" >> ReadSource(read.items, read.reader)
        # Progress counts every record read, rejected ones too, as the summary does.
        _ = outputs[REJECTED] | f"Progress{read.name}AnalyzeRejected" >> beam.ParDo(
            progress.CountRows("analyze", progress_dir))
        rows = outputs.batches | f"Progress{read.name}Analyze" >> beam.ParDo(
            progress.CountRows("analyze", progress_dir))
        parts.append(_split(rows, f"{read.name}ForAnalysis", read, split_args,
                            emit=("train",))["train"])
    return parts[0] if len(parts) == 1 else parts | "FlattenForAnalysis" >> beam.Flatten()


def _label_classes(config: Config):
    """The check of a class label's values against the learned classes, or None."""
    label = config.label
    if label is None or label.kind != "string_lookup" or config.preprocessing_fn:
        return None
    return LabelClasses(label.column, label.column_type == "int", label.name)


def _all_rows(pipeline, reads, split_args, progress_dir, label_classes=None,
              transform_fn_dir=None):
    """The transform read: (every input's rows tagged with their split, dead letters)."""
    tagged, rejected = [], []
    for read in reads:
        outputs = pipeline | f"Read{read.name}" >> ReadSource(
            read.items, read.reader, count_rejects=True, label_classes=label_classes,
            transform_fn_dir=transform_fn_dir)
        rejected.append(outputs[REJECTED] | f"Progress{read.name}Rejected" >> beam.ParDo(
            progress.CountRows("transform", progress_dir)))
        rows = outputs.batches | f"Progress{read.name}" >> beam.ParDo(
            progress.CountRows("transform", progress_dir))
        tagged.append(rows | f"TagSplits{read.name}" >> beam.ParDo(
            TagSplits(*split_args, count_rows=True, fixed=read.split)))
    tagged = tagged[0] if len(tagged) == 1 else tagged | "FlattenTagged" >> beam.Flatten()
    rejected = rejected[0] if len(rejected) == 1 else rejected | "FlattenRejected" >> beam.Flatten()
    return tagged, rejected


@dataclasses.dataclass
class AnalysisCache:
    """tf.Transform's analysis cache for a run over spans (see `refresh`).

    Attributes:
      dir: where finished spans' caches live (`<dir>/<span key>/`, with a COMPLETE marker).
      spans: span name -> its input files, in order.
      staging: where this run writes the caches of the spans it analyzes; they move to
        `dir` only after the job succeeded, so a killed run never leaves a half cache.
    """

    dir: str
    spans: Dict[str, List[str]]
    staging: str = ""

    @staticmethod
    def key(span: str) -> str:
        return tft_beam.analyzer_cache.DatasetKey(span).key

    @property
    def cached(self) -> List[str]:
        """Spans whose cache a previous run completed."""
        return [s for s in self.spans
                if FileSystems.exists(FileSystems.join(self.dir, self.key(s), COMPLETE))]

    def commit(self) -> None:
        """Moves the staged caches of the newly analyzed spans into `dir`, marking each."""
        for span in self.spans:
            staged = FileSystems.join(self.staging, self.key(span))
            target = FileSystems.join(self.dir, self.key(span))
            # On an object store a folder "exists" only through its objects (storage).
            if storage.is_empty(staged):  # a cached span: nothing was staged
                continue
            storage.delete_tree(target)  # a half copy from an interrupted commit
            storage.move_tree(staged, target)
            crash_points.reach("cache_commit")
            storage.write_bytes(FileSystems.join(target, COMPLETE), b"")


COMPLETE = "COMPLETE"


def _analyze_with_cache(pipeline, read, cache: AnalysisCache, split_args, adapter_config,
                        preprocessing_fn):
    """AnalyzeDatasetWithCache over the spans: cached spans are not read at all."""
    cached = set(cache.cached)
    data = {}
    for index, (span, files) in enumerate(cache.spans.items()):
        key = tft_beam.analyzer_cache.DatasetKey(span)
        if span in cached:
            data[key] = None
            continue
        span_read = dataclasses.replace(read, name=f"Span{index}", items=tuple(files))
        rows = (pipeline | f"ReadSpan{index}ForAnalysis" >> ReadSource(files, read.reader)).batches
        data[key] = _split(rows, f"Span{index}ForAnalysis", span_read, split_args,
                           emit=("train",))["train"]
    keys = [tft_beam.analyzer_cache.DatasetKey(s) for s in cached]
    input_cache = (pipeline | "ReadAnalysisCache" >> tft_beam.analyzer_cache.ReadAnalysisCacheFromFS(
        cache.dir, keys)) if keys else {}
    transform_fn, output_cache = ((data, input_cache, adapter_config)
                                  | "Analyze" >> tft_beam.AnalyzeDatasetWithCache(preprocessing_fn))
    new_keys = [k for k in data if data[k] is not None]
    if new_keys:
        _ = output_cache | "WriteAnalysisCache" >> tft_beam.analyzer_cache.WriteAnalysisCacheToFS(
            pipeline, cache.staging, new_keys)
    return transform_fn


def build(pipeline: beam.Pipeline, config: Config, temp_dir: str,
          cache: Optional[AnalysisCache] = None,
          reads: Optional[List[sources.Read]] = None,
          progress_dir: Optional[str] = None) -> Handles:
    """Adds the whole preprocessing job to `pipeline`; running it writes every output.

    Args:
      pipeline: a `beam.Pipeline` with the user's options (any runner).
      config: the validated config.
      temp_dir: scratch folder for tf.Transform (must be reachable by the workers).
      cache: analyze span by span with tf.Transform's cache (one tabular input only).
      reads: the planned reads, when the caller's checks already listed them.
      progress_dir: a folder on this machine where the read steps count rows for the
        progress line, or None (no counting: the steps run on other machines, whose
        local disks the driver never sees).

    Returns:
      `Handles` naming where the run writes its statistics and data.
    """
    out = config.output.dir
    adapter_config = sources.tensor_adapter_config(config.columns)
    preprocessing_fn = preprocessing.preprocessing_fn_for(config)
    split_args = (config.split.key, config.split.eval_fraction)
    class_label = config.label.name if config.label and (
        config.label.kind == "string_lookup" or config.label.column_type == "int") else None
    handles = Handles(
        statistics_path=layout.statistics_path(out),
        data_prefixes={s: layout.data_prefix(out, s) for s in SPLITS},
        rejected_prefix=layout.rejected_prefix(out))

    reads = reads if reads is not None else sources.plan(config)
    with tft_beam.Context(temp_dir=temp_dir):
        if cache is None:
            train = _train_rows(pipeline, reads, split_args, progress_dir)
            transform_fn = (train, adapter_config) | "Analyze" >> tft_beam.AnalyzeDataset(
                preprocessing_fn)
        else:
            (read,) = reads
            transform_fn = _analyze_with_cache(pipeline, read, cache, split_args,
                                               adapter_config, preprocessing_fn)
        # tft built the final graph's tables to save it: destroyed before the transform
        # loads its own.
        transform_fn = (transform_fn[0] | "AfterSavedModel" >> memory.ReleaseTracedTables(),
                        transform_fn[1])
        _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(out)
        tagged, rejected = _all_rows(pipeline, reads, split_args, progress_dir,
                                     _label_classes(config), transform_fn[0])
        # Column statistics from the transform read, which sees every span (the analysis
        # read skips the cached ones).
        raw_train = (tagged | "RouteRawTrain" >> beam.ParDo(RouteSplits(emit=("train",)))
                     .with_outputs("train"))["train"]
        _ = (raw_train
             | "TrainStatistics" >> beam.CombineGlobally(statistics_for(config))
             | "StatisticsToJson" >> beam.Map(json.dumps, sort_keys=True)
             | "WriteStatistics" >> beam.io.WriteToText(
                 handles.statistics_path, shard_name_template=""))
        _ = (rejected
             | "WriteRejected" >> beam.io.WriteToText(
                 handles.rejected_prefix, file_name_suffix=layout.REJECTED_SUFFIX,
                 num_shards=1))
        # One transform for both splits: the split travels as a passthrough column.
        with tft_beam.Context(passthrough_keys={SPLIT_COLUMN}):
            (transformed, transformed_metadata) = (
                ((tagged, _with_split_field(adapter_config)), transform_fn)
                | "Transform" >> tft_beam.TransformDataset(output_record_batches=True))
        by_split = transformed | "RouteSplits" >> beam.ParDo(RouteSplits()).with_outputs(*SPLITS)
        for split in SPLITS:
            name = split.capitalize()
            _ = (by_split[split]
                 | f"Encode{name}" >> beam.ParDo(
                     EncodeExamples(transformed_metadata.schema, split, class_label))
                 | f"Write{name}" >> WriteRecordBatches(
                     handles.data_prefixes[split], file_name_suffix=layout.DATA_SUFFIX,
                     num_shards=config.output.num_shards,
                     crash_point=f"shard_written_{split}"))
    return handles


class Counters(dict):
    """The job's counters by name; `kind` says where their values came from: "committed"
    (every counter had committed values), "attempted" (the runner had none committed:
    attempted values may count retried bundles twice), "mixed", or None (no counters)."""

    kind: Optional[str] = None


def _committed(counter):
    try:
        return counter.committed
    except Exception:  # pylint: disable=broad-except  (runners that raise instead of None)
        return None


def read_counters(result) -> Counters:
    """The job's `beam_pipeline` counters, summed over steps: committed values where the
    runner has them, attempted otherwise; `.kind` of the answer says which (`Counters`)."""
    query = result.metrics().query(
        beam.metrics.MetricsFilter().with_namespace(METRICS_NAMESPACE))
    counters = Counters()
    kinds = set()
    for counter in query["counters"]:
        value = _committed(counter)
        kinds.add("attempted" if value is None else "committed")
        value = counter.attempted if value is None else value
        counters[counter.key.metric.name] = counters.get(counter.key.metric.name, 0) + (value or 0)
    counters.kind = kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else None)
    return counters


def read_statistics(path: str) -> Dict:
    """Reads the JSON the `TrainStatistics` step wrote."""
    with FileSystems.open(path) as f:
        return json.loads(f.read().decode("utf-8"))
