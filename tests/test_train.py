"""The trainer: exact resume, DDP (2 gloo processes via torchrun) equals one process, NaN stop, checkpoints
that load with weights_only=True, every loss variant, the command line, one writer per run folder, leftovers
and the log on resume, divergence with finite losses. All on a tiny SynthFF (32 px)."""
import math
import os
import socket
import subprocess
import sys
import time
import warnings

import pandas as pd
import pytest
import torch

import gsrepro.train as tr
from gsrepro.cli import main as gsrepro_main
from gsrepro.synth import generate, get_preset
from gsrepro.checkpoint import load_checkpoint, load_detector
from gsrepro.config import TrainConfig
from gsrepro.core import load_json, read_lock
from gsrepro.train import DivergenceWarning, NonFiniteLossError, train

TIMES = ("train_s", "val_s")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    "A tiny SynthFF (12 pairs, 32 px, 2 frames: 160 training and 40 validation images) and a cluster cache."
    root = tmp_path_factory.mktemp("train")
    data = generate(root / "synth", get_preset("mini", n_pairs=12, image_size=32, frames=2, qualities=("c23",),
                                               celebdf_real=3, dfdc_pairs=1), workers=1, progress=False)
    return dict(data=str(data), cluster_cache=str(root / "clusters"))


def tiny_cfg(tiny, **kw) -> TrainConfig:
    "The `mini` preset shrunk to the tiny set: 10 steps of 16 images per epoch."
    base = dict(image_size=32, batch_size=16, epochs=2, queue_size=64, n_clusters=4, adbm_k=8, progress=False)
    return TrainConfig.from_preset("mini", **{**base, **tiny, **kw})


def without_times(log):
    return [{k: v for k, v in row.items() if k not in TIMES} for row in log]


def test_checkpoints_load_weights_only(tiny, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(tiny_cfg(tiny), tmp_path, stop_after=1)
        mid = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
        result = train(tiny_cfg(tiny), tmp_path, resume=True)
    assert not [w for w in caught if issubclass(w.category, DivergenceWarning)] and "warning" not in result
    assert mid["epoch"] == 1 and mid["optimizer"]["state"], "Adam moments are saved while the run can resume"
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert {"model", "objective", "optimizer", "scheduler", "scaler", "rng", "epoch", "best", "log", "config"} <= set(ckpt)
    assert ckpt["epoch"] == 2 and len(ckpt["log"]) == 2 and len(ckpt["rng"]) == 1
    assert ckpt["optimizer"] is None, "a finished run keeps no optimizer state"
    assert {"queue.z", "queue.domain", "queue.cluster", "queue.ptr", "guides"} <= set(ckpt["objective"])
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    aucs = [row["val_auc"] for row in result["log"]]
    assert best["epoch"] == result["best_epoch"] == 1 + aucs.index(max(aucs))
    assert best["val_auc"] == max(aucs)
    log = pd.read_csv(tmp_path / "log.csv")
    assert list(log.epoch) == [1, 2]
    assert {"loss", "bce", "guide", "push", "pull", "val_auc", "val_video_auc", "train_s", "weight_norm"} <= set(log.columns)
    assert (log.weight_norm > 0).all() and "warning" not in load_json(tmp_path / "train.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "checkpoint.pt", "config.json", "guides.npz", "log.csv", "tb",
                                                           "train.json"]      # the lock is gone with its holder
    model, cfg, names = load_detector(tmp_path, "best")
    assert names == ["real", "DF", "F2F", "FS", "NT"] and cfg == tiny_cfg(tiny)


def test_resume_equals_uninterrupted(tiny, tmp_path):
    "Stopped after epoch 1 and resumed, a 3-epoch run ends bit-identical to an uninterrupted one (augmentation on)."
    cfg = tiny_cfg(tiny, epochs=3)
    full = train(cfg, tmp_path / "full")
    part = train(cfg, tmp_path / "split", stop_after=1)
    assert (part["epochs_done"], part["complete"]) == (1, False)
    assert not (tmp_path / "split" / "train.json").exists()
    resumed = train(cfg, tmp_path / "split", resume=True)
    assert without_times(resumed["log"]) == without_times(full["log"])
    assert (resumed["best_epoch"], resumed["best_val_auc"]) == (full["best_epoch"], full["best_val_auc"])
    a, b = load_checkpoint(tmp_path / "full" / "checkpoint.pt"), load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    for part_name in ("model", "objective"):
        for k in a[part_name]: assert torch.equal(a[part_name][k], b[part_name][k]), (part_name, k)
    assert a["optimizer"] is None and b["optimizer"] is None                 # finished runs keep no optimizer state


def test_nan_stops_and_keeps_last_good_checkpoint(tiny, tmp_path, monkeypatch, capsys):
    "A NaN from the second epoch on: a clear error, checkpoint and log of epoch 1 kept; the CLI exits 1."
    calls = {"n": 0}
    real_bce = tr.weighted_bce
    def bce_nan_in_epoch_2(logits, labels, weights=None):
        calls["n"] += 1
        loss = real_bce(logits, labels, weights)
        return loss * math.nan if calls["n"] > 10 else loss       # 10 steps per epoch
    monkeypatch.setattr(tr, "weighted_bce", bce_nan_in_epoch_2)
    cfg = tiny_cfg(tiny, epochs=3)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss in epoch 2 .*bce=nan.*last good checkpoint \(epoch 1\)"):
        train(cfg, tmp_path)
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["epoch"] == 1 and len(ckpt["log"]) == 1
    assert len(pd.read_csv(tmp_path / "log.csv")) == 1 and not (tmp_path / "train.json").exists()
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    # the command line: resumes from epoch 1, meets the NaN again, one line on stderr, exit code 1
    args = ["train", "--data", tiny["data"], "--out", str(tmp_path), "--resume",
            *[f"--set={k}={v}" for k, v in cfg.to_dict().items() if k not in ("data",) and v is not None]]
    capsys.readouterr()
    assert gsrepro_main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("gsrepro train: error: non-finite loss in epoch 2") and "epoch 1" in err
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 1


DDP_SET = dict(bn="frozen", augment=False, adbm_start_epoch=0)   # BN statistics and augmentation noise are per process


def test_ddp_matches_single_process(tiny, tmp_path):
    """torchrun, 2 gloo processes x 8 images, against one process x 16 images: the same global batches in the
    same order, so losses, queue and weights agree up to float summation order (GS with A-DBM from step 1,
    push and pull on; BatchNorm frozen because per-process batch statistics differ by design)."""
    cfg = tiny_cfg(tiny, **DDP_SET)
    single = train(cfg, tmp_path / "single")
    sets = [f"--set={k}={v}" for k, v in cfg.to_dict().items() if k != "data" and v is not None]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "gsrepro", "train", "--data", tiny["data"], "--out", str(tmp_path / "ddp"), *sets]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = load_checkpoint(tmp_path / "single" / "checkpoint.pt"), load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")
    assert len(b["rng"]) == 2                                  # one RNG state per process
    for ra, rb in zip(without_times(a["log"]), without_times(b["log"])):
        assert ra.keys() == rb.keys()
        for k in ra:   # the geometry reads features that agree to ~1e-5: an angle near 0° (arccos near 1) magnifies that
            tol = dict(abs=1e-2) if k.startswith("geo_") else dict(rel=1e-5, abs=1e-7)
            assert rb[k] == pytest.approx(ra[k], **tol), k
    # the queue proves the order: identical domains and clusters row by row
    for k in ("queue.domain", "queue.cluster", "queue.ptr", "queue.filled"):
        assert torch.equal(a["objective"][k], b["objective"][k]), k
    # unit-norm rows; measured 2e-6 to 2.1e-5 across SynthFF versions (summation order through 20 Adam steps)
    assert (a["objective"]["queue.z"] - b["objective"]["queue.z"]).abs().max() < 1e-4
    worst = max((a["model"][k].double() - b["model"][k].double()).abs().max().item()
                for k in a["model"] if a["model"][k].is_floating_point())
    assert worst < 1e-4, worst                                 # measured 2.5e-6 after 20 Adam steps at lr 1e-3
    assert a["best"] == b["best"]


@pytest.mark.parametrize("variant", [dict(loss="ce2"), dict(loss="ce_k1"),
                                     dict(use_guide=False, use_adbm=False, lr_schedule="cosine"),
                                     dict(use_push=False, use_pull=False, methods=["DF", "FS", "NT"])])
def test_loss_variants(tiny, tmp_path, variant):
    cfg = tiny_cfg(tiny, epochs=1, **variant)
    result = train(cfg, tmp_path)
    row = result["log"][0]
    expected = dict(ce2={"bce"}, ce_k1={"ce_k1"}).get(cfg.loss, {"bce"} | {p for p, on in
               (("guide", cfg.use_guide), ("push", cfg.use_push), ("pull", cfg.use_pull)) if on})
    assert {k for k in row if k in ("bce", "ce_k1", "guide", "push", "pull")} == expected
    assert 0 <= row["val_auc"] <= 1
    model, _, names = load_detector(tmp_path)
    assert len(names) == (4 if cfg.methods else 5)
    _, logit = model(torch.zeros(3, 3, 32, 32))
    assert logit.shape == ((3, len(names)) if cfg.loss == "ce_k1" else (3,))


def test_cli_errors(tiny, tmp_path, capsys):
    out = ["--out", str(tmp_path / "run")]
    assert gsrepro_main(["train", "--data", tiny["data"], *out, "--set", "lossy=gs"]) == 2
    assert "unknown config field 'lossy'" in capsys.readouterr().err
    assert gsrepro_main(["train", "--data", str(tmp_path / "nowhere"), *out]) == 2
    assert "no manifest at" in capsys.readouterr().err
    assert gsrepro_main(["train", *out]) == 2
    assert "data is empty" in capsys.readouterr().err
    cache = f"--set=cluster_cache={tiny['cluster_cache']}"
    assert gsrepro_main(["train", "--data", tiny["data"], *out, cache, "--set", "batch_size=1000"]) == 2
    assert "fewer than one batch" in capsys.readouterr().err
    (tmp_path / "run").mkdir(exist_ok=True); (tmp_path / "run" / "checkpoint.pt").write_bytes(b"")
    assert gsrepro_main(["train", "--data", tiny["data"], *out, cache]) == 2
    assert "already holds a run (checkpoint.pt)" in capsys.readouterr().err


def cli_sets(cfg) -> list:
    return [f"--set={k}={v}" for k, v in cfg.to_dict().items() if k != "data" and v is not None]


def test_second_writer_is_refused(tiny, tmp_path, capsys):
    """Two `gsrepro train` into one --out used to both exit 0 and leave a folder mixing two runs: the second now
    stops with one line naming the first, which finishes its run undisturbed."""
    cfg, run = tiny_cfg(tiny, loss="ce2", epochs=4), tmp_path / "run"
    args = ["train", "--data", tiny["data"], "--out", str(run), *cli_sets(cfg)]
    first = subprocess.Popen([sys.executable, "-m", "gsrepro", *args], env=dict(os.environ, OMP_NUM_THREADS="1"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and first.poll() is None:
        try:
            if read_lock(run / ".lock")[0]: break
        except FileNotFoundError: pass
        time.sleep(0.02)
    capsys.readouterr()
    assert gsrepro_main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"gsrepro train: error: {run} is being written by pid {first.pid} on {socket.gethostname()} since ")
    assert err.count("\n") == 1
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    assert len(pd.read_csv(run / "log.csv")) == 4 and load_json(run / "train.json")["epochs_done"] == 4
    assert not (run / ".lock").exists()
    assert gsrepro_main(args) == 2                               # and a finished folder is not overwritten either
    assert "already holds a run (checkpoint.pt, best.pt, train.json)" in capsys.readouterr().err


def test_resume_cleans_leftovers_and_rewrites_the_log(tiny, tmp_path):
    """A kill leaves half-written `.NAME.*.tmp` files (they piled up to 203 MB) and, between the last checkpoint
    and the log, a log.csv one epoch short: a resume removes the first and rewrites the log from the checkpoint."""
    cfg = tiny_cfg(tiny, loss="ce2")
    train(cfg, tmp_path, stop_after=1)
    junk = [tmp_path / ".checkpoint.pt.a1b2c3d4.tmp", tmp_path / ".best.pt.e5f6g7h8.tmp"]
    for p in junk: p.write_bytes(b"\0" * 2**20)
    (tmp_path / "notes.tmp").write_text("not a leftover of ours")
    assert train(cfg, tmp_path, resume=True)["resumed_from"] == 1
    assert not any(p.exists() for p in junk) and (tmp_path / "notes.tmp").exists()
    log = pd.read_csv(tmp_path / "log.csv")
    log.iloc[:1].to_csv(tmp_path / "log.csv", index=False)      # killed after the last checkpoint, before the log ...
    (tmp_path / "train.json").unlink()                          # ... and the summary
    (tmp_path / ".checkpoint.pt.x.tmp").write_bytes(b"\0" * 1000)
    resumed = train(cfg, tmp_path, resume=True)                  # nothing left to train
    assert (resumed["resumed_from"], resumed["epochs_done"]) == (2, 2)
    assert pd.read_csv(tmp_path / "log.csv").equals(log) and (tmp_path / "train.json").is_file()
    assert not (tmp_path / ".checkpoint.pt.x.tmp").exists()


def test_divergence_with_finite_loss_warns(tiny, tmp_path, capsys):
    """A huge learning rate: the losses stay finite, the weights blow up, the detector answers at chance. It used to
    exit 0 without a word; now the log has the weight norm, the summary and train.json a warning, the command says so."""
    cfg = tiny_cfg(tiny, loss="ce2", lr=100.0)
    assert gsrepro_main(["train", "--data", tiny["data"], "--out", str(tmp_path / "cli"), *cli_sets(cfg)]) == 0
    err = capsys.readouterr().err
    assert err.count("gsrepro train: warning: ") == 1 and "training may have diverged: validation AUC 0.5" in err
    assert "weight norm grew" in load_json(tmp_path / "cli" / "train.json")["warning"]
    with pytest.warns(DivergenceWarning, match=r"the weight norm is \S+ at epoch 1 \(not finite, or above 1e\+06\)"):
        result = train(cfg.replace(lr=1e6), tmp_path / "absurd")
    assert all(math.isfinite(r["loss"]) for r in result["log"]) and result["log"][0]["weight_norm"] > 1e6


def test_backbone_input_statistics(tiny):
    "Xception trains at its own 299 px with mean = std = 0.5 (its pretrained config), not at ImageNet's statistics."
    from gsrepro.train import build_datasets
    cfg = tiny_cfg(tiny, backbone="legacy_xception", image_size=None, augment=False)
    ds, _ = build_datasets(cfg)
    x = torch.stack([ds[i]["image"] for i in range(4)])                       # (4, 3, 299, 299)
    assert x.shape[1:] == (3, 299, 299)
    assert -1.0 <= x.min() and x.max() <= 1.0                                # (pixel/255 - 0.5) / 0.5
    raw = torch.stack([torch.from_numpy(ds.load_image(i).astype("float32")).permute(2, 0, 1) for i in range(4)])
    assert torch.allclose(x, (raw / 255 - 0.5) / 0.5, atol=1e-5)
    mini = build_datasets(tiny_cfg(tiny))[0][0]["image"]
    assert mini.shape[1:] == (32, 32) and mini.min() < -1.0                  # ImageNet statistics reach below -1


def test_tensorboard_scalars_and_adbm_weight_shares(tiny, tmp_path):
    "Rank 0 writes every log column per epoch to RUN/tb/; A-DBM epochs log the share of the BCE weight on fakes."
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    result = train(tiny_cfg(tiny, adbm_start_epoch=0), tmp_path)
    events = EventAccumulator(str(tmp_path / "tb")); events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/bce", "train/guide", "train/push", "train/pull", "train/lr", "val/val_auc",
            "adbm/adbm_fake_share", "adbm/adbm_max_weight", "time/step_s", "train/weight_norm", "train/match_changes",
            "geometry/geo_real_forgery", "geometry/geo_cos_real", "geometry/geo_probe_acc"} <= tags
    assert [e.step for e in events.Scalars("val/val_auc")] == [1, 2]
    shares = [row["adbm_fake_share"] for row in result["log"]]
    assert all(0 < s < 1 for s in shares)
    assert pd.read_csv(tmp_path / "log.csv").adbm_fake_share.tolist() == pytest.approx(shares)
