"""Loader throughput vs training-step throughput, in images/s (median of runs).

For the `mini` (64 px) and `synth` (128 px) image sizes: decode + augment through `FaceDataset` and
`make_loader` (training augmentation on, class-balanced batches of 32), with 0 and 2 workers; and one
training step (forward, backward, Adam) of the calibration's small CNN and of the `mini` detector
(`gsrepro.models.create_detector('mini')`) on batches of that size. Loading must not limit CPU training:
the loader should deliver several times the images/s a training step consumes. Reports, never asserts.

    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 .venv/bin/python bench/loader_throughput.py
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from calibrate_synth import small_cnn  # noqa: E402

from gsrepro.data import FaceDataset, make_loader  # noqa: E402
from gsrepro.synth import generate, get_preset  # noqa: E402


def loader_rate(manifest, batches: int, workers: int, batch_size: int, runs: int) -> list[float]:
    "images/s of decode + augment + collate over `batches` batches, once per run (fresh loader each time)."
    ds = FaceDataset(manifest, dataset="synthff", split="train", quality="c23", augment=True)
    rates = []
    for run in range(runs):
        loader = make_loader(ds, batch_size, balanced=True, num_workers=workers, seed=run)
        it = iter(loader)
        next(it)                                                         # worker start-up is not throughput
        t0 = time.perf_counter()
        n = sum(len(next(it)["label"]) for _ in range(batches))
        rates.append(n / (time.perf_counter() - t0))
        del it, loader
    return rates


def step_rate(model, size: int, batch_size: int, steps: int, runs: int) -> list[float]:
    "images/s of a training step (forward, BCE, backward, Adam) on random batches."
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(batch_size, 3, size, size), torch.randint(0, 2, (batch_size,)).float()
    def step():
        out = model(x)
        logit = out[1] if isinstance(out, tuple) else out[:, 0]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, y)
        opt.zero_grad(); loss.backward(); opt.step()
    model.train(); step()                                                # warm-up
    rates = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(steps): step()
        rates.append(steps * batch_size / (time.perf_counter() - t0))
    return rates


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--batches", type=int, default=30, help="batches per loader run")
    p.add_argument("--steps", type=int, default=10, help="training steps per run")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in ("mini", "synth"):
            # a few videos at the preset's image size and frame count are enough to time decoding
            cfg = get_preset(preset, n_pairs=20, celebdf_real=3, dfdc_pairs=1, qualities=("c23",))
            manifest = generate(Path(tmp) / preset, cfg, progress=False)
            size = cfg.image_size
            for workers in (0, 2):
                r = loader_rate(manifest, args.batches, workers, args.batch_size, args.runs)
                rows.append((f"{preset} ({size} px)", f"loader, {workers} workers", statistics.median(r)))
                print(rows[-1], flush=True)
            models = {"small CNN (calibration)": small_cnn()}
            try:
                from gsrepro.models import create_detector
                models["mini detector (test_efficientnet)"] = create_detector("mini")
            except ImportError:
                pass
            for name, model in models.items():
                r = step_rate(model, size, args.batch_size, args.steps, args.runs)
                rows.append((f"{preset} ({size} px)", f"train step, {name}", statistics.median(r)))
                print(rows[-1], flush=True)
    print(f"\n| size | what | images/s (median of {args.runs}) |\n|---|---|---|")
    for size, what, rate in rows: print(f"| {size} | {what} | {rate:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
