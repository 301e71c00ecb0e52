"""Benchmark of `gsrepro predict` on the CPU (a measurement, not a test: nothing here asserts a time).

Face crops per second for the `mini` backbone (at its 64 px) and for EfficientNet-B4 at 320 px (random weights,
`pretrained=False`: the speed does not depend on the values), on a few generated 640×480 videos of a real face
(skimage's astronaut, OpenCV's mp4v encoder), with the default crop settings (32 evenly spaced frames, dlib HOG on
a 5/6-pyramid downscale, 1.3× square crop at 320 px). The time of `predict` is split as it reports it:

- decode: probing each video and reading its sampled frames (`probe_video`, `read_frames`);
- detect: dlib's face detector and the square crop (`FaceDetector`, `square_crop`);
- crops: writing each crop to a temporary PNG (uncompressed: the same pixels as a training crop) and reading it back
  through `FaceDataset` and the loader (decode, resize to the input size, normalise, batch), the evaluation path;
- model: the network's forward passes in batches (`score_batches`).

Each backbone is warmed up on one video first; the table gives the second, measured call. Run it as `make` runs
things (glibc's page-fault overhead otherwise dominates CPU convolutions):

    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 .venv/bin/python bench/predict_bench.py [--videos 3] [--length 64] [--batch 32]
"""
import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from gsrepro.checkpoint import save_checkpoint
from gsrepro.config import TrainConfig
from gsrepro.core import save_json
from gsrepro.models import create_detector
from gsrepro.predict import load_model, predict
from gsrepro.testing import make_face_video

BACKBONES = {"mini": 64, "efficientnet_b4": 320}   # backbone -> the input side it is measured at


def cpu_name() -> str:
    try: return next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration): return platform.processor() or platform.machine()


def stand_in_run(run_dir: Path, backbone: str, size: int) -> Path:
    "A run folder with a randomly initialised detector (`best.pt`, `config.json`); its data has no preprocess.json."
    cfg = TrainConfig.from_preset("mini", backbone=backbone, pretrained=False, image_size=size, loss="ce2",
                                  data=str(run_dir.parent / "no-data" / "manifest.csv"))
    save_checkpoint(dict(model=create_detector(backbone, cfg.proj_dim).state_dict(), config=cfg.to_dict(),
                         domain_names=["real", "DF", "F2F", "FS", "NT"]), run_dir / "best.pt")
    save_json(cfg.to_dict(), run_dir / "config.json")
    return run_dir


def measure(run_dir: Path, videos: list, out: Path, batch: int) -> dict:
    lm = load_model(run_dir, "cpu")
    predict(lm, videos[:1], out / "warmup.csv", frames=4, device="cpu", batch_size=batch, progress=False)
    t0 = time.perf_counter()
    res = predict(lm, videos, out / "scores.csv", device="cpu", batch_size=batch, progress=False)
    wall = time.perf_counter() - t0
    n = int(res["files"].n_faces.sum())
    return dict(n_crops=n, wall=wall, **res["seconds"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=3, help="generated videos (default %(default)s)")
    ap.add_argument("--length", type=int, default=64, help="frames per video (default %(default)s; 32 are sampled)")
    ap.add_argument("--batch", type=int, default=32, help="faces per batch (default %(default)s)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gsrepro-predict-bench-"))
    videos = [make_face_video(tmp / "videos" / f"v{i}.mp4", n_frames=args.length, size=(640, 480), seed=i)
              for i in range(args.videos)]
    rows = {}
    for backbone, size in BACKBONES.items():
        run = stand_in_run(tmp / backbone / "run", backbone, size)
        rows[backbone] = measure(run, videos, tmp / backbone, args.batch)
        print(f"{backbone}: {rows[backbone]}", flush=True)

    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    malloc = "set" if os.environ.get("MALLOC_MMAP_MAX_") == "0" else "not set (see the docstring)"
    print(f"\n`gsrepro predict` on the CPU: {cpu_name()}, {os.cpu_count()} logical cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), load average {load} (1, 5, 15 min) at the end, glibc malloc settings "
          f"{malloc}; {args.videos} videos of "
          f"{args.length} frames at 640×480, 32 frames sampled per video, batch {args.batch}.\n")
    print("| backbone | input | crops | crops/s | decode ms/crop | detect ms/crop | crop I/O ms/crop | model ms/crop | wall s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for backbone, r in rows.items():
        ms = lambda k: f"{1000 * r[k] / r['n_crops']:.1f}"
        print(f"| {backbone} | {BACKBONES[backbone]} px | {r['n_crops']} | {r['n_crops'] / r['wall']:.1f} | {ms('decode')} | "
              f"{ms('detect')} | {ms('crops')} | {ms('model')} | {r['wall']:.1f} |")


if __name__ == "__main__":
    main()
