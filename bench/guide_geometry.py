"""The geometry GS runs learn on SynthFF, measured on the mechanism (where the domains sit against the guides), not on AUC.

For every row (a `VARIANTS` row of the tables, e.g. `GS` = guide loss + BCE, `Ours` = the full method), θ, config
(named `--config NAME:KEY=VALUE,KEY=VALUE`; `default:` = the preset as it is) and seed, the run is trained through the
run registry if it is missing (so `make reproduce` reuses it, and this reuses the tables' runs) and its last
checkpoint is read on the training split of the FF++-like data, against the run's own guides: the learned real–forgery
and forgery–forgery angles, the cosine of each domain's mean to its matched guide, the share of the features inside
the guides' span, a forgery-domain probe's held-out-video accuracy, and from the training log the share of steps of
the last epoch whose guide matching changed. Measures and prints; asserts nothing.

    python bench/guide_geometry.py                                     # GS and Ours at θ 90 and 150, seed 0
    python bench/guide_geometry.py --rows GS --theta 90 150 --config pull: --config softmax:guide_form=softmax
    python bench/guide_geometry.py --rows Ours --config other_class:pull_negatives=other_class --out geo.csv
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from gsrepro.analysis import run_geometry
from gsrepro.config import parse_override
from gsrepro.metrics import probe_accuracy
from gsrepro.protocols import open_experiments
from gsrepro.registry import get_run


def parse_config(text: str) -> tuple[str, dict]:
    "`'name:key=value,key=value'` -> `(name, {key: typed value})` (`'name:'`: no change)."
    name, _, sets = text.partition(":")
    return name, dict(parse_override(s) for s in sets.split(",") if s.strip())


def measure(exp, row: str, theta: float, changes: dict, seed: int) -> dict:
    "Train (if missing) and read one run's geometry on the training split."
    t0 = time.perf_counter()
    cfg = exp.config("FF++-HQ", row, seed, theta=float(theta), **changes)
    run = get_run(cfg, {}, exp.runs_dir)
    spec = dict(exp.bench.protocol("FF++-HQ")[2], split="train", frames_per_video=2)
    g, z, rows = run_geometry(run.dir, spec)
    fake = rows.domain.to_numpy() > 0
    last = pd.read_csv(run.dir / "log.csv").iloc[-1]
    return dict(row=row, theta=float(theta), seed=seed, hash=run.hash, real_forgery=g["real_forgery"],
                forgery_forgery=g["forgery_forgery"], cos_min=min(g["cos"]),
                **{f"cos_{n}": c for n, c in zip(g["domain_names"], g["cos"])}, span_share=g["span_share"],
                probe_acc=float(np.mean(probe_accuracy(z[fake], rows.domain[fake], rows.video_id[fake]))),
                match_changes=last.get("match_changes", np.nan), val_auc=last["val_auc"],
                train_s=json.loads((run.dir / "train.json").read_text())["train_s"], action=run.action,
                seconds=round(time.perf_counter() - t0, 1))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="mini", choices=("mini", "synth"))
    p.add_argument("--rows", default="GS,Ours", help="VARIANTS rows, comma-separated (default: GS,Ours)")
    p.add_argument("--theta", type=float, nargs="+", default=[90.0, 150.0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--config", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                   help="a named set of config changes (repeatable; default: the preset as it is)")
    p.add_argument("--runs", default=None, help="run registry (default: runs/ of the checkout)")
    p.add_argument("--out", default=None, help="also write the rows as CSV here")
    p.add_argument("--md", default=None, help="also write a markdown table of the rows here (with the command line)")
    args = p.parse_args(argv)
    exp = open_experiments("bench", dict(preset=args.preset, runs_dir=args.runs))
    torch.set_num_threads(exp.threads)              # as `reproduce` trains each run: same hash, same bits
    configs = [parse_config(c) for c in args.config] or [("default", {})]
    rows = []
    for name, changes in configs:
        for row in args.rows.split(","):
            for theta in args.theta:
                for seed in args.seeds:
                    r = dict(config=name, **measure(exp, row, theta, changes, seed))
                    rows.append(r)
                    print(f"{name} {row} θ={theta:g} seed {seed}: real–forgery {r['real_forgery']:.1f}°, forgery–forgery "
                          f"{r['forgery_forgery']:.1f}°, cos_min {r['cos_min']:.2f}, probe {r['probe_acc']:.2f} "
                          f"({r['action']}, {r['seconds']} s)", flush=True)
    df = pd.DataFrame(rows)
    keys = ["config", "row", "theta"]
    print(df.groupby(keys)[["real_forgery", "forgery_forgery", "cos_min", "span_share", "probe_acc", "match_changes"]].mean()
          .round(3).to_string())
    if len(args.theta) > 1:
        lo, hi = min(args.theta), max(args.theta)
        moved = df.pivot_table(index=["config", "row", "seed"], columns="theta", values="real_forgery")
        print(f"\nlearned real–forgery angle, θ {hi:g}° − θ {lo:g}° (asked {hi - lo:g}°):")
        print((moved[hi] - moved[lo]).round(1).to_string())
    if args.out: df.to_csv(args.out, index=False)
    if args.md: write_markdown(df, args, argv)
    return df


def write_markdown(df: pd.DataFrame, args, argv) -> None:
    "The rows as a markdown table (angles in degrees, cosines per domain), with the data and the command that made them."
    cos = [c for c in df.columns if c.startswith("cos_") and c != "cos_min"]
    cols = ["config", "row", "theta", "seed", "real_forgery", "forgery_forgery", *cos, "span_share", "probe_acc",
            "match_changes", "train_s", "seconds", "action"]
    body = df[cols].round(2).astype(str)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)] + ["| " + " | ".join(r) + " |" for r in body.values]
    data = "SynthFF-mini (64 px)" if args.preset == "mini" else "SynthFF-synth (128 px)"
    cmd = "python bench/guide_geometry.py " + " ".join(sys.argv[1:] if argv is None else argv)
    Path(args.md).write_text(f"# Learned geometry against the guides\n\nData: {data}, training split, 2 frames per video; "
                             f"every run's last checkpoint against its own guides. These are SynthFF numbers, not the "
                             f"paper's.\n\n`{cmd}`\n\n" + "\n".join(lines) + "\n\n`train_s`: the run's training time (its "
                             "`train.json`); `seconds`: this command's time for the row (training when `action` is `trained`, and "
                             "measuring), on the machine that ran it, under whatever else ran there.\n")


if __name__ == "__main__":
    main()
