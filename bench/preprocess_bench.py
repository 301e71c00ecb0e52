"""Benchmark of `gsrepro.preprocess` (a measurement, not a test: nothing here asserts a time).

1. Reading: the 32 evenly spaced frames of a long video by decoding every frame (what the common scripts do)
   vs seeking (`--seek always`), grabbing forward (`never`) and the keyframe-aware plan (`auto`, the default);
   each checked frame by frame against the decode-every-frame result.
2. Whole pipeline (read, detect, crop, save PNG) per video: a decode-every-frame baseline with the same dlib
   detector vs `process_video` with full-resolution detection and with the default downscaled detection.
3. Detection on a downscaled copy vs full resolution: time per frame and box agreement (IoU).

Everything runs in one process with one thread (OpenCV and FFmpeg), i.e. the throughput of one pool worker.
The test videos show a real face (skimage's astronaut) and are written with OpenCV's mp4v encoder (GOP 12);
when the `ffmpeg` command exists, an H.264 copy (libx264 CRF 23, its default GOP of 250 and B-frames: how
FF++ c23 was made) is measured too. Timings are medians of `--repeats` runs.

    python bench/preprocess_bench.py [--length 600] [--size 1280x720] [--repeats 5] [--out reports/preprocess_bench.md]
"""
import argparse
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import cv2
import dlib
import numpy as np

from gsrepro.core import atomic_write
from gsrepro.preprocess import (IMAGE_FORMATS, SEEK_MODES, FaceDetector, PreprocessConfig, VideoSpec, box_iou, probe_video,
                                process_video, read_frames, sample_indices, square_crop)
from gsrepro.testing import make_face_video


class PlainScaleDetector(FaceDetector):
    "The naive downscale: shorter side to exactly `detect_size`, not aligned with dlib's 5/6 pyramid."
    def scale(self, shape):
        return min(1.0, self.detect_size / min(shape[:2]))


def median_time(fn, repeats):
    "Median wall time of `fn()` over `repeats` runs, and the last result."
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def decode_every_frame(path, wanted):
    "The common scripts' way: read every frame, keep the wanted ones."
    cap, keep, frames, i = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1]), set(wanted), [], 0
    while True:
        ok, frame = cap.read()
        if not ok: break
        if i in keep: frames.append((i, frame))
        i += 1
    cap.release()
    return frames


def baseline_pipeline(path, out, cfg):
    "Decode every frame, detect at full resolution with the same dlib detector, crop, save PNG."
    detect = FaceDetector(detect_size=0, upsample=cfg.upsample)
    n = int(cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FRAME_COUNT))
    out.mkdir(parents=True, exist_ok=True)
    faces = 0
    for t, frame in decode_every_frame(path, sample_indices(n, cfg.frames)):
        box, _ = detect(frame)
        if box is None: continue
        cv2.imwrite(str(out / f"{t:06d}.png"), square_crop(frame, box, cfg.margin, cfg.size), IMAGE_FORMATS["png"])
        faces += 1
    return faces


def bench_video(path, label, frames, repeats, work):
    probe = probe_video(path)
    wanted = sample_indices(probe.n_frames, frames)
    h, w = cv2.VideoCapture(str(path)).read()[1].shape[:2]
    gop = int(np.median(np.diff(probe.keyframes))) if len(probe.keyframes) > 1 else probe.n_frames
    info = f"{label}: {w}x{h}, {probe.n_frames} frames, keyframe every {gop} frames"
    print(f"\n== {info}")

    # 1. reading the frames
    read_rows = []
    t_all, ref = median_time(lambda: decode_every_frame(path, wanted), repeats)
    ref = dict(ref)
    read_rows.append(("decode every frame (baseline)", t_all, True))
    for mode in SEEK_MODES:
        def read(mode=mode):
            p = probe_video(path)   # part of the cost: the packet scan that finds the keyframes
            return list(read_frames(path, wanted, mode, p.keyframes, threads=1))
        t, got = median_time(read, repeats)
        exact = [i for i, _ in got] == wanted and all(np.array_equal(f, ref[i]) for i, f in got)
        read_rows.append((f"seek={mode}" + (" (default)" if mode == "auto" else ""), t, exact))
    for name, t, exact in read_rows: print(f"  read  {name:32s} {t * 1e3:8.1f} ms  exact={exact}")

    # 2. the whole pipeline per video
    spec = VideoSpec("bench/real/v", path, "bench", "real", 0, "orig", "test", "v")
    default, full_res = PreprocessConfig(frames=frames), PreprocessConfig(frames=frames, detect_size=0)
    runs = iter(range(10**6))
    pipe_rows = []
    t_base, n_base = median_time(lambda: baseline_pipeline(path, work / f"b{next(runs)}", default), repeats)
    pipe_rows.append(("decode every frame + full-res detection (baseline)", t_base, n_base, 0))
    for name, cfg in (("gsrepro, full-res detection", full_res),
                      (f"gsrepro default (detect_size={default.detect_size})", default)):
        t, rec = median_time(lambda cfg=cfg: process_video(spec, work / f"o{next(runs)}", cfg, decode_threads=1), repeats)
        pipe_rows.append((name, t, rec["n_faces"], rec["n_retried"]))
    for name, t, n, r in pipe_rows:
        print(f"  pipe  {name:52s} {t:6.2f} s  {n / t:6.1f} crops/s  {probe.n_frames / t:7.1f} video frames/s  "
              f"faces {n}/{len(wanted)}  retried {r}")

    # 3. detection: downscaled copy vs full resolution, on the sampled frames
    frames_bgr = [ref[i] for i in wanted]
    full = FaceDetector(detect_size=0)
    t_full, full_boxes = median_time(lambda: [full(f)[0] for f in frames_bgr], repeats)
    det_rows = [("full resolution", t_full, full_boxes, 0)]
    d = default
    variants = [(f"detect_size={d.detect_size} (default)", FaceDetector(d.detect_size, 0, d.retry_below)),
                (f"detect_size={d.detect_size}, retry_below=0", FaceDetector(d.detect_size, 0, 0)),
                ("detect_size=480", FaceDetector(480, 0, d.retry_below)),
                ("detect_size=240", FaceDetector(240, 0, d.retry_below)),
                (f"plain scale to {d.detect_size} px (not a power of 5/6), no retry", PlainScaleDetector(d.detect_size, 0, 0))]
    for name, det in variants:
        t, res = median_time(lambda det=det: [det(f) for f in frames_bgr], repeats)
        det_rows.append((f"{name}: scale {det.scale(frames_bgr[0].shape):.3f}", t, [b for b, _ in res], sum(r for _, r in res)))
    det_table = []
    for name, t, boxes, retried in det_rows:
        ious = [box_iou(a, b) if (a and b) else 0.0 for a, b in zip(full_boxes, boxes)]
        found = sum(b is not None for b in boxes)
        det_table.append((name, t / len(frames_bgr), t_full / t, found, retried, float(np.median(ious)), min(ious)))
        print(f"  det   {name:70s} {t / len(frames_bgr) * 1e3:6.1f} ms/frame  x{t_full / t:4.2f}  found {found}/{len(frames_bgr)}"
              f"  retried {retried}  IoU median {np.median(ious):.3f} min {min(ious):.3f}")
    return dict(info=info, n_frames=probe.n_frames, n_wanted=len(wanted), read=read_rows, pipe=pipe_rows, det=det_table)


def cpu_name():
    try: return next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration): return platform.machine()


def to_markdown(results, args, load):
    lines = ["# Preprocessing benchmark", "",
             f"`python bench/preprocess_bench.py --length {args.length} --size {args.size} --frames {args.frames} "
             f"--repeats {args.repeats}`: {cpu_name()} ({os.cpu_count()} cores, load average {load:.1f} at the start), "
             f"OpenCV {cv2.__version__}, dlib {dlib.__version__}; one process, one thread (one pool worker's "
             f"throughput); medians of {args.repeats} runs. Test videos: a real face (skimage astronaut) moving "
             "and scaling; mp4v from OpenCV's writer, and an H.264 copy (libx264 CRF 23, default GOP 250 and "
             "B-frames, as FF++ c23) when ffmpeg is installed.", ""]
    for r in results:
        base_read, base_pipe, base_det = r["read"][0][1], r["pipe"][0][1], r["det"][0][1]
        (_, t_def, n_def, _), (_, tf_full, *_), (_, tf_def, sp_def, _, _, med_def, min_def) = r["pipe"][-1], r["det"][0], r["det"][1]
        lines += [f"## {r['info']}", "",
                  f"**Whole pipeline: {base_pipe / t_def:.2f}× the baseline's speed** ({t_def:.2f} s vs {base_pipe:.2f} s "
                  f"per video, {n_def / t_def:.1f} vs {r['pipe'][0][2] / base_pipe:.1f} crops/s). "
                  f"**Detection on the default downscaled copy: {sp_def:.2f}× the speed of full resolution** "
                  f"({tf_def * 1e3:.1f} vs {tf_full * 1e3:.1f} ms/frame), box IoU against full resolution median "
                  f"{med_def:.3f}, min {min_def:.3f}.", "",
                  f"Reading the {r['n_wanted']} evenly spaced frames (every mode checked frame by frame against "
                  "decoding every frame):", "",
                  "| method | ms / video | speed-up vs baseline | frames identical |", "|---|---:|---:|---|"]
        lines += [f"| {name} | {t * 1e3:.1f} | {base_read / t:.2f}× | {'yes' if ok else 'NO'} |" for name, t, ok in r["read"]]
        lines += ["", "Whole pipeline (read, detect, crop 1.3×, resize 256, save PNG):", "",
                  "| pipeline | s / video | crops / s | video frames / s | speed-up vs baseline | faces | retried at full res |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {name} | {t:.2f} | {n / t:.1f} | {r['n_frames'] / t:.0f} | {base_pipe / t:.2f}× | {n}/{r['n_wanted']} | {rt} |"
                  for name, t, n, rt in r["pipe"]]
        lines += ["", "Detection on a downscaled copy vs full resolution (boxes mapped back; IoU against the "
                  "full-resolution box, 0 where one side found no face):", "",
                  "| detection | ms / frame | speed-up | faces found | retried | IoU median | IoU min |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {name} | {tf * 1e3:.1f} | {sp:.2f}× | {found}/{r['n_wanted']} | {rt} | {med:.3f} | {mn:.3f} |"
                  for name, tf, sp, found, rt, med, mn in r["det"]]
        lines.append("")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--length", type=int, default=600, help="frames in the test video (default %(default)s)")
    p.add_argument("--size", default="1280x720", help="test video WxH (default %(default)s)")
    p.add_argument("--frames", type=int, default=32, help="frames kept per video (default %(default)s)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "reports" / "preprocess_bench.md"))
    args = p.parse_args()
    cv2.setNumThreads(1)
    load = os.getloadavg()[0]
    w, h = map(int, args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # faces of about 165-240 px in a 720p frame (the head is 0.45-0.65 of the height, the face half of it)
        mp4v = make_face_video(tmp / "face_mp4v.mp4", args.length, (w, h), head=(0.45, 0.65), seed=1)
        videos = [(mp4v, "mp4v (OpenCV writer)")]
        if shutil.which("ffmpeg"):
            h264 = tmp / "face_h264.mp4"
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(mp4v), "-c:v", "libx264", "-crf", "23",
                            "-pix_fmt", "yuv420p", str(h264)], check=True)
            videos.append((h264, "H.264 CRF 23 (ffmpeg libx264 defaults)"))
        else:
            print("ffmpeg not found: measuring the mp4v video only")
        results = [bench_video(v, label, args.frames, args.repeats, tmp / f"work{i}") for i, (v, label) in enumerate(videos)]
    md = to_markdown(results, args, load)
    with atomic_write(args.out) as f: f.write(md + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
