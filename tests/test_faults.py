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


# ---------------------------------------------------------------------------------------------------------------------
# Hardening, second pass: one case per failure found by probing as a hostile user would. Each case builds the input
# that failed (the failure reproduced), then asserts the fixed behaviour: exit code 2 and one line, or the warning.

from gsrepro.core import pid_alive                                      # noqa: E402

MEMORY_CAP = 4 << 30      # address space of a capped child: enough for torch, far below what the unbounded sizes asked


def capped():
    "In the child: at most MEMORY_CAP bytes of address space, so a size check that regresses fails instead of eating the machine."
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def gsr(*argv, cap=True, timeout=300, env_extra=None, **kw):
    "`gsrepro ARGV` in a subprocess (under the memory cap unless `cap=False`)."
    return subprocess.run([sys.executable, "-m", "gsrepro", *map(str, argv)], env={**env(), **(env_extra or {})},
                          capture_output=True, text=True, timeout=timeout, preexec_fn=capped if cap else None, **kw)


def one_error(proc, cmd: str, *needles) -> str:
    "Exit code 2 and exactly one line `gsrepro CMD: error: ...` holding every needle."
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"gsrepro {cmd}: error: "), \
        (proc.returncode, proc.stderr[-3000:])
    assert all(n in lines[0] for n in needles), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def ctx(data, reference, tmp_path_factory):
    "What the cases share: the data, a finished run, a copy factory, an image, and the run exported as a .gsr file."
    import cv2
    from gsrepro.testing import astronaut_head
    top = tmp_path_factory.mktemp("matrix")
    cv2.imwrite(str(top / "face.png"), astronaut_head())
    r = gsr("export", reference, "--out", top / "model.gsr", cap=False)
    assert r.returncode == 0, r.stderr[-2000:]
    return dict(data=Path(data), run=reference, top=top, image=top / "face.png", gsr=top / "model.gsr")


def run_copy(ctx, tmp_path, name="run") -> Path:
    import shutil
    d = tmp_path / name
    shutil.copytree(ctx["run"], d, ignore=shutil.ignore_patterns(".lock", "scores.csv", "metrics.json"))
    return d


def edited_gsr(ctx, path, tensors=None, **meta_changes) -> Path:
    "The exported .gsr with some tensors and metadata changed (the weights digest recomputed, as an editor would)."
    import json as _json
    from safetensors import safe_open
    from safetensors.torch import save_file
    from gsrepro.predict import weights_digest
    with safe_open(str(ctx["gsr"]), framework="pt") as f:
        header, ts = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    meta = {k: _json.loads(v) for k, v in header.items()}
    ts = {k: (tensors(k, v) if tensors else v) for k, v in ts.items()}
    for key, change in meta_changes.items(): change(meta[key])
    meta["weights_sha256"] = weights_digest(ts)
    save_file(ts, str(path), metadata={k: _json.dumps(v) for k, v in meta.items()})
    return path


# 1. No upper bounds: every size is checked before any allocation, under a memory cap -----------------------------------

def case_guides_dim(ctx, tmp_path):
    one_error(gsr("guides", "--dim", 100_000_000, "-K", 4, "--out", tmp_path / "g.npz"), "guides",
              "guide-space dim = 100,000,000 exceeds the bound 16,384")
    assert not (tmp_path / "g.npz").exists()


@pytest.mark.parametrize("settings,needle", [(["image_size=100000"], "image_size must be a finite number >= 32 and <= 2048"),
                                             (["proj_dim=1000000000"], "proj_dim must be a finite number >= 2 and <= 16384"),
                                             (["queue_size=1000000000"], "queue_size must be a finite number >= 1 and <= 262144"),
                                             (["num_workers=1000"], "num_workers must be a finite number >= 0 and <= 64"),
                                             (["queue_size=262144", "proj_dim=16384"],
                                              "queue_size x proj_dim x 4 bytes = 17,179,869,184 exceeds the bound 2,147,483,648")])
def test_size_settings_are_bounded_under_a_memory_cap(ctx, tmp_path, settings, needle):
    proc = gsr(*command(ctx["data"], tmp_path / "run", *[f"--set={s}" for s in settings])[3:])
    one_error(proc, "train", needle)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def case_gsr_proj_dim(ctx, tmp_path):
    bad = edited_gsr(ctx, tmp_path / "big.gsr", config=lambda c: c.update(proj_dim=2 ** 40))
    one_error(gsr("predict", ctx["image"], "--model", bad, "--out", tmp_path / "s.csv"), "predict",
              "inconsistent gsrepro metadata", "proj_dim must be a finite number >= 2 and <= 16384, got 1099511627776")


def case_gsr_input_size(ctx, tmp_path):
    bad = edited_gsr(ctx, tmp_path / "big.gsr", input=lambda i: i.update(size=200_000))
    one_error(gsr("predict", ctx["image"], "--model", bad, "--out", tmp_path / "s.csv"), "predict",
              "input size = 200,000 exceeds the bound 2,048")


def case_png_bomb(ctx, tmp_path):
    import struct, zlib
    chunk = lambda kind, d: struct.pack(">I", len(d)) + kind + d + struct.pack(">I", zlib.crc32(kind + d))
    (tmp_path / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0))
                                        + chunk(b"IEND", b""))
    code = ("import pandas as pd, sys; from gsrepro.data import FaceDataset\n"
            f"df = pd.DataFrame(dict(path=['bomb.png'], label=[0], method=['real'])); df.attrs['root'] = {str(tmp_path)!r}\n"
            "try: FaceDataset(df, image_size=32).load_image(0)\nexcept ValueError as e: print(e); sys.exit(2)\n")
    proc = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True, text=True, timeout=120, preexec_fn=capped)
    assert proc.returncode == 2 and "cannot decode image" in proc.stdout and "900000000 pixels" in proc.stdout, proc.stderr[-2000:]


# 2. Tracebacks left --------------------------------------------------------------------------------------------------

def case_image_size_8(ctx, tmp_path):
    for v in (8, 1):
        one_error(gsr(*command(ctx["data"], tmp_path / "run", f"--set=image_size={v}")[3:]), "train",
                  f"image_size must be a finite number >= 32 and <= 2048, got {v}")


def case_device_strings(ctx, tmp_path):
    one_error(gsr("predict", ctx["image"], "--model", ctx["run"], "--device", "gpu0", "--out", tmp_path / "s.csv"), "predict",
              "device must be auto, cpu, cuda or cuda:N, got 'gpu0'")
    for bad in ("meta", "gpu0"):
        line = one_error(gsr("evaluate", "--run", ctx["run"], "--device", bad), "evaluate", f"got {bad!r}")
        assert "best.pt" not in line


@pytest.mark.parametrize("damage,needle", [("shape", "has shape (3,)"), ("domains", "domain_names must be a list"),
                                           ("truncated", "is not a readable gsrepro checkpoint"),
                                           ("no_config", "no 'config' entry")])
def test_a_damaged_checkpoint_is_one_line_naming_it(ctx, tmp_path, damage, needle):
    import torch
    d = run_copy(ctx, tmp_path)
    state = torch.load(d / "best.pt", weights_only=True)
    if damage == "shape": state["model"]["proj.bias"] = torch.zeros(3)
    if damage == "domains": state["domain_names"] = None
    if damage == "no_config": del state["config"]
    torch.save(state, d / "best.pt")
    if damage == "truncated": (d / "best.pt").write_bytes((d / "best.pt").read_bytes()[:5000])
    one_error(gsr("evaluate", "--run", d, "--bootstrap", 0, "--no-progress"), "evaluate", str(d / "best.pt"), needle)
    one_error(gsr("predict", ctx["image"], "--model", d, "--out", tmp_path / "s.csv"), "predict", str(d / "best.pt"), needle)


# 3. One broken run stops `status` for all: a broken run is its own state --------------------------------------------

def case_status_goes_on(ctx, tmp_path):
    from gsrepro.launch import RUN_STATES, run_state
    runs = {}
    for name, files in {"empty_log": {"log.csv": ""}, "cut_failed": {"failed.json": '{"error": "boom", "tim'},
                        "list_failed": {"failed.json": "[1]"}, "good_failed": {"failed.json": '{"error": "boom"}'},
                        "two_epochs": {"log.csv": "epoch\n0\n1\n"}}.items():
        d = tmp_path / name
        d.mkdir()
        for f, text in files.items(): (d / f).write_text(text)
        runs[name] = run_state(d)
    assert "broken" in RUN_STATES
    assert runs["empty_log"][0] == "broken" and "log.csv unreadable" in runs["empty_log"][1]
    assert runs["cut_failed"][0] == "broken" and "failed.json unreadable" in runs["cut_failed"][1]
    assert runs["list_failed"] == ("broken", "failed.json is not a failure record (a JSON list)")
    assert runs["good_failed"] == ("failed", "boom") and runs["two_epochs"] == ("missing", "2 epochs done")
    assert run_state(ctx["run"])[0] == "done"


# 4. Broken runs used silently ----------------------------------------------------------------------------------------

def case_incomplete_run_refused(ctx, tmp_path):
    d = run_copy(ctx, tmp_path)
    (d / "train.json").unlink(); (d / "checkpoint.pt").unlink()                   # died at epoch 1 of 2: best.pt only
    for argv, cmd in ((["evaluate", "--run", d, "--bootstrap", 0, "--no-progress"], "evaluate"),
                      (["export", d, "--out", tmp_path / "m.gsr"], "export"),
                      (["predict", ctx["image"], "--model", d, "--out", tmp_path / "s.csv"], "predict")):
        one_error(gsr(*argv), cmd, f"{d} is an incomplete run", "--allow-incomplete")
    assert not (tmp_path / "m.gsr").exists()
    ok = gsr("export", d, "--out", tmp_path / "m.gsr", "--allow-incomplete")
    assert ok.returncode == 0 and "is an incomplete run" in ok.stderr and "using it anyway" in ok.stderr, ok.stderr[-2000:]


@pytest.mark.parametrize("damage,needle", [("nan", "holds NaN or infinite values"), ("int32", "the detector needs torch.float32"),
                                           ("std0", "std > 0")])
def test_a_damaged_model_file_is_one_line(ctx, tmp_path, damage, needle):
    import torch
    change = {"nan": dict(tensors=lambda k, v: v * float("nan") if v.is_floating_point() else v),
              "int32": dict(tensors=lambda k, v: v.to(torch.int32) if v.is_floating_point() else v),
              "std0": dict(input=lambda i: i.update(std=[0, 0, 0]))}[damage]
    bad = edited_gsr(ctx, tmp_path / "bad.gsr", **change)
    one_error(gsr("predict", ctx["image"], "--model", bad, "--out", tmp_path / "s.csv"), "predict", str(bad), needle)
    assert not (tmp_path / "s.csv").exists()


# 5. Silent clamps: each warns once -----------------------------------------------------------------------------------

def case_clamps_warn(ctx, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(command(ctx["data"], out, "--set=epochs=1", "--set=n_clusters=100000", "--set=adbm_start_epoch=1000"),
                          env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("n_clusters 100000 clamped to") == 1, proc.stderr[-3000:]
    assert proc.stderr.count("A-DBM never starts: adbm_start_epoch 1000 of 60") == 1, proc.stderr[-3000:]


def case_test_set_dropped_warns(ctx, tmp_path):
    import pandas as pd_
    from gsrepro.manifest import read_manifest, write_manifest
    df = read_manifest(ctx["data"])
    first = df[df.split == "test"].groupby(["dataset", "quality"]).ngroup() == 0
    gone = df[df.split == "test"][first].iloc[0]
    keep = df[~((df.split == "test") & (df.dataset == gone.dataset) & (df.quality == gone.quality) & (df.label == 0))]
    m = write_manifest(pd_.DataFrame(keep), ctx["data"].parent / "manifest_no_real_test.csv")
    proc = gsr("evaluate", "--run", ctx["run"], "--data", m, "--list")
    assert proc.returncode == 0 and f"test set {gone.dataset}-{gone.quality} left out" in proc.stderr, proc.stderr[-2000:]


# 6. Processes and leftovers ------------------------------------------------------------------------------------------

def descendants(pid: int) -> set:
    "Every live process below `pid`, from /proc."
    children, out = {}, set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try: fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError): continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    todo = [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out: out.add(c); todo.append(c)
    return out


@pytest.mark.parametrize("sig,code,word", [(signal.SIGTERM, 143, "terminated (SIGTERM)"), (signal.SIGINT, 130, "interrupted")])
def test_a_signal_to_reproduce_stops_the_whole_tree(tmp_path, sig, code, word):
    """Two runs in flight (a pool of two workers); the signal goes to the parent alone, as `timeout` or a scheduler sends
    it. Nothing of the tree is alive 10 s later, no lock is held, and (SIGTERM) both runs resume and finish."""
    from gsrepro.core import lock_is_stale, read_lock
    from gsrepro.registry import read_registry
    runs = tmp_path / "runs"
    tiny = [f"--set={k}={v}" for k, v in dict(SETS, epochs=8, frames_per_video=2, val_frames_per_video=1).items()]
    held = lambda: [p for p in runs.glob("*/.lock") if p.parent.name != "clusters"]
    argv = [sys.executable, "-m", "gsrepro", "reproduce", "--runs", str(runs), "--out", str(tmp_path / "out"), "--only", "table2",
            "--seeds", "0", *tiny]
    proc = subprocess.Popen(argv, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while len(held()) < 2 and time.time() < deadline and proc.poll() is None: time.sleep(0.1)
    assert len(held()) == 2, "two runs never trained at once"
    time.sleep(1)
    tree = descendants(proc.pid)
    assert len(tree) >= 2
    proc.send_signal(sig)
    t0 = time.monotonic()
    err = proc.communicate(timeout=60)[1].strip().splitlines()
    assert time.monotonic() - t0 < 20                                     # stopped, not waiting for the runs to finish
    assert proc.returncode == code and err and err[-1].startswith(f"gsrepro reproduce: {word}; "), err[-5:]
    time.sleep(10)
    assert [p for p in tree if pid_alive(p)] == []                        # no process of it alive 10 s later
    trained = [p for p in runs.iterdir() if p.is_dir() and p.name != "clusters"]      # the two run folders that were in flight
    assert len(trained) == 2
    for d in trained: assert not (d / ".lock").exists() or lock_is_stale(*read_lock(d / ".lock"))
    assert not all((d / "train.json").is_file() for d in trained)          # the runs were stopped mid-training
    if sig == signal.SIGTERM:                                             # the same command again resumes both and finishes
        again = subprocess.run(argv, env=env(), capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stderr[-2000:]
        assert all((d / "train.json").is_file() for d in trained)
        log = read_registry(runs)
        assert set(log[log.action.isin(["resumed", "trained"])].hash) == {d.name for d in trained}


def case_predict_temp_folder_cleaned(ctx, tmp_path):
    import shutil
    inputs, tmpdir = tmp_path / "in", tmp_path / "tmp"
    inputs.mkdir(); tmpdir.mkdir()
    for i in range(300): shutil.copy(ctx["image"], inputs / f"{i:03d}.png")
    e = dict(TMPDIR=str(tmpdir))
    proc = subprocess.Popen([sys.executable, "-m", "gsrepro", "predict", str(inputs), "--model", str(ctx["gsr"]), "--out",
                             str(tmp_path / "s.csv"), "--no-progress"], env={**env(), **e}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(tmpdir.glob("gsrepro-predict-*")) and time.time() < deadline and proc.poll() is None: time.sleep(0.05)
    time.sleep(0.5)
    proc.kill(); proc.wait()
    left = list(tmpdir.glob("gsrepro-predict-*"))
    assert len(left) == 1                                                 # SIGKILL runs no cleanup: the folder stays ...
    r = gsr("predict", ctx["image"], "--model", ctx["gsr"], "--out", tmp_path / "s.csv", "--no-progress", env_extra=e)
    assert r.returncode == 0, r.stderr[-2000:]
    assert list(tmpdir.glob("gsrepro-predict-*")) == []                   # ... until the next start removes it


def case_two_preprocess_runs_at_once(ctx, tmp_path):
    from gsrepro.testing import make_example_tree, together
    root = make_example_tree("dfdc", tmp_path / "raw", n_frames=4, size=(160, 120))
    argv = ["preprocess", "dfdc", "--root", str(root), "--videos", "test_videos", "--out", str(tmp_path / "out"), "--frames", "2", "--size", "64",
            "--workers", "1", "--no-progress"]
    action = f"from gsrepro.cli import main; raise SystemExit(main({argv!r}))"
    results = together([("import gsrepro.preprocess", action)] * 2, tmp_path)
    assert [rc for rc, _, _ in results] == [0, 0], [err[-1500:] for _, _, err in results]
    assert sum("waiting: " in err for _, _, err in results) == 1               # the second waited on the folder's lock
    assert not (tmp_path / "out" / ".lock").exists()


# 7. Symlinks: containment resolves links, for every manifest ---------------------------------------------------------

@pytest.mark.parametrize("how", ["crop", "folder"])
def test_a_link_out_of_the_dataset_folder_is_refused(ctx, tmp_path, how):
    from gsrepro.manifest import read_manifest, write_manifest
    df = read_manifest(ctx["data"])
    top = ctx["data"].parent
    mine = tmp_path / "data"
    first = Path(df.path.iloc[0]).parts[0]
    if how == "folder": (mine).mkdir(); (mine / first).symlink_to(top / first)     # a class folder linked outside
    else:
        for p in df.path:
            (mine / p).parent.mkdir(parents=True, exist_ok=True)
            (mine / p).symlink_to(top / p)                                      # each crop replaced by a link outside
    write_manifest(df.drop(columns=[c for c in df.columns if c not in df.columns[:9]]), mine / "manifest.csv")
    one_error(gsr("evaluate", "--run", ctx["run"], "--data", mine, "--list"), "evaluate", "resolves to",
              "outside the manifest's folder")


@pytest.mark.parametrize("case", [case_guides_dim, case_gsr_proj_dim, case_gsr_input_size, case_png_bomb,          # 1
                                  case_image_size_8, case_device_strings,                                            # 2
                                  case_status_goes_on,                                                               # 3
                                  case_incomplete_run_refused,                                                       # 4
                                  case_clamps_warn, case_test_set_dropped_warns,                                     # 5
                                  case_predict_temp_folder_cleaned, case_two_preprocess_runs_at_once],              # 6
                         ids=lambda f: f.__name__[5:])
def test_hardening_matrix(ctx, tmp_path, case):
    case(ctx, tmp_path)
