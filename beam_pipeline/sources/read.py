"""The Beam side every source shares: files in, Arrow record batches and dead letters out.

A source is a picklable reader: called with one work item (a file path, or a group of
small files) it yields `(record batch or None, [Reject])` pairs, streaming, so memory
does not grow with the input; a reader that knows each row's line or record number
yields it as a third item, so checks made here (unseen labels) can name the line. `ReadSource` spreads the work items over workers, emits
the batches as its main output and the rejects as JSON lines under the `rejected` tag,
and (on the one read that counts) adds the rejects to the Beam counters that the run
summary and Dataflow show.
"""

import json
from typing import Any, Callable, Iterable, Iterator, List, Optional, Tuple

import apache_beam as beam
import pyarrow as pa

from beam_pipeline.sources.dead_letter import REJECTED, Reject
from beam_pipeline.job.split import METRICS_NAMESPACE

Reader = Callable[[Any], Iterator[Tuple[Optional[pa.RecordBatch], List[Reject]]]]


class _Read(beam.DoFn):
    def __init__(self, reader: Reader, count: bool, label_classes=None):
        self._reader = reader
        self._count = count
        self._label_classes = label_classes

    def process(self, item, transform_fn_dir=None):
        if self._label_classes is not None:
            self._label_classes.load(transform_fn_dir)
        for batch, rejects, *lines in self._reader(item):
            if self._label_classes is not None and batch is not None and batch.num_rows:
                batch, unseen = self._label_classes.set_aside(
                    batch, _file_of(item), lines[0] if lines else None)
                rejects = rejects + unseen
            if batch is not None and batch.num_rows:
                yield batch
            for reject in rejects:
                if self._count:
                    for name in ("rows_rejected", f"rows_rejected_{reject.reason}"):
                        beam.metrics.Metrics.counter(METRICS_NAMESPACE, name).inc(reject.rows)
                yield beam.pvalue.TaggedOutput(
                    REJECTED, json.dumps(reject.to_json(), ensure_ascii=False))


class ReadSource(beam.PTransform):
    """Work items -> record batches (output `batches`) and dead letters (output `rejected`).

    Args:
      items: what the reader is called with, known when the pipeline is built (file
        paths, matched before the job so that a missing input fails early).
      reader: the source's reader.
      count_rejects: add the rejects to the counters; the pipeline reads its input twice
        (analysis and transform) and counts on one of them only.
      label_classes: a `label_classes.LabelClasses`: on the transform read, set aside
        the rows whose class the analysis did not learn.
      transform_fn_dir: with it, the PCollection of the analysis's transform graph folder,
        where the learned classes are.
    """

    def __init__(self, items: Iterable[Any], reader: Reader, count_rejects: bool = False,
                 label_classes=None, transform_fn_dir=None):
        super().__init__()
        self._items = list(items)
        self._reader = reader
        self._count = count_rejects
        self._label_classes = label_classes
        self._transform_fn_dir = transform_fn_dir

    def expand(self, pbegin):
        side = ()
        if self._label_classes is not None:
            side = (beam.pvalue.AsSingleton(self._transform_fn_dir),)
        return (pbegin
                | "Items" >> beam.Create(self._items, reshuffle=False)
                | "Spread" >> beam.Reshuffle()
                | "Read" >> beam.ParDo(_Read(self._reader, self._count, self._label_classes),
                                       *side).with_outputs(REJECTED, main="batches"))


def _file_of(item) -> str:
    """The file a work item names (a folder group: its first file)."""
    if isinstance(item, str):
        return item
    return str(item[0][0] if isinstance(item[0], (tuple, list)) else item[0])
