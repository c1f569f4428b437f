"""Property: random small configs over random messy shards never end in a traceback.

Each example draws a config (a random subset of feature kinds, with or without
`split.key`, a passthrough int label or a string label looked up to class ids, a random
eval fraction, sometimes a strict reject limit or a low `max_record_bytes`, sometimes a
deliberately broken feature) and messy shards (random cases of tests/messy_data.py,
1-4 shards, CRLF/BOM/gzip/reordered headers at random, sometimes a large field), and runs
`beam-pipeline preprocess` in-process through `beam_pipeline.cli.main`. Every run must
either exit 2 naming the broken key (only for a broken config), exit 3 naming the top
reject reason (only when more records are rejected than allowed), or exit 0 with
read = written + rejected, exactly the expected rejects, and every kept row written once,
to one split (the hash rule's, with a key), with the id and label the csv module reads.
A pipeline run costs 5-15 s, so the example count is small and the examples are fixed.
"""

import collections
import contextlib
import io
import json
import os
import time

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests import messy_data as messy
from tests import reference
from tests.conftest import COLUMNS, write_config
from tests.test_messy_data import read_rejected, read_split

EXAMPLES = 12

POOL = {
    "f_normal": {"kind": "normalization"},
    "f_missing": {"kind": "normalization", "missing_indicator": True},
    "f_normal_median": {"kind": "normalization", "column": "f_normal", "impute": "median"},
    "f_uniform_scaled": {"kind": "min_max", "column": "f_uniform"},
    "f_uniform_bins": {"kind": "discretization", "column": "f_uniform", "num_bins": 4},
    "cat_small": {"kind": "string_lookup"},
    "cat_mid": {"kind": "string_lookup", "max_tokens": 30, "min_frequency": 2},
    "cat_big_hash": {"kind": "hashing", "column": "cat_big", "num_bins": 16},
    "int_cat": {"kind": "integer_lookup", "num_oov_indices": 2},
    "text": {"kind": "text_vectorization", "max_tokens": 100, "output_sequence_length": 8},
    "text_tf_idf": {"kind": "text_vectorization", "column": "text", "max_tokens": 50,
                    "output_mode": "tf_idf"},
}
BROKEN = {  # a feature that makes the config wrong; the error must name it
    "unknown_option": ("f_broken", {"kind": "normalization", "column": "f_normal", "bogus": 1}),
    "unknown_column": ("f_broken", {"kind": "normalization", "column": "no_such_column"}),
    "wrong_type": ("f_broken", {"kind": "normalization", "column": "cat_small"}),
}


@st.composite
def scenarios(draw):
    string_labels = draw(st.booleans())
    big = draw(st.sampled_from([0, 0, 300_000]))
    shards = []
    for k in range(draw(st.integers(1, 4))):
        shards.append(messy.Shard(
            f"part-{k:05d}.csv" + (".gz" if draw(st.booleans()) else ""),
            crlf=draw(st.booleans()), bom=draw(st.booleans()),
            reordered=draw(st.booleans()), blank_lines=draw(st.booleans()),
            share=draw(st.sampled_from([0.5, 1.0, 2.0]))))
    features = {"id": {"kind": "passthrough"}}
    for name in draw(st.lists(st.sampled_from(sorted(POOL)), max_size=6, unique=True)):
        features[name] = POOL[name]
    # About one example in eight is broken (cheap: it fails before any pipeline starts).
    broken = draw(st.sampled_from(sorted(BROKEN))) if draw(st.integers(0, 7)) == 7 else None
    if broken:
        name, spec = BROKEN[broken]
        features[name] = spec
    return {
        "seed": draw(st.integers(0, 2**16)),
        "rows": draw(st.integers(30, 150)),
        "cases": draw(st.lists(st.sampled_from(sorted(messy.CASES)), min_size=1, max_size=10,
                               unique=True)),
        "shards": shards,
        "big": big,
        "string_labels": string_labels,
        "rare_labels": draw(st.integers(0, 3)) if string_labels else 0,
        "key": draw(st.sampled_from([None, "id"])),
        "eval_fraction": draw(st.sampled_from([0.1, 0.2, 0.3, 0.5])),
        "features": features,
        "broken": broken,
        "max_rejected_fraction": draw(st.sampled_from([1.0] * 5 + [0.01])),
        "max_record_bytes": draw(st.sampled_from([None, 100_000])) if big else None,
    }


def _config(s, data_dir, out):
    columns = [dict(c, type="string") if c["name"] == "label" and s["string_labels"] else c
               for c in COLUMNS]
    source = {"file_pattern": os.path.join(data_dir, "part-*"),
              "max_rejected_fraction": s["max_rejected_fraction"]}
    if s["max_record_bytes"]:
        source["max_record_bytes"] = s["max_record_bytes"]
    split = {"eval_fraction": s["eval_fraction"]}
    if s["key"]:
        split["key"] = s["key"]
    label = {"column": "label"}
    if s["string_labels"]:
        label["kind"] = "string_lookup"
    return {"input": source, "columns": columns, "label": label, "split": split,
            "features": s["features"], "output": {"dir": out}}


def _is_eval(keys, fraction):
    import tensorflow as tf
    buckets = tf.strings.to_hash_bucket_fast(np.array(keys, dtype=object),
                                             reference.HASH_BUCKETS).numpy()
    return buckets < int(round(fraction * reference.HASH_BUCKETS))


def _check_success(s, data, out, summary):
    types = dict(messy.COLUMN_TYPES, label="string" if s["string_labels"] else "int")
    outcomes = messy.read_reference(data.folder, types=types)
    assert len(outcomes) == len(data.records)
    limit = s["max_record_bytes"]
    sizes = {(r.file, r.line): r.nbytes for r in data.records}
    rejects, kept = [], {}
    for o in outcomes:
        if limit and sizes[(o.file, o.line)] > limit:
            rejects.append((o.file, o.line, "record_too_large"))
        elif o.reason:
            rejects.append((o.file, o.line, o.reason))
        else:
            key = 0 if o.values["id"] is None else o.values["id"]
            kept[key] = (o.file, o.line, o.values)
    written = {split: read_split(out, split) for split in ("train", "eval")}
    ids = {split: [int(i) for i in columns["id"]] if columns else []
           for split, columns in written.items()}
    every = collections.Counter(ids["train"] + ids["eval"])
    assert not [i for i, n in every.items() if n > 1], "a row written twice"
    if s["string_labels"]:
        # Classes are learned on train; an eval row of a class no train row has is
        # an unseen_label dead letter.
        classes = collections.Counter(kept[i][2]["label"] for i in ids["train"])
        order = reference.keras_order(classes)
        for i, (file, line, values) in list(kept.items()):
            if i in every and i not in ids["train"] and values["label"] not in classes:
                raise AssertionError(f"eval row {i} of unseen class {values['label']!r} written")
            if i not in every and values["label"] not in classes:
                rejects.append((file, line, "unseen_label"))
                del kept[i]
    assert set(every) == set(kept), (sorted(set(kept) - set(every))[:10],
                                     sorted(set(every) - set(kept))[:10])
    for split, columns in written.items():
        for i, label in zip(ids[split], columns["label"] if ids[split] else []):
            value = kept[i][2]["label"]
            expected = order.index(value) if s["string_labels"] else value
            assert int(label) == expected, (split, i, value, label)
    got = sorted((os.path.basename(r["file"]), r["line"], r["reason"])
                 for r in read_rejected(out))
    assert got == sorted(rejects)
    rows = summary["rows"]
    assert rows["read"] == len(data.records)
    assert rows["read"] == rows["written"]["train"] + rows["written"]["eval"] + rows["rejected"]
    assert rows["rejected"] == len(rejects)
    assert rows["written"] == {split: len(ids[split]) for split in ids}
    if s["key"]:
        keys = [b"" if kept[i][2]["id"] is None else str(kept[i][2]["id"]).encode()
                for i in sorted(kept)]
        expected_eval = {i for i, e in zip(sorted(kept), _is_eval(keys, s["eval_fraction"]))
                         if e}
        assert set(ids["eval"]) == expected_eval


def _check_rejected_gate(s, out, message):
    with open(os.path.join(out, "run_summary.json"), encoding="utf-8") as f:
        rows = json.load(f)["rows"]
    assert rows["rejected"] > s["max_rejected_fraction"] * rows["read"], rows
    top = max(rows["rejected_by_reason"], key=rows["rejected_by_reason"].get)
    assert "rejected" in message and top in message, message
    assert not os.path.exists(os.path.join(out, "data")), "no data/ after the reject gate"


def test_random_configs_on_messy_data_end_in_a_named_outcome(tmp_path):
    from beam_pipeline import cli
    seen = collections.Counter()
    started = time.time()

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], database=None,
              suppress_health_check=list(HealthCheck))
    @given(scenarios())
    def check(s):
        root = tmp_path / f"example{sum(seen.values())}"
        data = messy.write_messy_csv(str(root / "data"), s["seed"], rows=s["rows"],
                                     shards=s["shards"], cases=s["cases"],
                                     string_labels=s["string_labels"],
                                     big_field_bytes=s["big"], rare_labels=s["rare_labels"])
        out = str(root / "out")
        path = write_config(root / "config.yaml", _config(s, data.folder, out))
        stdout, stderr = io.StringIO(), io.StringIO()
        t = time.time()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = cli.main(["preprocess", "--config", path])
        message = stderr.getvalue()
        outcome = {0: "done", 2: "config error", 3: "too many rejected"}.get(code, code)
        seen[outcome] += 1
        print(f"example {sum(seen.values())}: exit {code} in {time.time() - t:.1f} s, "
              f"{len(data.records)} records, {len(s['shards'])} shards, cases {s['cases']}, "
              f"key {s['key']}, string label {s['string_labels']}, big field {s['big']}, "
              f"max_record_bytes {s['max_record_bytes']}, "
              f"max_rejected_fraction {s['max_rejected_fraction']}, broken {s['broken']}")
        assert "Traceback" not in message
        if s["broken"]:
            assert code == 2, (code, message[-2000:])
            assert "config error" in message and BROKEN[s["broken"]][0] in message, message
            return
        assert code in (0, 3), (code, message[-2000:])
        if code == 3:
            _check_rejected_gate(s, out, message)
            return
        with open(os.path.join(out, "run_summary.json"), encoding="utf-8") as f:
            summary = json.load(f)
        assert summary["rows"]["rejected"] <= s["max_rejected_fraction"] * summary["rows"]["read"]
        _check_success(s, data, out, summary)

    try:
        check()
    finally:
        print(f"{sum(seen.values())} examples in {time.time() - started:.0f} s: {dict(seen)}")
    assert sum(seen.values()) == EXAMPLES
