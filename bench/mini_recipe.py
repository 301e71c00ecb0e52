"""The `mini` recipe ablation: CE-2 (`--loss`: or another loss) through the real trainer on SynthFF-mini, in-domain at
c23, with changes to the preset; prints validation AUC (best epoch), test AUC and ACC (the in-domain test split), the
cross-dataset stand-ins' AUC, A-DBM's share of the BCE weight on fakes (GS runs) and wall time per setting and seed,
and a summary (mean ± std over seeds). Measures and prints; asserts nothing.

    python bench/mini_recipe.py --seeds 0 1 2 --variant "" --variant "frames_per_video=2 epochs=16" ...
    python bench/mini_recipe.py --loss gs --seeds 0 1 2 --variant "adbm_balance=none" --variant "adbm_balance=class"

Each `--variant` is a space-separated list of `key=value` overrides of the `mini` training preset (the
`gsrepro train --set` rules); the empty string is the preset as shipped. One more key, `cnn_channels=16,32,64,64`,
changes the channels of the `mini_cnn` backbone (gsrepro.models.SmallCNN) for that variant. `--out FILE.md` also
writes the table.
"""
import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from gsrepro.config import TrainConfig, parse_override
from gsrepro.core import atomic_write
from gsrepro.evaluate import evaluate_run
from gsrepro.models import SmallCNN
from gsrepro.synth import ensure_synthff
from gsrepro.train import train

DEFAULT_CHANNELS = SmallCNN.__init__.__defaults__[0]


TEST_SETS = {"test": dict(dataset="synthff", quality="c23"), "celebdf": dict(dataset="synth-celebdf"), "dfdc": dict(dataset="synth-dfdc")}


def run(data, changes: dict, seed: int, root: Path) -> dict:
    cfg = TrainConfig.from_preset("mini", data=str(data), dataset="synthff", quality="c23", progress=False, device="cpu",
                                  cluster_cache=str(root / "clusters"), seed=seed, **changes)
    out = root / f"run{len(list(root.glob('run*')))}"
    t0 = time.perf_counter()
    summary = train(cfg, out)
    t1 = time.perf_counter()
    m = evaluate_run(out, TEST_SETS, bootstrap=0, device="cpu", progress=False)
    log = pd.read_csv(out / "log.csv")
    share = log.adbm_fake_share.dropna().mean() if "adbm_fake_share" in log else float("nan")
    return dict(val_auc=summary["best_val_auc"], best_epoch=summary["best_epoch"], test_auc=m["test"]["auc"], test_acc=m["test"]["acc"],
                celebdf_auc=m["celebdf"]["auc"], dfdc_auc=m["dfdc"]["auc"], adbm_fake_share=share,
                train_s=t1 - t0, eval_s=time.perf_counter() - t1)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", action="append", default=[], help="space-separated key=value overrides ('' = as shipped)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--loss", default="ce2", help="the objective of every variant unless a variant sets loss= (default ce2)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="also write the summary table (markdown) here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = ensure_synthff(progress=True)
    root = Path(tempfile.mkdtemp())
    rows = []
    for variant in args.variant or [""]:
        items = variant.split()
        channels = [tuple(int(c) for c in s.split("=", 1)[1].split(",")) for s in items if s.startswith("cnn_channels=")]
        SmallCNN.__init__.__defaults__ = (channels[0] if channels else DEFAULT_CHANNELS,) + SmallCNN.__init__.__defaults__[1:]
        changes = {"loss": args.loss, **dict(parse_override(s) for s in items if not s.startswith("cnn_channels="))}
        for seed in args.seeds:
            r = dict(variant=variant or "(as shipped)", seed=seed, **run(data, changes, seed, root))
            rows.append(r)
            print(" | ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()), flush=True)
    df = pd.DataFrame(rows)
    g = df.groupby("variant", sort=False)
    pm = lambda col: g[col].mean().map("{:.3f}".format) + " ± " + g[col].std().fillna(0).map("{:.3f}".format)
    table = pd.DataFrame({"val AUC": pm("val_auc"), "test AUC": pm("test_auc"), "test ACC": pm("test_acc"),
                          "synth-celebdf AUC": pm("celebdf_auc"), "synth-dfdc AUC": pm("dfdc_auc"),
                          "A-DBM fake share": g.adbm_fake_share.mean().round(3),
                          "train s (median)": g.train_s.median().round(1), "seeds": g.seed.size()}).reset_index()
    text = table.to_markdown(index=False)
    print(text)
    if args.out:
        with atomic_write(args.out) as f: f.write(text + "\n")


if __name__ == "__main__":
    main()
