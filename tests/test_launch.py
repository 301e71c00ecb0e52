"""`gsrepro plan`, `launch` and `status` (the cluster path) on CPU: the plan of the default run is the set of runs
the committed reports were made from; local launches train tiny runs in parallel processes that a notebook then
reuses; a killed launch resumes to the same numbers; two launches train a run once; a two-process (gloo) DDP run
lands under its single-process hash; `--no-train` lists the missing cells; the SLURM script is what submitit
would submit; bad input is one line."""
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from gsrepro.cli import main
from gsrepro.core import repo_root
from gsrepro.registry import read_registry

TINY = [f"--set={k}" for k in ("epochs=1", "image_size=32", "batch_size=16", "queue_size=64", "n_clusters=4", "adbm_k=8",
                               "num_workers=0", "progress=false", "frames_per_video=1", "val_frames_per_video=1")] + ["--seeds", "0"]


def gsrepro(*argv, timeout=600, **kw):
    "Run the command in a subprocess (one CPU thread), as a user would."
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "gsrepro", *map(str, argv)], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=repo_root(), **kw)


def plan(tmp, *argv) -> pd.DataFrame:
    out = tmp / f"plan{len(list(tmp.glob('plan*')))}.json"
    r = gsrepro("plan", "--runs", tmp / "runs", "--json", out, *argv)
    assert r.returncode == 0, r.stderr[-2000:]
    return pd.DataFrame(json.loads(out.read_text()))


def test_the_default_plan_is_the_runs_of_the_committed_reports(tmp_path):
    committed = pd.read_csv(repo_root() / "reports" / "registry.csv")
    p = plan(tmp_path)                                                      # mini, every report, seeds 0-2: the default run
    assert set(p.run) == set(committed.run) and set(p.state) == {"missing"}


def test_local_launch_then_a_notebook_reuses(tmp_path):
    before = plan(tmp_path, "--only", "table2", *TINY)
    assert len(before) == 2 and set(before.state) == {"missing"}
    r = gsrepro("launch", "--executor", "local", "--parallel", "2", "--runs", tmp_path / "runs", "--only", "table2", *TINY)
    assert r.returncode == 0 and "2 of 2 runs trained" in r.stdout, r.stderr[-2000:]
    assert set(plan(tmp_path, "--only", "table2", *TINY).state) == {"done"}
    r = gsrepro("reproduce", "--runs", tmp_path / "runs", "--out", tmp_path / "out", "--only", "table2", *TINY)
    assert r.returncode == 0, r.stderr[-2000:]
    log = read_registry(tmp_path / "runs")
    assert sorted(log[log.action == "trained"].hash) == sorted(before.run)  # trained by the launch, once each
    assert "reused" in set(log.action) and (tmp_path / "out" / "table2.csv").is_file()
    r = gsrepro("launch", "--executor", "local", "--runs", tmp_path / "runs", "--only", "table2", *TINY)
    assert r.returncode == 0 and r.stdout.strip().startswith("gsrepro launch: nothing to launch")


def test_killed_launch_resumes_to_the_same_numbers(tmp_path):
    longer = [*TINY, "--set=epochs=3", "--only", "fig_tsne"]
    ref = gsrepro("launch", "--executor", "local", "--parallel", "1", "--runs", tmp_path / "ref", *longer)
    assert ref.returncode == 0, ref.stderr[-2000:]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "gsrepro", "launch", "--executor", "local", "--parallel", "1", "--runs", str(tmp_path / "runs"), *longer]
    proc = subprocess.Popen(cmd, env=env, cwd=repo_root(), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list((tmp_path / "runs").glob("*/checkpoint.pt")) and time.time() < deadline: time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL); proc.wait()                          # the launcher and its task
    assert list((tmp_path / "runs").glob("*/checkpoint.pt")) and not list((tmp_path / "runs").glob("*/train.json"))
    again = subprocess.run(cmd, env=env, cwd=repo_root(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    runs = [p.parent for p in (tmp_path / "ref").glob("*/train.json")]
    metrics = lambda d: {k: {m: v[m] for m in ("acc", "auc", "video_auc")} for k, v in json.loads((d / "metrics.json").read_text()).items()}
    assert len(runs) == 2 and all(metrics(tmp_path / "runs" / run.name) == metrics(run) for run in runs)   # CE-2 and Ours
    assert "resumed" in set(read_registry(tmp_path / "runs").action)


def test_two_launches_train_a_run_once(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "gsrepro", "launch", "--executor", "local", "--parallel", "1", "--runs", str(tmp_path / "runs"),
           "--only", "fig_tsne", *TINY]
    procs = [subprocess.Popen(cmd, env=env, cwd=repo_root(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs: assert p.wait(timeout=600) == 0, p.stderr.read()[-2000:]
    log = read_registry(tmp_path / "runs")
    trained = log[log.action == "trained"].hash
    assert len(trained) == 2 and trained.is_unique                       # CE-2 and Ours, each once
    assert (log.action == "reused").sum() == 2 and log.note.str.contains("waited").any()


def test_two_gloo_processes_land_under_the_single_process_hash(tmp_path):
    ddp = [*TINY, "--only", "table1", "--set=bn=frozen", "--set=augment=false"]
    r = gsrepro("launch", "--executor", "local", "--procs-per-run", "2", "--parallel", "1", "--runs", tmp_path / "runs", *ddp)
    assert r.returncode == 0, r.stderr[-3000:]
    runs = [p.parent for p in (tmp_path / "runs").glob("*/train.json")]
    assert len(runs) == 4 and all(len(torch.load(run / "checkpoint.pt", weights_only=True)["rng"]) == 2 for run in runs)  # 2 processes each
    p = plan(tmp_path, *ddp)
    assert set(p.run) == {run.name for run in runs} and set(p.state) == {"done"}
    r = gsrepro("reproduce", "--runs", tmp_path / "runs", "--out", tmp_path / "out", *ddp)
    assert r.returncode == 0, r.stderr[-2000:]
    log = read_registry(tmp_path / "runs")
    assert (log.action == "trained").sum() == 4 and "reused" in set(log.action)


def test_no_train_lists_the_missing_cells(tmp_path):
    r = gsrepro("reproduce", "--no-train", "--runs", tmp_path / "runs", "--out", tmp_path / "out", "--only", "table1", *TINY)
    assert r.returncode == 0, r.stderr[-2000:]
    md = (tmp_path / "out" / "table1.md").read_text()
    assert "Not trained yet (rendered with train = False; empty cells): Ours FF++-HQ" in md
    t = pd.read_csv(tmp_path / "out" / "table1.csv")
    assert t[t.source != "paper"].value.isna().all() and not (tmp_path / "runs").exists()


def test_slurm_script_and_bad_input(tmp_path, capsys):
    r = gsrepro("launch", "--executor", "slurm", "--dry-run", "--runs", tmp_path / "runs", "--only", "table2", "--gpus-per-run", "2",
                "--time", "4:00:00", "--partition", "gpu", "--account", "lab", "--array-parallelism", "4", "--sbatch", "constraint=a100", *TINY)
    assert r.returncode == 0, r.stderr[-2000:]
    for line in ("#SBATCH --array=0-1%2", "#SBATCH --gpus-per-node=2", "#SBATCH --ntasks-per-node=2", "#SBATCH --time=240",
                 "#SBATCH --partition=gpu", "#SBATCH --account=lab", "#SBATCH --constraint=a100", "-m submitit.core._submit"):
        assert line in r.stdout, line
    for argv, message in ((["launch", "--partition", "gpu;rm -rf /", "--executor", "slurm", "--dry-run"], "expected a partition name"),
                          (["launch", "--time", "tomorrow"], "expected minutes, HH:MM:SS"),
                          (["launch", "--sbatch", "constraint"], "expected KEY=VALUE"),
                          (["status"], "holds no runs yet")):
        capsys.readouterr()
        assert main([*argv[:1], "--runs", str(tmp_path / "empty"), "--only", "table2", *argv[1:]]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
