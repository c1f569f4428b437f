"""The HTML report: self-contained, renders in headless Chromium, shows the run summary's numbers."""

import ast
import base64
import html.parser
import os
import shutil
import subprocess

import pytest

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


class _Collect(html.parser.HTMLParser):
    """Gathers `data-key`/`data-value` cells and image sources."""

    def __init__(self):
        super().__init__()
        self.values, self.images, self.external = {}, [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "data-key" in attrs:
            self.values[attrs["data-key"]] = attrs["data-value"]
        if tag == "img":
            self.images.append(attrs["src"])
        for name in ("src", "href"):
            if name in attrs and not attrs[name].startswith("data:"):
                self.external.append(attrs[name])


def _chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return path


@pytest.fixture(scope="module")
def rendered(pipeline_run, tmp_path_factory):
    """The report as Chromium rendered it (DOM) and a screenshot of it."""
    config, _ = pipeline_run
    work = tmp_path_factory.mktemp("chromium")
    report = os.path.join(config.output.dir, "report.html")
    url = "file://" + os.path.abspath(report)
    common = [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={work / 'profile'}"]
    dom = subprocess.run(common + ["--dump-dom", url], capture_output=True, text=True,
                         timeout=120)
    shot = subprocess.run(common + ["--window-size=1200,2000",
                                    f"--screenshot={work / 'report.png'}", url],
                          capture_output=True, text=True, timeout=120)
    return dom, shot, work / "report.png"


def test_report_renders_and_is_screenshotted(rendered):
    dom, shot, png = rendered
    assert dom.returncode == 0 and shot.returncode == 0, dom.stderr[-2000:] + shot.stderr[-2000:]
    assert "Uncaught" not in dom.stderr + shot.stderr
    assert "<h2>Numeric columns (train split)</h2>" in dom.stdout
    with open(png, "rb") as f:
        header = f.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(header[16:20], "big") == 1200
    assert os.path.getsize(png) > 20_000  # plots and tables, not a blank page


def test_report_is_self_contained_with_valid_images(rendered):
    parser = _Collect()
    parser.feed(rendered[0].stdout)
    assert parser.external == []
    assert len(parser.images) >= 8
    for src in parser.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_numbers_equal_the_run_summary(rendered, pipeline_run):
    summary = pipeline_run[1]
    parser = _Collect()
    parser.feed(rendered[0].stdout)
    values = {k: ast.literal_eval(v) for k, v in parser.values.items()}  # repr()s
    assert values["rows.read"] == summary["rows"]["read"]
    for split, count in summary["rows"]["written"].items():
        assert values[f"rows.written.{split}"] == count
    for name, stats in summary["statistics"]["numeric"].items():
        for key in ("mean", "min", "max"):
            assert values[f"numeric.{name}.{key}"] == stats[key], (name, key)
        assert values[f"numeric.{name}.std"] == pytest.approx(stats["variance"] ** 0.5)
    for name, vocabulary in summary["statistics"]["vocabularies"].items():
        assert values[f"vocabulary.{name}.size"] == vocabulary["size"]
        # Coverage is only counted for scalar columns and whitespace-split text.
        assert values[f"vocabulary.{name}.coverage"] == vocabulary.get("coverage")
    for split, counts in summary["statistics"]["labels"].items():
        for label, count in counts.items():
            assert values[f"labels.{split}.{label}"] == count
    assert values["text.text.tokens"] == summary["statistics"]["text"]["text"]["tokens"]


def test_report_lists_top_rejection_reasons(pipeline_run):
    import copy
    import json
    from beam_pipeline.outputs import report
    config, summary = pipeline_run
    with open(os.path.join(config.output.dir, "statistics", "train.json")) as f:
        statistics = json.load(f)
    summary = copy.deepcopy(summary)
    summary["rows"]["rejected"] = 3
    summary["rows"]["rejected_by_reason"] = {"unparsable number": 1, "wrong field count": 2}
    parser = _Collect()
    parser.feed(report.render(summary, statistics))
    assert parser.values["rejected.wrong field count"] == "2"
    assert parser.values["rows.rejected"] == "3"


def test_report_has_a_drift_section_only_for_a_compared_run(pipeline_run):
    import json
    from beam_pipeline.outputs import report
    config, summary = pipeline_run
    with open(os.path.join(config.output.dir, "statistics", "train.json")) as f:
        statistics = json.load(f)
    assert "<h2>Drift</h2>" not in report.render(summary, statistics)
    drift_report = {"breached": True, "summary": {"checks": 3, "breached": 2, "disabled": 1},
                    "checks": [
                        {"feature": "rows", "check": "row_count_change", "value": 0.25,
                         "threshold": 0.5, "breached": False},
                        {"feature": "f_normal", "check": "mean_shift", "value": 18.712345678,
                         "threshold": 0.5, "breached": True},
                        {"feature": "cat_small", "check": "top_k_overlap", "value": 0.3,
                         "threshold": 0.5, "breached": True},
                        {"feature": "id", "check": "variance_ratio", "value": float("inf"),
                         "threshold": None, "breached": False},
                        {"feature": "new_col", "check": "added", "kind": "numeric",
                         "value": None, "threshold": None, "breached": False}]}
    page = report.render(summary, statistics, drift_report, "20261128T030000Z-1a2b3c4d")
    parser = _Collect()
    parser.feed(page)
    values = parser.values
    assert values["drift.verdict"] == "'breached'"
    assert "against run 20261128T030000Z-1a2b3c4d: BREACHED (2 of 3 checks breached" in page
    assert values["drift.f_normal.mean_shift.value"] == "18.712345678"
    assert values["drift.f_normal.mean_shift.threshold"] == "0.5"
    assert values["drift.f_normal.mean_shift.status"] == "'BREACH'"
    assert values["drift.cat_small.top_k_overlap.status"] == "'BREACH'"
    assert values["drift.rows.row_count_change.status"] == "'ok'"
    assert values["drift.id.variance_ratio.status"] == "'off'"
    assert values["drift.new_col.added.status"] == "'added'"
    # Breaches first, highlighted; the minimum check shows its bound as such.
    assert page.count('<tr class="breach">') == 2
    assert page.index("f_normal</td>") < page.index(">rows</td>")
    assert "≥ 0.5" in page and "≤ 0.5" in page
