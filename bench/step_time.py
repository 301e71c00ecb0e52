"""Time per training step of GS vs CE-2 with the same backbone, batch and input, measured side by side.

Both variants run in one process on the same random batch, interleaved step by step (the order alternates
every repeat), with `gsrepro.train.train_step`: forward, loss, backward, Adam. GS runs at full cost: its
queue is pre-filled (queue_size random unit features with domains and clusters), A-DBM is active, the
guide loss is Hungarian-matched and push/pull draw from the queue. Reported: median step time of each,
the GS/CE-2 ratio, and the memory GS adds: its queue buffers, and the peak tensor memory of a step above
what is live at its start (the CUDA allocator's peak on GPU, the PyTorch profiler's memory timeline on CPU).

CPU at mini settings (the default):
    python bench/step_time.py
GPU at the paper's settings:
    python bench/step_time.py --device cuda --backbone efficientnet_b4 --batch 32 --size 320 --amp bf16 --channels-last
Optionally the training data loader's images/s: --data DIR --workers N. --out reports/step_time.md adds (or
replaces) this setup's row in that report; the rows live in the .json beside it.

--floor adds a third variant, a lower bound for any exact GS step: CE-2 plus only the heavy operations GS
cannot avoid (the batch x queue similarity matmul forward and backward, A-DBM's top-k, the random draw and
top-k of the pull/push sets), without the rest of the objective.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from gsrepro.core import atomic_write
from gsrepro.data import FaceDataset
from gsrepro.losses import bank_similarity, weighted_bce
from gsrepro.guidespace import make_guide_space
from gsrepro.models import create_detector
from gsrepro.config import TrainConfig
from gsrepro.train import Objective, train_step

VARIANTS = ("ce2", "gs")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--backbone", default="mini")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--amp", choices=("bf16", "fp16", "none"), default="none", help="autocast dtype (CUDA only)")
    p.add_argument("--channels-last", action="store_true", help="NHWC model and input (as in training, where the preset turns it on)")
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
    p.add_argument("--floor", action="store_true", help="also time the floor variant (see above)")
    p.add_argument("--json", help="write the results here as JSON")
    p.add_argument("--out", help="markdown report to add this setup's row to, e.g. reports/step_time.md")
    return p.parse_args(argv)


def make_config(args, loss: str) -> TrainConfig:
    preset = "mini" if args.backbone in ("mini", "mini_cnn") else "paper"   # the CPU stand-ins get the mini queue and clusters
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
    channels_last = args.channels_last
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


class FloorObjective(Objective):
    "CE-2 plus the heavy operations of a GS step (see the module docstring); its loss means nothing."
    def forward(self, z, logit, labels, domains, index, epoch: int, step: int):
        cfg, (bank_z, bank_d, _) = self.cfg, self.queue.bank()
        sim = bank_similarity(z, bank_z)                                               # (B, N)
        with torch.no_grad():
            sim.detach().topk(cfg.adbm_k, dim=1)                                       # A-DBM neighbours
            members = (domains[:, None] == bank_d[None]).expand(3, -1, -1)            # (3, B, N): stand-ins for the three sets
            scores = torch.rand(sim.shape, device=sim.device)
            torch.where(members, scores, -1.0).topk(max(cfg.n_pull, cfg.n_push), dim=-1)
        bce = weighted_bce(logit, labels)
        self._pending = (z.detach(), domains, self.cluster_of[index])                  # enqueued as GS does
        return bce + torch.logsumexp(sim / cfg.tau, dim=1).mean(), {"bce": bce.detach()}   # a dense (B, N) gradient, as pull's


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
               amp_dtype=amp_dtype(args), scaler=run["scaler"], channels_last=args.channels_last)
    if device.type == "cuda": torch.cuda.synchronize()
    return time.perf_counter() - t0


def measure_times(args) -> dict:
    batch = make_batch(args)
    runs = {v: build(args, v) for v in VARIANTS}
    if args.floor:
        gs = runs["gs"]["objective"]
        floor = build(args, "gs")                                    # the same weights, a copy of GS's queue
        floor["objective"] = FloorObjective(gs.cfg, gs.guides.cpu(), gs.cluster_of.cpu()).to(args.device)
        floor["objective"].queue = copy.deepcopy(gs.queue)
        runs["floor"] = floor
    names = tuple(runs)
    for i in range(args.warmup):
        for v in names: run_step(args, runs[v], batch, i)
    times = {v: [] for v in names}
    for r in range(args.repeats):
        for v in (names if r % 2 == 0 else names[::-1]):             # interleaved, alternating order
            times[v].append(run_step(args, runs[v], batch, args.warmup + r))
    out = {v: dict(median_s=statistics.median(t), q25_s=float(np.percentile(t, 25)), q75_s=float(np.percentile(t, 75)),
                   steps_per_s=1 / statistics.median(t)) for v, t in times.items()}
    # paired ratio: each repeat's GS step over the CE-2 step next to it
    paired = [g / c for g, c in zip(times["gs"], times["ce2"])]
    out["ratio_gs_over_ce2"] = dict(of_medians=out["gs"]["median_s"] / out["ce2"]["median_s"],
                                    median_paired=statistics.median(paired))
    if args.floor:
        out["ratio_floor_over_ce2"] = dict(of_medians=out["floor"]["median_s"] / out["ce2"]["median_s"],
                                           median_paired=statistics.median([f / c for f, c in zip(times["floor"], times["ce2"])]))
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


def cpu_memory(args, repeats: int = 3) -> dict:
    """Peak tensor memory of a step above the tensors live at its start, per variant: the median of `repeats`
    steps, and their range (on CPU it varies from step to step with large models). CPU has no allocator
    statistics, so the allocations come from the PyTorch profiler's memory timeline (a private API of the
    pinned torch: `torch.profiler.profile._memory_profile`)."""
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import Action
    batch = make_batch(args)
    res = {}
    for v in VARIANTS:
        run = build(args, v)
        for i in range(3): run_step(args, run, batch, i)
        peaks = []
        for r in range(repeats):
            with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
                run_step(args, run, batch, 3 + r)
            live = peak = 0
            for _, action, (key, _), size in prof._memory_profile().timeline:
                if key.device.type != "cpu" or action not in (Action.CREATE, Action.DESTROY): continue
                live += size if action == Action.CREATE else -size
                peak = max(peak, live)
            peaks.append(peak)
        res[v] = dict(step_peak_over_rest_bytes=statistics.median(peaks), step_peak_range_bytes=[min(peaks), max(peaks)])
    return res


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


def cpu_name() -> str:
    try: return next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration): return platform.machine()


def write_report(res: dict, path: str):
    "Add (or replace) this setup's row in the report `path` (markdown) and its rows file (`path` as .json)."
    path = Path(path)
    rows_path = path.with_suffix(".json")
    rows = json.loads(rows_path.read_text()) if rows_path.exists() else {}
    s = res["setup"]
    key = " ".join(str(s[k]) for k in ("device", "gpu", "backbone", "batch", "size", "amp", "channels_last", "threads"))
    rows[key] = dict(res, date=datetime.date.today().isoformat())
    with atomic_write(rows_path) as f: json.dump(rows, f, indent=1)
    lines = ["# Training step time: GS vs CE-2", "",
             "`python bench/step_time.py ... --floor --out reports/step_time.md`: the same model, batch and input, "
             "interleaved steps in one process, medians (ms). *floor*: CE-2 plus only the heavy operations GS cannot "
             "avoid (queue matmul forward and backward, A-DBM top-k, the pull/push draws). Step peak: tensor memory "
             "of a step above what is live at its start, GS minus CE-2, medians of 3 steps (on CPU, from the profiler's memory "
             "timeline, which varies by up to about 1 MiB between steps at `mini`; the ranges are in step_time.json). "
             "Steps run on random input; the loader column, where present, reads a SynthFF set (`--data`).", "",
             "| machine | backbone | batch | px | amp | threads | queue | CE-2 | GS | GS / CE-2 | paired | floor / CE-2 "
             "| queue MiB | step peak GS − CE-2 MiB | loader images/s (workers) | repeats | date |",
             "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows.values():
        s, t, m = r["setup"], r["time"], r.get("memory")
        floor = f"{t['ratio_floor_over_ce2']['of_medians']:.3f}" if "ratio_floor_over_ce2" in t else ""
        mem = (f"{(m['gs']['step_peak_over_rest_bytes'] - m['ce2']['step_peak_over_rest_bytes']) / 2**20:+.2f}" if m else "")
        loader = f"{r['loader']['images_per_s']:.0f} ({r['loader']['workers']})" if "loader" in r else ""
        lines.append(f"| {s['gpu'] or r.get('cpu', s['device'])} | {s['backbone']} | {s['batch']} | {s['size']} | {s['amp']} "
                     f"| {s['threads']} | {s['queue']} | {t['ce2']['median_s'] * 1e3:.1f} | {t['gs']['median_s'] * 1e3:.1f} "
                     f"| {t['ratio_gs_over_ce2']['of_medians']:.3f} | {t['ratio_gs_over_ce2']['median_paired']:.3f} | {floor} "
                     f"| {t['queue_bytes'] / 2**20:.2f} | {mem} | {loader} | {s['repeats']} | {r['date']} |")
    with atomic_write(path) as f: f.write("\n".join(lines) + "\n")


def main(argv=None):
    args = parse_args(argv)
    if args.threads: torch.set_num_threads(args.threads)
    res = dict(setup=dict(device=args.device, backbone=args.backbone, batch=args.batch, size=args.size, amp=args.amp,
                          channels_last=args.channels_last, queue=make_config(args, "gs").queue_size, proj_dim=args.proj_dim,
                          k=args.k, threads=torch.get_num_threads(), repeats=args.repeats,
                          gpu=torch.cuda.get_device_name() if args.device.startswith("cuda") else None))
    res["time"] = measure_times(args)
    if not args.no_memory:
        res["memory"] = cuda_memory(args) if args.device.startswith("cuda") else cpu_memory(args)
    if args.data: res["loader"] = loader_images_per_s(args)
    if args.device == "cpu": res["cpu"] = cpu_name()
    t = res["time"]
    print(f"{args.backbone}, batch {args.batch}, {args.size} px, {args.device}, amp {args.amp}, "
          f"{res['setup']['threads']} threads, {args.repeats} interleaved repeats")
    for v in (*VARIANTS, "floor") if args.floor else VARIANTS:
        print(f"  {v:5s} median {t[v]['median_s'] * 1e3:8.1f} ms/step  (IQR {t[v]['q25_s'] * 1e3:.1f}-{t[v]['q75_s'] * 1e3:.1f})  {t[v]['steps_per_s']:.2f} steps/s")
    r = t["ratio_gs_over_ce2"]
    print(f"  GS / CE-2: {r['of_medians']:.3f} (ratio of medians), {r['median_paired']:.3f} (median of paired ratios)")
    if args.floor:
        r = t["ratio_floor_over_ce2"]
        print(f"  floor / CE-2: {r['of_medians']:.3f} (ratio of medians), {r['median_paired']:.3f} (median of paired ratios)")
    print(f"  queue buffers: {t['queue_bytes'] / 2**20:.2f} MiB")
    if "memory" in res:
        m = {v: {k: np.divide(x, 2**20) for k, x in res["memory"][v].items()} for v in VARIANTS}
        span = {v: "" if "step_peak_range_bytes" not in m[v] else " ({:.2f}-{:.2f})".format(*m[v]["step_peak_range_bytes"])
                for v in VARIANTS}
        print(f"  step peak memory above rest: CE-2 {m['ce2']['step_peak_over_rest_bytes']:.2f}{span['ce2']} MiB, "
              f"GS {m['gs']['step_peak_over_rest_bytes']:.2f}{span['gs']} MiB, "
              f"GS - CE-2 {m['gs']['step_peak_over_rest_bytes'] - m['ce2']['step_peak_over_rest_bytes']:+.2f} MiB")
    if "loader" in res: print(f"  loader: {res['loader']['images_per_s']:.0f} images/s with {args.workers} workers")
    if args.json:
        with atomic_write(args.json) as f: json.dump(res, f, indent=2)
    if args.out: write_report(res, args.out)
    return res


if __name__ == "__main__":
    main()
