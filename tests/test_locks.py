"""`gsrepro.core.run_lock`: one writer per run folder across processes; a live holder is refused or waited for, a
gone one (dead, killed, zombie, pid reused, or on another machine without heartbeat) is taken over; the holder's
heartbeat keeps its lock fresh; processes racing for a folder, a stale lock among them, never overlap."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import warnings

import pytest

import gsrepro.core as core
from gsrepro.core import RunLocked, read_lock, run_lock

HOLD = """
import sys, time
from gsrepro.core import run_lock
with run_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def hold_in_other_process(run, seconds=60):
    "A Python process that takes the lock of `run`, says so, and holds it for `seconds`."
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def write_lock(path, **kw):
    "A lock file as another process leaves it (default: this machine, pid 1, which always runs)."
    rec = dict(host=socket.gethostname(), pid=1, since="2026-01-02T03:04:05+00:00", machine=core._MACHINE,
               pid_start=None, token="other") | kw
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))


def test_live_holder_is_refused_then_killed_holder_is_taken_over(tmp_path):
    run = tmp_path / "run"
    proc = hold_in_other_process(run)
    try:
        with pytest.raises(RunLocked, match=rf"^{run} is being written by pid {proc.pid} on {socket.gethostname()} since \S+; "):
            with run_lock(run, wait=False): pass
        with pytest.warns(UserWarning, match=f"waiting: {run} is being written by pid {proc.pid}"):
            with pytest.raises(RunLocked, match="gave up waiting after 0.3 s"):
                with run_lock(run, timeout=0.3, poll=0.05): pass
        proc.send_signal(signal.SIGKILL)                     # killed: no cleanup, the lock file stays ...
        proc.wait()
        assert read_lock(run / ".lock")[0]["pid"] == proc.pid
        with run_lock(run, wait=False) as held:              # ... and is taken over at once (same machine, pid gone)
            assert read_lock(run / ".lock")[0]["pid"] == os.getpid() and held.waited_for is None
        assert not (run / ".lock").exists()
    finally:
        proc.kill(); proc.wait()


def test_waits_for_a_live_holder(tmp_path):
    run = tmp_path / "run"
    proc = hold_in_other_process(run, seconds=1.0)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        with run_lock(run, poll=0.05) as held:
            assert read_lock(run / ".lock")[0]["pid"] == os.getpid()
    assert proc.wait() == 0
    assert held.waited_for == f"pid {proc.pid} on {socket.gethostname()}" and held.waited_s > 0.3


def test_gone_holders_are_taken_over(tmp_path):
    lock = tmp_path / "run" / ".lock"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    while core._proc_stat(zombie.pid)[0] != "Z": time.sleep(0.01)     # exited, not reaped: `kill -0` still succeeds
    me = int(core._proc_stat("self")[19])
    for gone in (dict(pid=int(dead.stdout)), dict(pid=zombie.pid), dict(pid=os.getpid(), pid_start=me + 1)):
        write_lock(lock, **gone)
        with run_lock(lock.parent, wait=False):
            assert read_lock(lock)[0]["token"] != "other"
    zombie.wait()
    write_lock(lock)                                                    # pid 1 lives
    with pytest.raises(RunLocked, match="being written by pid 1 on"):
        with run_lock(lock.parent, wait=False): pass


def test_other_machines_heartbeat(tmp_path, monkeypatch):
    lock = tmp_path / "run" / ".lock"
    write_lock(lock, host="node7", machine="node7|boot|pid:[1]", pid=12345)
    with pytest.raises(RunLocked, match="pid 12345 on node7"):          # its pid means nothing here: its heartbeat is fresh
        with run_lock(lock.parent, wait=False): pass
    old = time.time() - core.LOCK_STALE_S - 1
    os.utime(lock, (old, old))
    with run_lock(lock.parent, wait=False):                              # no heartbeat for LOCK_STALE_S: taken over
        assert read_lock(lock)[0]["host"] == socket.gethostname()
    monkeypatch.setattr(core, "LOCK_HEARTBEAT_S", 0.05)
    with run_lock(lock.parent):                                          # the holder keeps its own lock fresh
        os.utime(lock, (old, old))
        time.sleep(0.5)
        assert time.time() - lock.stat().st_mtime < 5
    assert not lock.exists()


def test_reentrant_and_empty_lock_file(tmp_path):
    run = tmp_path / "run"
    with run_lock(run, wait=False):
        with run_lock(run, wait=False) as inner:                         # re-entrant within the process
            assert inner.waited_for is None
        assert (run / ".lock").exists()                                  # the inner exit does not release it
    assert not (run / ".lock").exists()
    (run / ".lock").write_text("")                                       # a holder between create and write: alive ...
    with pytest.raises(RunLocked, match="its lock file is being created"):
        with run_lock(run, wait=False): pass
    old = time.time() - core.LOCK_STALE_S - 1
    os.utime(run / ".lock", (old, old))
    with run_lock(run, wait=False): pass                                 # ... unless it has been so for LOCK_STALE_S


RACE = """
import sys, time
from gsrepro.core import run_lock
run, out, go = sys.argv[1:4]
import pathlib
while not pathlib.Path(go).exists(): time.sleep(0.001)
for _ in range(3):
    with run_lock(run, poll=0.01):
        with open(out, "a") as f: f.write(f"in {time.monotonic()}\\n")
        time.sleep(0.05)
        with open(out, "a") as f: f.write(f"out {time.monotonic()}\\n")
"""


def test_racing_processes_never_overlap(tmp_path):
    "Four processes take one folder's lock three times each, starting together on a stale lock: strictly one at a time."
    run, out, go = tmp_path / "run", tmp_path / "events", tmp_path / "go"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    write_lock(run / ".lock", pid=int(dead.stdout))
    procs = [subprocess.Popen([sys.executable, "-W", "ignore", "-c", RACE, str(run), str(out), str(go)]) for _ in range(4)]
    time.sleep(1.0)
    go.touch()
    assert [p.wait(timeout=120) for p in procs] == [0] * 4
    events = [line.split()[0] for line in out.read_text().splitlines()]
    assert events == ["in", "out"] * 12
    assert sorted(p.name for p in run.iterdir()) == []
