"""Faults end to end, through the command line: a tiny training run killed at random points (SIGKILL) and
interrupted (Ctrl-C), then resumed, ends with the same numbers as an uninterrupted one and leaves nothing behind;
a full disk and a read-only folder are one line each. Real faults: a tmpfs of 1 MiB for the full disk and a
read-only tmpfs when the test may mount one (as root); otherwise a file-size limit and a chmod-ed folder."""
import contextlib
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from gsrepro.synth import generate, get_preset

SETS = dict(epochs=3, image_size=32, batch_size=16, queue_size=64, n_clusters=4, adbm_k=8, num_workers=0, progress="false")
TIMES = ("train_s", "val_s")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    return generate(root / "synth", get_preset("mini", n_pairs=12, image_size=32, frames=2, qualities=("c23",),
                                               celebdf_real=3, dfdc_pairs=1), workers=1, progress=False)


def command(data, out, *extra) -> list:
    sets = [f"--set={k}={v}" for k, v in SETS.items()]
    return [sys.executable, "-m", "gsrepro", "train", "--data", str(data), "--out", str(out),
            f"--set=cluster_cache={Path(out).parent / 'clusters'}", *sets, *extra]


def env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def log_without_times(run: Path) -> list:
    return pd.read_csv(run / "log.csv").drop(columns=list(TIMES)).astype(object).fillna("NaN").to_dict("records")   # NaN: a statistic not logged yet


def leftovers(run: Path) -> list:
    return sorted(p.name for p in run.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp"))


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    "The uninterrupted run."
    out = tmp_path_factory.mktemp("ref") / "run"
    subprocess.run(command(data, out), env=env(), check=True, capture_output=True, timeout=300)
    return out


def test_killed_at_random_points_resumes_to_the_same_numbers(data, reference, tmp_path):
    rng, out = random.Random(0), tmp_path / "run"
    kills = 0
    for _ in range(4):                                            # kill, then resume, at random moments
        proc = subprocess.Popen(command(data, out, "--resume"), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(1.5, 6.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL); kills += 1
        proc.wait(timeout=60)
    done = subprocess.run(command(data, out, "--resume"), env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert kills >= 1
    assert log_without_times(out) == log_without_times(reference)
    assert (out / "train.json").is_file() and leftovers(out) == []


def test_ctrl_c_says_what_was_kept_and_resumes(data, reference, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(command(data, out), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").is_file() and time.time() < deadline: time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=60)[1].strip().splitlines()
    assert proc.returncode == 130 and len(err) == 1, err
    assert err[0].startswith("gsrepro train: interrupted; ") and "--resume" in err[0]
    done = subprocess.run(command(data, out, "--resume"), env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert log_without_times(out) == log_without_times(reference) and leftovers(out) == []


@contextlib.contextmanager
def mounted(path: Path, options: str):
    "A tmpfs at `path` (yields True) when this process may mount one, else nothing (yields False)."
    path.mkdir(parents=True, exist_ok=True)
    ok = os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                                              capture_output=True).returncode == 0
    try: yield ok
    finally:
        if ok: subprocess.run(["umount", "-l", str(path)], capture_output=True)


def limited_file_size():
    "A file-size limit of 64 KiB in the child (writes beyond it fail with EFBIG instead of killing it)."
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))


def test_full_disk_is_one_line_and_leaves_no_temp_file(data, tmp_path):
    with mounted(tmp_path / "small", "size=1m") as tmpfs:
        out = tmp_path / "small" / "run"
        proc = subprocess.run(command(data, out), env=env(), capture_output=True, text=True, timeout=300,
                              preexec_fn=None if tmpfs else limited_file_size)
        err = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(err) == 1 and err[0].startswith("gsrepro train: error: "), proc.stderr[-2000:]
        assert ("disk is full" if tmpfs else "File too large") in err[0] and "checkpoint.pt" in err[0]
        assert not any(p.name.endswith(".tmp") for p in out.rglob("*"))


def test_read_only_folder_is_one_line(data, tmp_path):
    with mounted(tmp_path / "ro", "ro,size=1m") as tmpfs:
        if not tmpfs:
            if os.geteuid() == 0: pytest.skip("root ignores permissions and cannot mount a read-only tmpfs here")
            (tmp_path / "ro").chmod(0o555)
        proc = subprocess.run(command(data, tmp_path / "ro" / "run"), env=env(), capture_output=True, text=True, timeout=120)
        err = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(err) == 1, proc.stderr[-2000:]
        assert err[0].startswith("gsrepro train: error: ") and ("Read-only file system" in err[0] or "Permission denied" in err[0])
