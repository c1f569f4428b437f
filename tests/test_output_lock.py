"""One writer per output: the lock beside it, raced by real processes started together.

The races are driven by files, never by timers: each contender writes `ready`, waits for
the test's `go`, tries the lock, writes its result, and a winner holds the lock until
every contender's result is written (so two winners would both be seen holding it).
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from beam_pipeline.outputs import output_lock
from tests import crash_runs as cr
from tests.conftest import REPO

RACES = 20

_CONTENDER = """
    import json, os, sys
    from beam_pipeline.outputs import output_lock
    out, name, folder, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    def wait_for(path):
        while not os.path.exists(path):
            os.sched_yield()
    open(os.path.join(folder, name + ".ready"), "w").close()
    wait_for(os.path.join(folder, "go"))
    lock = output_lock.OutputLock(out, name)
    try:
        lock.acquire()
        result = {"won": True, "took_over": lock.took_over, "token": lock.info["token"]}
    except output_lock.Held as e:
        result = {"won": False, "took_over": lock.took_over, "holder": e.holder,
                  "message": str(e)}
        lock = None
    with open(os.path.join(folder, name + ".tmp"), "w") as f:
        json.dump(result, f)
    os.rename(os.path.join(folder, name + ".tmp"), os.path.join(folder, name + ".result"))
    if lock is not None:
        for i in range(n):  # hold it until every contender has tried
            wait_for(os.path.join(folder, "c%d.result" % i))
        lock.release()
"""


def _race(out, folder, contenders=2):
    """Starts `contenders` processes on the lock of `out`, releases them at once, returns
    their results by name."""
    os.makedirs(folder)
    names = [f"c{i}" for i in range(contenders)]
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(_CONTENDER), out, name,
                               folder, str(contenders)], cwd=REPO, stderr=subprocess.PIPE,
                              text=True) for name in names]
    try:
        for name, proc in zip(names, procs):
            while not os.path.exists(os.path.join(folder, name + ".ready")):
                assert proc.poll() is None, proc.stderr.read()
                os.sched_yield()
        open(os.path.join(folder, "go"), "w").close()
        for proc in procs:
            assert proc.wait(timeout=300) == 0, proc.stderr.read()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    results = {}
    for name in names:
        with open(os.path.join(folder, name + ".result")) as f:
            results[name] = json.load(f)
    return results


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _stale_lock(out):
    holder = output_lock.holder_info("preprocess")
    holder["pid"] = _dead_pid()
    with open(output_lock.lock_path(out), "w") as f:
        json.dump(holder, f)
    return holder


def test_of_two_runs_started_together_exactly_one_takes_the_lock(tmp_path):
    counts = {"races": 0, "winners": 0, "refusals": 0}
    for race in range(RACES):
        out = str(tmp_path / f"out{race}")
        results = _race(out, str(tmp_path / f"race{race}"))
        winners = [n for n, r in results.items() if r["won"]]
        assert len(winners) == 1, results
        (loser,) = [r for r in results.values() if not r["won"]]
        assert loser["holder"]["token"] == results[winners[0]]["token"]
        # The refusal names the holder: the winner's host, pid and start time.
        assert loser["holder"]["command"] == winners[0]
        assert f"pid {loser['holder']['pid']}" in loser["message"]
        assert loser["holder"]["started"] in loser["message"]
        assert not os.path.exists(output_lock.lock_path(out))  # released by the winner
        counts["races"] += 1
        counts["winners"] += 1
        counts["refusals"] += 1
    print("lock races:", counts)


def test_of_two_runs_taking_over_one_stale_lock_exactly_one_wins(tmp_path):
    for race in range(RACES):
        out = str(tmp_path / f"out{race}")
        stale = _stale_lock(out)
        results = _race(out, str(tmp_path / f"race{race}"))
        (winner,) = [r for r in results.values() if r["won"]]
        (loser,) = [r for r in results.values() if not r["won"]]
        # One of them removed the stale lock (the winner, or the loser, whose new lock the
        # other then created first); the loser is refused by the winner's lock.
        takers = [r for r in results.values()
                  if r["took_over"] and r["took_over"]["token"] == stale["token"]]
        assert len(takers) == 1, results
        assert loser["holder"]["token"] == winner["token"]


def test_a_live_holder_is_never_taken_over(tmp_path):
    out = str(tmp_path / "out")
    with output_lock.OutputLock(out, "preprocess") as held:
        with pytest.raises(output_lock.Held) as refused:
            output_lock.OutputLock(out, "refresh").acquire()
        assert refused.value.holder["token"] == held.info["token"]
    assert not os.path.exists(output_lock.lock_path(out))


def test_when_a_lock_is_stale():
    mine = output_lock.holder_info("x")
    assert not output_lock.is_stale(mine)
    assert output_lock.is_stale({**mine, "pid": _dead_pid()})
    # A pid reused by another process (another start time) is gone too.
    assert output_lock.is_stale({**mine, "pid_start": "1"})
    # Another host cannot be checked: only age decides.
    other = {**mine, "host": "elsewhere", "pid": 1}
    assert not output_lock.is_stale(other)
    assert output_lock.is_stale(other, now=mine["started_epoch"]
                                + output_lock.STALE_AFTER_SECONDS + 1)


def test_an_unreadable_lock_is_taken_over_only_once_it_is_old(tmp_path):
    out = str(tmp_path / "out")
    path = output_lock.lock_path(out)
    open(path, "w").close()  # empty: written by hand, or damaged
    with pytest.raises(output_lock.Held):
        output_lock.OutputLock(out, "preprocess").acquire()
    os.utime(path, (1, 1))
    lock = output_lock.OutputLock(out, "preprocess").acquire()
    assert lock.took_over["unreadable"]
    lock.release()


def test_a_second_preprocess_on_a_locked_output_exits_2_naming_the_holder(tmp_path):
    cr.make_span(tmp_path / "csv", 50, seed=3)
    out = str(tmp_path / "out")
    path = cr.config(tmp_path, str(tmp_path / "csv" / "*.csv"), out)
    with output_lock.OutputLock(out, "refresh") as held:
        for command in ("preprocess", "refresh"):
            proc = cr.cli(command, "--config", path)
            assert proc.returncode == 2, proc.stderr[-2000:]
            assert f"pid {os.getpid()}" in proc.stderr, proc.stderr
            assert held.info["started"] in proc.stderr
            assert "Traceback" not in proc.stderr
            # Nothing written: no output, no staging folder.
            assert not os.path.exists(out) and cr.siblings(out) == []


def test_two_real_refreshes_started_together_never_both_publish(tmp_path):
    """The console script twice at once on a new output: one runs and publishes; the other
    is refused (exit 2) or, had it started after the first ended, finds it up to date."""
    cr.make_span(tmp_path / "data" / "2026-11-01", 100, seed=4)
    for race in range(2):
        root = str(tmp_path / f"out{race}")
        path = cr.config(tmp_path, str(tmp_path / "data" / "*" / "*.csv"), root)
        procs = [subprocess.Popen([cr.EXE, "refresh", "--config", path],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        outcomes = [p.communicate(timeout=600) + (p.returncode,) for p in procs]
        published = [o for o in outcomes if o[2] == 0 and "published run" in o[0]]
        assert len(published) == 1, outcomes
        (other,) = [o for o in outcomes if o is not published[0]]
        assert (other[2] == 2 and "is held by another run" in other[1]) or \
            (other[2] == 0 and "already holds" in other[0]), other
        from beam_pipeline.refresh import runs
        assert len(runs.complete_runs(root)) == 1
        assert not os.path.exists(output_lock.lock_path(root))


def test_a_temp_lock_file_of_a_killed_run_is_removed_by_the_next(tmp_path):
    out = str(tmp_path / "out")
    dead = output_lock.lock_path(out) + f".{_dead_pid()}-0a1b2c3d.tmp"  # killed before link
    live = output_lock.lock_path(out) + f".{os.getpid()}-0a1b2c3d.tmp"  # a run linking now
    for path in (dead, live):
        open(path, "w").close()
    with output_lock.OutputLock(out, "preprocess"):
        assert not os.path.exists(dead) and os.path.exists(live)
