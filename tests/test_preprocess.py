"""`gsrepro preprocess` on small trees of the FF++, Celeb-DF v2 and DFDC layouts whose videos show a real face:
labels, official FF++ splits, unique video ids, frames per video, faces in the crops, crop size; corrupt videos
reported while the rest completes; a run killed midway and re-run gives the identical manifest."""
import os
import shutil
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pandas as pd
import pytest

from gsrepro.cli import main
from gsrepro.core import load_json
from gsrepro.manifest import read_manifest
from gsrepro.preprocess import SEEK_MODES, FaceDetector, probe_video, read_frames, sample_indices
from gsrepro.testing import astronaut_head, make_example_tree, make_face_video
from gsrepro.vocab import FF_METHODS, ffpp_pairs

N_FRAMES, FRAMES, SIZE = 24, 8, 128      # video length, frames kept, crop side


def run(*argv):
    return main(["preprocess", *map(str, argv), "--frames", str(FRAMES), "--size", str(SIZE), "--no-progress"])


@pytest.fixture(scope="module")
def ffpp_tree(tmp_path_factory):
    return make_example_tree("ffpp", tmp_path_factory.mktemp("ffpp"), n_frames=N_FRAMES)


@pytest.fixture(scope="module")
def ffpp_out(ffpp_tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("ffpp_out")
    assert run("ffpp", "--root", ffpp_tree, "--out", out, "--workers", 2) == 0
    return out


def official_split(video: str) -> str:
    "The split of an FF++ real id `a` or fake `a_b`, straight from the shipped JSON pairs."
    ids = video.split("_")
    for split in ("train", "val", "test"):
        for pair in ffpp_pairs(split):
            if (len(ids) == 1 and ids[0] in pair) or (len(ids) == 2 and sorted(ids) == sorted(pair)):
                return split
    raise AssertionError(f"{video} is in no official pair")


def test_ffpp_manifest(ffpp_out):
    m = read_manifest(ffpp_out)
    videos = m.groupby("video_id").first()
    # one pair per split: 2 reals + 2 fakes for each of the 4 methods
    assert len(videos) == 3 * (2 + 2 * len(FF_METHODS))
    assert set(m["split"]) == {"train", "val", "test"} and set(m["quality"]) == {"c23"}
    for vid, row in videos.iterrows():
        dataset, method, video = vid.split("/")
        assert (dataset, method) == ("ffpp", row["method"])
        assert row["label"] == (method != "real")
        assert row["split"] == official_split(video), vid
        assert row["source_id"] == video.split("_")[0]
    # a_b of the four methods are four videos, and all ids are unique per (video, frame)
    a, b = ffpp_pairs("test")[0]
    assert {f"ffpp/{meth}/{a}_{b}" for meth in FF_METHODS} <= set(videos.index)
    assert not m.duplicated(["video_id", "frame"]).any()
    # every video gives the same evenly spaced frames, each with a face
    for vid, frames in m.groupby("video_id")["frame"]:
        assert sorted(frames) == sample_indices(N_FRAMES, FRAMES), vid
    report = pd.read_csv(ffpp_out / "report.csv")
    present = report[report["status"] != "missing"]
    assert (present["status"] == "ok").all() and (present["n_no_face"] == 0).all()
    assert (present["n_sampled"] == FRAMES).all() and not present["short"].any()
    summary = load_json(ffpp_out / "summary.json")
    assert (summary["ok"], summary["crops"], summary["missing"]) == (30, 30 * FRAMES, 5000 - 30)


def test_ffpp_crops_show_the_face(ffpp_out):
    m = read_manifest(ffpp_out)
    detector = FaceDetector(detect_size=0)
    head = cv2.resize(astronaut_head(), (SIZE, SIZE), interpolation=cv2.INTER_AREA).astype(float)
    corr = lambda x, y: np.corrcoef(x.reshape(-1, 3).T.ravel(), y.reshape(-1, 3).T.ravel())[0, 1]
    for path in m["path"]:
        crop = cv2.imread(str(ffpp_out / path))
        assert crop.shape == (SIZE, SIZE, 3), path
    for path in m.groupby("video_id")["path"].first():
        crop = cv2.imread(str(ffpp_out / path))
        box, _ = detector(crop)
        assert box is not None, path                      # the crop itself shows a detectable face
        side = box[2] - box[0]
        assert 0.55 * SIZE < side < 0.95 * SIZE, (path, box)  # margin 1.3: the face fills about 1/1.3 of it
        assert corr(crop.astype(float), head) > corr(crop[..., ::-1].astype(float), head)   # not BGR/RGB swapped


def test_celebdf(tmp_path):
    root = make_example_tree("celebdf", tmp_path / "raw", n_frames=N_FRAMES)
    out = tmp_path / "out"
    assert run("celebdf", "--root", root, "--out", out, "--workers", 2) == 0
    m = read_manifest(out)
    labels = m.groupby("video_id")["label"].first().to_dict()
    assert labels == {"celebdf/real/id0_0000": 0, "celebdf/real/id1_0001": 0, "celebdf/real/00000": 0,
                      "celebdf/fake/id0_id1_0000": 1, "celebdf/fake/id1_id0_0001": 1}   # the unlisted video is ignored
    assert set(m["split"]) == {"test"} and m.groupby("video_id").size().eq(FRAMES).all()
    assert m.loc[m.video_id == "celebdf/fake/id1_id0_0001", "source_id"].unique().tolist() == ["id1_0001"]
    summary = load_json(out / "summary.json")
    assert (summary["real"], summary["fake"]) == (3, 2)


def test_dfdc_video_folder_and_labels(tmp_path, capsys):
    root = make_example_tree("dfdc", tmp_path / "raw", n_frames=N_FRAMES)
    # the videos sit in test_videos/: without --videos none is found, and the error names one
    assert run("dfdc", "--root", root, "--out", tmp_path / "x", "--workers", 1) == 2
    err = capsys.readouterr().err
    assert "none of the 4 videos dfdc lists was found" in err and str(root / "aaqaifqrwn.mp4") in err
    shutil.move(root / "labels.csv", root / "test_labels.csv")
    assert run("dfdc", "--root", root, "--out", tmp_path / "out", "--videos", "test_videos",
               "--labels", "test_labels.csv", "--workers", 2) == 0
    m = read_manifest(tmp_path / "out")
    assert m.groupby("video_id")["label"].first().to_dict() == {
        "dfdc/real/aaqaifqrwn": 0, "dfdc/fake/abarnvbtwb": 1, "dfdc/real/acazlolrpz": 0, "dfdc/fake/adohdulfwb": 1}


def test_missing_folders_and_files_are_named(tmp_path, ffpp_tree, capsys):
    assert run("ffpp", "--root", ffpp_tree, "--out", tmp_path / "o", "--quality", "c40") == 2
    assert f"expected the folder {ffpp_tree / 'original_sequences/youtube/c40/videos'}" in capsys.readouterr().err
    partial = tmp_path / "partial"
    shutil.copytree(ffpp_tree, partial)
    shutil.rmtree(partial / "manipulated_sequences" / "NeuralTextures")
    assert run("ffpp", "--root", partial, "--out", tmp_path / "o") == 2
    assert str(partial / "manipulated_sequences/NeuralTextures/c23/videos") in capsys.readouterr().err
    (tmp_path / "cdf").mkdir()
    assert run("celebdf", "--root", tmp_path / "cdf", "--out", tmp_path / "o") == 2
    assert f"expected the file {tmp_path / 'cdf' / 'List_of_testing_videos.txt'}" in capsys.readouterr().err
    assert run("dfdc", "--root", tmp_path / "cdf", "--out", tmp_path / "o") == 2
    assert f"expected the file {tmp_path / 'cdf' / 'labels.csv'}" in capsys.readouterr().err


def test_corrupt_and_short_videos(tmp_path):
    root = make_example_tree("dfdc", tmp_path / "raw", n_frames=N_FRAMES)
    videos = root / "test_videos"
    (videos / "abarnvbtwb.mp4").write_bytes(os.urandom(5000))                 # garbage
    whole = (videos / "acazlolrpz.mp4").read_bytes()
    (videos / "acazlolrpz.mp4").write_bytes(whole[: len(whole) // 2])         # truncated download
    make_face_video(videos / "adohdulfwb.mp4", n_frames=5, seed=7)            # shorter than --frames
    out = tmp_path / "out"
    assert run("dfdc", "--root", root, "--out", out, "--videos", "test_videos", "--workers", 2) == 0
    report = pd.read_csv(out / "report.csv").set_index("video_id")
    assert report.loc["dfdc/fake/abarnvbtwb", "status"] == "unreadable"
    assert report.loc["dfdc/real/acazlolrpz", "status"] == "unreadable"
    assert "cannot open video" in report.loc["dfdc/fake/abarnvbtwb", "error"]
    assert report.loc["dfdc/fake/adohdulfwb", ["n_frames", "n_sampled", "n_faces"]].tolist() == [5, 5, 5]
    assert bool(report.loc["dfdc/fake/adohdulfwb", "short"])
    summary = load_json(out / "summary.json")
    assert (summary["unreadable"], summary["ok"], summary["short"], summary["crops"]) == (2, 2, 1, FRAMES + 5)
    m = read_manifest(out)
    assert sorted(m["video_id"].unique()) == ["dfdc/fake/adohdulfwb", "dfdc/real/aaqaifqrwn"]
    assert not any(p.name.startswith(".") for p in (out / "crops" / "dfdc").rglob("*"))   # no partial folders


def test_other_settings_into_the_same_folder_are_refused(ffpp_tree, ffpp_out, capsys):
    assert main(["preprocess", "ffpp", "--root", str(ffpp_tree), "--out", str(ffpp_out), "--frames", "4",
                 "--size", str(SIZE), "--no-progress"]) == 2
    assert "frames=8, not 4" in capsys.readouterr().err


def test_killed_run_resumes_to_the_identical_manifest(tmp_path, ffpp_tree, ffpp_out):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "gsrepro", "preprocess", "ffpp", "--root", str(ffpp_tree), "--out", str(out),
           "--frames", str(FRAMES), "--size", str(SIZE), "--workers", "2", "--no-progress"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while proc.poll() is None and not list(out.glob("crops/*/*/*/video.json")) and time.monotonic() < deadline:
        time.sleep(0.01)
    killed = proc.poll() is None
    if killed: os.killpg(proc.pid, signal.SIGKILL)     # the command and its pool workers, mid-run
    proc.wait()
    done_before = len(list(out.glob("crops/*/*/*/video.json")))
    if killed: assert not (out / "manifest.csv").exists() and done_before < 30
    assert done_before >= 1
    assert run("ffpp", "--root", ffpp_tree, "--out", out, "--workers", 2) == 0
    assert load_json(out / "summary.json")["resumed"] == done_before
    assert (out / "manifest.csv").read_bytes() == (ffpp_out / "manifest.csv").read_bytes()
    assert not list(out.glob("crops/*/*/.*"))


def test_lost_outputs_are_redone_identically(tmp_path, ffpp_tree, ffpp_out):
    "Delete the manifest and some finished videos, leave a stale partial folder: the re-run rebuilds the same manifest."
    out = tmp_path / "out"
    shutil.copytree(ffpp_out, out)
    (out / "manifest.csv").unlink()
    gone = sorted(out.glob("crops/ffpp/*/*/video.json"))[::3]
    for done in gone: shutil.rmtree(done.parent)
    stale = out / "crops" / "ffpp" / "DF" / ".000_003.partial-99999"
    stale.mkdir()
    (stale / "000001.png").write_bytes(b"half")
    assert run("ffpp", "--root", ffpp_tree, "--out", out, "--workers", 2) == 0
    assert load_json(out / "summary.json")["resumed"] == 30 - len(gone)
    assert (out / "manifest.csv").read_bytes() == (ffpp_out / "manifest.csv").read_bytes()
    assert not stale.exists()


def _every_frame(path):
    cap, frames = cv2.VideoCapture(str(path)), []
    while (got := cap.read())[0]: frames.append(got[1])
    return frames


def _check_seek_modes(path):
    every, probe = _every_frame(path), probe_video(path)
    assert probe.n_frames == len(every)
    for k in (3, 8, 32, len(every) + 5):
        wanted = sample_indices(probe.n_frames, k)
        for mode in SEEK_MODES:
            got = list(read_frames(path, wanted, seek=mode, keyframes=probe.keyframes))
            assert [t for t, _ in got] == wanted, (mode, k)
            assert all(np.array_equal(f, every[t]) for t, f in got), (mode, k)


def test_seek_modes_give_exactly_the_decoded_frames(tmp_path):
    _check_seek_modes(make_face_video(tmp_path / "v.mp4", n_frames=150, size=(160, 120)))


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg command to write H.264")
def test_seek_modes_on_h264_with_b_frames(tmp_path):
    "FF++ videos are H.264 with B-frames and long GOPs: seeking must still land on exactly the decoded frame."
    src = make_face_video(tmp_path / "v.mp4", n_frames=150, size=(160, 120))
    dst = tmp_path / "h264.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-c:v", "libx264", "-crf", "23", "-g", "60",
                    "-bf", "3", "-pix_fmt", "yuv420p", str(dst)], check=True)
    _check_seek_modes(dst)
