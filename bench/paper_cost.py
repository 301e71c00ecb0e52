"""The paper preset's cost, planned without the datasets: the distinct training runs each report needs (shared runs
counted once) and the GPU-hours they take at the throughput `gsrepro.protocols.estimate_cost` assumes.

The manifests are made up with the real datasets' sizes (no image is read): FF++ with the official 720/140/140
video split at c23 and c40, 32 frames per video (the `gsrepro preprocess` default), every frame with a face;
Celeb-DF v2's 518 test videos; DFDC's 5000 test videos. Prints a markdown table; asserts nothing.

    python bench/paper_cost.py [--frames 32] [--seeds 0] [--device cuda]
"""
import argparse
import tempfile
from pathlib import Path

import pandas as pd

from gsrepro.manifest import write_manifest
from gsrepro.protocols import Experiments, estimate_cost, images_per_s, real_benchmark, report_specs
from gsrepro.reproduce import REPORTS
from gsrepro.vocab import FF_METHODS, SPLITS, ffpp_pairs


def ffpp_rows(frames: int) -> list:
    rows = []
    for split in SPLITS:
        for a, b in ffpp_pairs(split):
            videos = [("real", v, v) for v in (a, b)] + [(m, f"{t}_{s}", t) for m in FF_METHODS for t, s in ((a, b), (b, a))]
            for method, video, source in videos:
                for quality in ("c23", "c40"):
                    rows += [dict(path=f"crops/{quality}/ffpp/{method}/{video}/{f:06d}.png", dataset="ffpp", method=method,
                                  label=int(method != "real"), quality=quality, split=split, video_id=f"ffpp/{method}/{video}",
                                  frame=f, source_id=source) for f in range(frames)]
    return rows


def test_rows(dataset: str, n_real: int, n_fake: int, frames: int) -> list:
    return [dict(path=f"crops/orig/{dataset}/{m}/{i}/{f:06d}.png", dataset=dataset, method=m, label=int(m == "fake"),
                 quality="orig", split="test", video_id=f"{dataset}/{m}/{i}", frame=f, source_id=str(i))
            for m, n in (("real", n_real), ("fake", n_fake)) for i in range(n) for f in range(frames)]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp())
    for name, rows in (("ffpp", ffpp_rows(args.frames)), ("celebdf", test_rows("celebdf", 178, 340, args.frames)),
                       ("dfdc", test_rows("dfdc", 2500, 2500, args.frames))):
        write_manifest(pd.DataFrame(rows), tmp / name / "manifest.csv")
    # the runs do not depend on the device (a runtime field, outside the run key); only the throughput below does, so
    # plan on the CPU, which every machine has
    exp = Experiments("paper", real_benchmark(tmp / "ffpp", tmp / "celebdf", tmp / "dfdc"), tmp / "runs", seeds=args.seeds,
                      device="cpu", workers=1)
    seen, lines, total = set(), [], None
    for name in REPORTS:
        plan = exp.planned(report_specs(name, exp))
        new = {h: c for h, c in plan.items() if h not in seen}
        seen |= set(plan)
        cost = estimate_cost([cfg for cfg, _ in new.values()], args.device)   # planned: {hash: (config, test sets)}
        lines.append(f"| `{name}` | {len(plan)} | {len(new)} | {cost.images.sum() / 1e6:.1f} | {cost.hours.sum():.0f} |")
        total = cost if total is None else pd.concat([total, cost])
    print(f"Paper preset, seeds {args.seeds}, {args.frames} frames per video; throughput: EfficientNet-B4 "
          f"{images_per_s('efficientnet_b4', args.device):.1f} images/s on {args.device} (gsrepro.protocols.GPU_SOURCE).\n")
    print("| report | runs it uses | runs not used by an earlier report | training images (M) | hours |\n|---|---|---|---|---|")
    print("\n".join(lines))
    print(f"| **all** | {len(seen)} | {len(seen)} | {total.images.sum() / 1e6:.1f} | {total.hours.sum():.0f} |")


if __name__ == "__main__":
    main()
