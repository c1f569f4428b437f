"""Runs the commands of tests/test_gcs.py inside the emulator's network namespace and dumps
what the tests assert on (exit codes, output, object listings, parsed records) as JSON.

    python driver.py WORK RESULTS.json

WORK holds `local/` (config.yaml, config2.yaml, data/, a local run's output goes to
local/out), `refresh/` (config.yaml, spans/<span>/...) and `rows.csv` (raw rows to
predict). The same config files are uploaded to gs://bkt/in/ and gs://bkt/r/, so every
relative path in them (inputs, output) resolves to gs://.
"""

import json
import os
import subprocess
import sys
import time

BUCKET = "gs://bkt"
EXE = os.path.join(os.path.dirname(sys.executable), "beam-pipeline")
WORK = [None]


def _cli(*args, timeout=900):
    started = time.time()
    # In WORK: a command that took a gs:// path for a local one would leave ./gs:/ there.
    proc = subprocess.run([EXE, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=WORK[0])
    return {"args": list(args), "rc": proc.returncode, "stdout": proc.stdout[-20000:],
            "stderr": proc.stderr[-20000:], "seconds": round(time.time() - started, 2)}


def _upload(tf, local_dir, remote_dir):
    for dirpath, _, names in os.walk(local_dir):
        for name in names:
            local = os.path.join(dirpath, name)
            remote = remote_dir + "/" + os.path.relpath(local, local_dir)
            tf.io.gfile.makedirs(os.path.dirname(remote))
            tf.io.gfile.copy(local, remote, overwrite=True)


def _listing(folder):
    from beam_pipeline.outputs import storage
    prefix = folder.rstrip("/") + "/"
    return [p[len(prefix):] if p.startswith(prefix) else p for p in storage.files(folder)]


def _records(tf, out, split):
    """Every record of a split as {feature: values}, in a canonical order (the order of the
    features inside a serialized tf.Example varies between processes)."""
    from beam_pipeline.outputs import layout
    files = sorted(tf.io.gfile.glob(layout.data_pattern(out, split)))
    rows = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        example = tf.train.Example.FromString(record.numpy())
        row = {}
        for name, feature in example.features.feature.items():
            kind = feature.WhichOneof("kind")
            values = list(getattr(feature, kind).value)
            row[name] = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v
                         for v in values]
        rows.append(row)
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True))


def _read(tf, path):
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def _vocabularies(tf, out):
    folder = out.rstrip("/") + "/transform_fn/assets"
    if not tf.io.gfile.isdir(folder):
        return {}
    return {n: _read(tf, folder + "/" + n) for n in sorted(tf.io.gfile.listdir(folder))}


def _run_output(tf, out):
    return {"files": _listing(out),
            "train": _records(tf, out, "train"), "eval": _records(tf, out, "eval"),
            "statistics": json.loads(_read(tf, out.rstrip("/") + "/statistics/train.json")),
            "summary": json.loads(_read(tf, out.rstrip("/") + "/run_summary.json")),
            "vocabularies": _vocabularies(tf, out)}


def main(work, results_path):
    import tensorflow as tf
    results = {"steps": {}}
    steps = results["steps"]
    WORK[0] = work

    def dump():
        with open(results_path, "w") as f:
            json.dump(results, f)

    local = os.path.join(work, "local")
    steps["local_preprocess"] = _cli("preprocess", "--config", os.path.join(local, "config.yaml"))
    results["local"] = _run_output(tf, os.path.join(local, "out"))
    dump()

    # One-shot outputs: inputs, config and output on gs://.
    inp = BUCKET + "/in"
    _upload(tf, os.path.join(local, "data"), inp + "/data")
    for name in ("config.yaml", "config2.yaml"):
        tf.io.gfile.copy(os.path.join(local, name), f"{inp}/{name}", overwrite=True)
    out = inp + "/out"
    steps["preprocess"] = _cli("preprocess", "--config", inp + "/config.yaml",
                               "--progress-interval", "0.2")
    results["first_files"] = _listing(out)
    steps["preprocess_again"] = _cli("preprocess", "--config", inp + "/config.yaml")
    results["files_after_refused"] = _listing(out)
    # config2 differs only in num_shards: the old part-*-of-00001 must not survive.
    steps["overwrite"] = _cli("preprocess", "--config", inp + "/config2.yaml", "--overwrite")
    results["gcs"] = _run_output(tf, out)
    results["siblings"] = _listing(BUCKET)
    dump()
    steps["train"] = _cli("train", "--config", inp + "/config2.yaml")
    results["model_files"] = _listing(out + "/model")
    steps["inspect"] = _cli("inspect", out)
    steps["predict"] = _cli("predict", "--model", out + "/model/serving",
                            "--input", os.path.join(work, "rows.csv"))
    dump()

    # Two refreshes under gs://bkt/r/out, the second with one new span.
    refresh = os.path.join(work, "refresh")
    root = BUCKET + "/r"
    spans = sorted(os.listdir(os.path.join(refresh, "spans")))
    tf.io.gfile.copy(os.path.join(refresh, "config.yaml"), root + "/config.yaml")
    _upload(tf, os.path.join(refresh, "spans", spans[0]), f"{root}/spans/{spans[0]}")
    steps["refresh1"] = _cli("refresh", "--config", root + "/config.yaml")
    results["refresh1_files"] = _listing(root + "/out")
    for span in spans[1:]:
        _upload(tf, os.path.join(refresh, "spans", span), f"{root}/spans/{span}")
    steps["refresh2"] = _cli("refresh", "--config", root + "/config.yaml")
    results["refresh2_files"] = _listing(root + "/out")
    latest = (_read(tf, root + "/out/LATEST") or "").strip()
    results["latest"] = latest
    results["manifests"] = {}
    for name in sorted({p.split("/")[1] for p in results["refresh2_files"]
                        if p.startswith("runs/") and p.endswith("/MANIFEST.json")}):
        results["manifests"][name] = json.loads(_read(tf, f"{root}/out/runs/{name}/MANIFEST.json"))
    steps["inspect_refresh"] = _cli("inspect", root + "/out")
    results["stray_local"] = sorted(n for n in os.listdir(work) if n.startswith("gs:"))
    dump()
    results["lock"] = _lock_checks(tf, inp)
    dump()


def _lock_checks(tf, inp):
    """The output lock on gs://: a create-if-absent object (if_generation_match=0)."""
    from beam_pipeline.outputs import output_lock
    out = inp + "/out"
    path = output_lock.lock_path(out)
    found = {}
    held = output_lock.OutputLock(out, "driver").acquire()
    found["object_while_held"] = json.loads(_read(tf, path))
    try:
        output_lock.OutputLock(out, "second").acquire()
        found["second"] = "won"
    except output_lock.Held as e:
        found["second"] = e.holder
    before = _listing(out)
    found["preprocess_while_held"] = _cli("preprocess", "--config", inp + "/config2.yaml",
                                          "--overwrite")
    found["unchanged_while_held"] = _listing(out) == before
    held.release()
    found["released"] = not tf.io.gfile.exists(path)
    # A stale lock (this host, a pid that is gone): two takers read it; the generation
    # precondition lets exactly one delete it.
    stale = output_lock.holder_info("killed")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale["pid"] = dead.pid
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(stale))
    first, second = output_lock._store(path), output_lock._store(path)
    (_, gen_a), (_, gen_b) = first.read(), second.read()
    found["takers_removed"] = [first.remove_if_unchanged(gen_a),
                               second.remove_if_unchanged(gen_b)]
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(stale))
    taker = output_lock.OutputLock(out, "taker").acquire()
    found["took_over"] = taker.took_over
    found["created_again"] = first.create(b"{}")
    taker.release()
    found["released_after_takeover"] = not tf.io.gfile.exists(path)
    return found


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
