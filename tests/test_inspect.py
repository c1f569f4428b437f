"""`beam-pipeline inspect`: the run's account, and raw rows next to values that match the output."""

import numpy as np

from beam_pipeline import cli, inspect_run
from tests import reference


def test_inspect_shows_rows_statistics_and_artifacts(pipeline_run, capsys):
    config, summary = pipeline_run
    assert cli.main(["inspect", config.output.dir]) == 0
    text = capsys.readouterr().out
    assert f"rows read {summary['rows']['read']:,}" in text
    mean = summary["statistics"]["numeric"]["f_normal"]["mean"]
    assert f"mean {mean:<12.6g}" in text
    assert f"cat_mid              {summary['statistics']['vocabularies']['cat_mid']['size']:,} entries" \
        in text
    assert "transform_fn: " + config.output.dir in text


def test_inspect_records_match_the_pipeline_output(pipeline_run, csv_dir):
    config, summary = pipeline_run
    rows = inspect_run.read_raw_rows(summary["input"], 6)
    raw = reference.raw_frame(csv_dir)
    assert [int(r["id"]) for r in rows] == raw["id"].tolist()[:6]
    shown = inspect_run.transform_rows(config.output.dir, rows, summary["input"]["columns"])
    written = {}
    for split in ("train", "eval"):
        data = reference.read_transformed(config.output.dir, split)
        for i, row_id in enumerate(data["id"]):
            written[int(row_id)] = {k: v[i] for k, v in data.items()}
    for i, row in enumerate(rows):
        expected = written[int(row["id"])]
        for key, values in shown.items():
            np.testing.assert_allclose(values[i], expected[key], rtol=1e-6, err_msg=key)
    text = inspect_run.format_records(rows, shown)
    assert f"text={inspect_run._format_value(shown['text'][0])}" in text  # pylint: disable=protected-access
