"""Time per training step of GS vs CE-2 with the same backbone, batch and input, measured side by side.

Both variants run in one process on the same random batch, interleaved step by step (the order alternates
every repeat), with `gsrepro.train.train_step`: forward, loss, backward, Adam. GS runs at full cost: its
queue is pre-filled (queue_size random unit features with domains and clusters), A-DBM is active, the
guide loss is Hungarian-matched and push/pull draw from the queue. Reported: median step time of each,
the GS/CE-2 ratio, and the memory GS adds (its queue buffers, and the peak memory of a step: CUDA
allocator peak on GPU; on CPU the resident memory a fresh child process gains by building one variant and
running a few steps).

CPU at mini settings (the default):
    python bench/step_time.py
GPU at the paper's settings:
    python bench/step_time.py --device cuda --backbone efficientnet_b4 --batch 32 --size 320 --amp bf16 --channels-last
Optionally the training data loader's images/s: --data DIR --workers N.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

from gsrepro.data import FaceDataset
from gsrepro.guidespace import make_guide_space
from gsrepro.models import create_detector
from gsrepro.train import Objective, TrainConfig, train_step

VARIANTS = ("ce2", "gs")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--backbone", default="mini")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--amp", choices=("bf16", "fp16", "none"), default="none", help="autocast dtype (CUDA only)")
    p.add_argument("--channels-last", action="store_true", help="NHWC model and input (CUDA only, as in training)")
    p.add_argument("--queue", type=int, default=None, help="queue size (default: the preset's: 1024 mini, 5120 otherwise)")
    p.add_argument("--proj-dim", type=int, default=512)
    p.add_argument("--k", type=int, default=55, help="A-DBM neighbours")
    p.add_argument("--domains", type=int, default=4, help="forgery methods K")
    p.add_argument("--clusters", type=int, default=32)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    p.add_argument("--data", help="a manifest (or its folder): also measure the training loader's images/s")
    p.add_argument("--workers", type=int, default=4, help="loader processes for --data")
    p.add_argument("--json", help="write the results here as JSON")
    p.add_argument("--probe", choices=VARIANTS, help=argparse.SUPPRESS)   # child process: peak RSS of one variant
    return p.parse_args(argv)


def make_config(args, loss: str) -> TrainConfig:
    preset = "mini" if args.backbone == "mini" else "paper"
    kw = dict(loss=loss, backbone=args.backbone, pretrained=False, image_size=args.size, batch_size=args.batch,
              proj_dim=args.proj_dim, adbm_k=args.k, n_clusters=args.clusters, amp=args.amp,
              channels_last=args.channels_last, device=args.device, epochs=60, adbm_start_epoch=0)
    if args.queue: kw["queue_size"] = args.queue
    return TrainConfig.from_preset(preset, **kw)


def build(args, loss: str, seed: int = 0):
    "Model, objective (queue pre-filled for GS), optimizer of one variant; the same weights for both variants."
    cfg, device = make_config(args, loss), torch.device(args.device)
    guides = make_guide_space(args.proj_dim, args.domains, cfg.theta).guides
    torch.manual_seed(seed)
    model = create_detector(cfg.backbone, cfg.proj_dim)
    channels_last = device.type == "cuda" and args.channels_last
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format).train()
    g = torch.Generator().manual_seed(seed + 1)
    n_rows = args.batch * 64
    cluster_of = torch.randint(0, args.clusters, (n_rows,), generator=g)
    objective = Objective(cfg, guides, cluster_of if cfg.decoupling_on else None).to(device)
    if objective.queue is not None:                                  # a full queue, as after the first epochs
        n = cfg.queue_size
        z = torch.nn.functional.normalize(torch.randn(n, cfg.proj_dim, generator=g), dim=1)
        dom = torch.randint(0, args.domains + 1, (n,), generator=g)
        objective.queue.enqueue(z.to(device), dom.to(device), torch.randint(0, args.clusters, (n,), generator=g).to(device))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" and args.amp == "fp16" else None
    return dict(model=model, objective=objective, optimizer=opt, scaler=scaler)


def make_batch(args, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    domains = torch.randint(0, args.domains + 1, (args.batch,), generator=g)
    batch = dict(image=torch.randn(args.batch, 3, args.size, args.size, generator=g), label=(domains > 0).long(),
                 domain=domains, index=torch.randperm(args.batch * 64, generator=g)[:args.batch])
    if args.device.startswith("cuda"): batch = {k: v.pin_memory() for k, v in batch.items()}
    return batch


def amp_dtype(args):
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp) if args.device.startswith("cuda") else None


def run_step(args, run: dict, batch, step: int) -> float:
    "Seconds of one `train_step` (CUDA synchronised)."
    device = torch.device(args.device)
    t0 = time.perf_counter()
    train_step(run["model"], run["objective"], run["optimizer"], batch, epoch=10, step=step, device=device,
               amp_dtype=amp_dtype(args), scaler=run["scaler"], channels_last=device.type == "cuda" and args.channels_last)
    if device.type == "cuda": torch.cuda.synchronize()
    return time.perf_counter() - t0


def measure_times(args) -> dict:
    batch = make_batch(args)
    runs = {v: build(args, v) for v in VARIANTS}
    for i in range(args.warmup):
        for v in VARIANTS: run_step(args, runs[v], batch, i)
    times = {v: [] for v in VARIANTS}
    for r in range(args.repeats):
        for v in (VARIANTS if r % 2 == 0 else VARIANTS[::-1]):     # interleaved, alternating order
            times[v].append(run_step(args, runs[v], batch, args.warmup + r))
    out = {v: dict(median_s=statistics.median(t), q25_s=float(np.percentile(t, 25)), q75_s=float(np.percentile(t, 75)),
                   steps_per_s=1 / statistics.median(t)) for v, t in times.items()}
    # paired ratio: each repeat's GS step over the CE-2 step next to it
    paired = [g / c for g, c in zip(times["gs"], times["ce2"])]
    out["ratio_gs_over_ce2"] = dict(of_medians=out["gs"]["median_s"] / out["ce2"]["median_s"],
                                    median_paired=statistics.median(paired))
    queue = runs["gs"]["objective"].queue
    out["queue_bytes"] = sum(b.numel() * b.element_size() for b in queue.buffers())
    return out


def cuda_memory(args) -> dict:
    "Peak CUDA memory of a step above the resting memory, per variant (each measured alone)."
    batch = make_batch(args)
    res = {}
    for v in VARIANTS:
        run = build(args, v)
        for i in range(3): run_step(args, run, batch, i)
        torch.cuda.synchronize()
        rest = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run_step(args, run, batch, 3)
        peak = torch.cuda.max_memory_allocated()
        res[v] = dict(resting_bytes=rest, peak_bytes=peak, step_peak_over_rest_bytes=peak - rest)
        del run
        torch.cuda.empty_cache()
    return res


def cpu_memory(args, argv) -> dict:
    """Memory one variant adds to a fresh process: resident set after building it and running 4 steps, minus
    before (CPU has no allocator statistics). glibc is told never to return freed memory to the system, so
    the resident set after the steps is the high-water mark of what they allocated."""
    env = dict(os.environ, MALLOC_MMAP_MAX_="0", MALLOC_TRIM_THRESHOLD_=str(2**36))
    res = {}
    for v in VARIANTS:
        out = subprocess.run([sys.executable, __file__, *argv, "--probe", v], capture_output=True, text=True, check=True, env=env)
        res[v] = dict(added_rss_bytes=int(out.stdout.strip().splitlines()[-1]))
    return res


def resident_bytes() -> int:
    with open("/proc/self/statm") as f: return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def probe(args):
    batch = make_batch(args)
    before = resident_bytes()
    run = build(args, args.probe)
    for i in range(4): run_step(args, run, batch, i)
    print(resident_bytes() - before)


def loader_images_per_s(args) -> dict:
    ds = FaceDataset(args.data, split="train", image_size=args.size, augment=True)
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch, shuffle=True, num_workers=args.workers,
                                         pin_memory=args.device.startswith("cuda"), drop_last=True, persistent_workers=args.workers > 0)
    n_batches = min(len(loader), 50)
    it = iter(loader)
    next(it)                                                        # start-up of the workers is not throughput
    t0, n = time.perf_counter(), 0
    for _ in range(n_batches - 1):
        n += len(next(it)["image"])
    return dict(images_per_s=n / (time.perf_counter() - t0), workers=args.workers, images=n)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.threads: torch.set_num_threads(args.threads)
    if args.probe: return probe(args)
    res = dict(setup=dict(device=args.device, backbone=args.backbone, batch=args.batch, size=args.size, amp=args.amp,
                          channels_last=args.channels_last, queue=make_config(args, "gs").queue_size, proj_dim=args.proj_dim,
                          k=args.k, threads=torch.get_num_threads(), repeats=args.repeats,
                          gpu=torch.cuda.get_device_name() if args.device.startswith("cuda") else None))
    res["time"] = measure_times(args)
    if not args.no_memory:
        res["memory"] = cuda_memory(args) if args.device.startswith("cuda") else cpu_memory(args, argv)
    if args.data: res["loader"] = loader_images_per_s(args)
    t = res["time"]
    print(f"{args.backbone}, batch {args.batch}, {args.size} px, {args.device}, amp {args.amp}, "
          f"{res['setup']['threads']} threads, {args.repeats} interleaved repeats")
    for v in VARIANTS:
        print(f"  {v:4s} median {t[v]['median_s'] * 1e3:8.1f} ms/step  (IQR {t[v]['q25_s'] * 1e3:.1f}-{t[v]['q75_s'] * 1e3:.1f})  {t[v]['steps_per_s']:.2f} steps/s")
    r = t["ratio_gs_over_ce2"]
    print(f"  GS / CE-2: {r['of_medians']:.3f} (ratio of medians), {r['median_paired']:.3f} (median of paired ratios)")
    print(f"  queue buffers: {t['queue_bytes'] / 2**20:.2f} MiB")
    if "memory" in res:
        m = res["memory"]
        key = "step_peak_over_rest_bytes" if "step_peak_over_rest_bytes" in m["gs"] else "added_rss_bytes"
        print(f"  {key}: CE-2 {m['ce2'][key] / 2**20:.1f} MiB, GS {m['gs'][key] / 2**20:.1f} MiB, "
              f"GS - CE-2 {(m['gs'][key] - m['ce2'][key]) / 2**20:+.1f} MiB")
    if "loader" in res: print(f"  loader: {res['loader']['images_per_s']:.0f} images/s with {args.workers} workers")
    if args.json:
        with open(args.json, "w") as f: json.dump(res, f, indent=2)
    return res


if __name__ == "__main__":
    main()
