"""`gsrepro preprocess` on small trees of the FF++, Celeb-DF v2 and DFDC layouts whose videos show a real face:
labels, official FF++ splits, unique video ids, frames per video, faces in the crops, crop size; FF++ at c23 and
c40 in one manifest, built in one run or quality by quality (or method by method) into the same folder; corrupt
videos reported while the rest completes; a run killed midway and re-run gives the identical manifest."""
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
from gsrepro.manifest import ROW_KEY, read_manifest
from gsrepro.preprocess import SEEK_MODES, FaceDetector, PreprocessConfig, probe_video, read_frames, sample_indices
from gsrepro.testing import astronaut_head, make_example_tree, make_face_video
from gsrepro.vocab import FF_METHODS, ffpp_pairs

N_FRAMES, FRAMES, SIZE = 24, 4, 64       # video length, frames kept, crop side
QUALITIES = ("c23", "c40")
N_VIDEOS = 3 * (2 + 2 * len(FF_METHODS))  # one pair per split: 2 reals + 2 fakes for each of the 4 methods
N_LISTED = 1000 + 1000 * len(FF_METHODS)  # every official pair, per quality


def run(*argv):
    return main(["preprocess", *map(str, argv), "--frames", str(FRAMES), "--size", str(SIZE), "--no-progress"])


def manifest_bytes(out):
    return (out / "manifest.csv").read_bytes()


@pytest.fixture(scope="module")
def ffpp_tree(tmp_path_factory):
    return make_example_tree("ffpp", tmp_path_factory.mktemp("ffpp"), n_frames=N_FRAMES, qualities=QUALITIES)


@pytest.fixture(scope="module")
def ffpp_out(ffpp_tree, tmp_path_factory):
    "One run with the default qualities, c23 and c40."
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


def test_default_crop_size_covers_the_paper_backbones():
    timm = pytest.importorskip("timm")
    from gsrepro.models import BACKBONES
    sides = {b: timm.models.get_pretrained_cfg(BACKBONES[b].timm_name).input_size[-1]
             for b in ("efficientnet_b4", "legacy_xception", "resnet50", "dpn68", "vgg19")}
    assert PreprocessConfig().size >= max(sides.values()), sides


def test_ffpp_manifest(ffpp_out):
    m = read_manifest(ffpp_out)
    videos = m.groupby("video_id").first()
    assert len(videos) == N_VIDEOS
    assert set(m["split"]) == {"train", "val", "test"} and set(m["quality"]) == set(QUALITIES)
    for vid, row in videos.iterrows():
        dataset, method, video = vid.split("/")
        assert (dataset, method) == ("ffpp", row["method"])
        assert row["label"] == (method != "real")
        assert row["split"] == official_split(video), vid
        assert row["source_id"] == video.split("_")[0]
    # a_b of the four methods are four videos; a row is one (dataset, video_id, quality, frame)
    a, b = ffpp_pairs("test")[0]
    assert {f"ffpp/{meth}/{a}_{b}" for meth in FF_METHODS} <= set(videos.index)
    assert not m.duplicated(list(ROW_KEY)).any()
    assert (m["path"] == [f"crops/{q}/{v}/{t:06d}.png" for q, v, t in zip(m["quality"], m["video_id"], m["frame"])]).all()
    # every video at every quality gives the same evenly spaced frames, each with a face
    for (vid, quality), frames in m.groupby(["video_id", "quality"])["frame"]:
        assert sorted(frames) == sample_indices(N_FRAMES, FRAMES), (vid, quality)
    report = pd.read_csv(ffpp_out / "report.csv")
    assert len(report) == 2 * N_LISTED and list(report.columns[:4]) == ["video_id", "quality", "label", "status"]
    present = report[report["status"] != "missing"]
    assert (present["status"] == "ok").all() and (present["n_no_face"] == 0).all()
    assert (present["n_sampled"] == FRAMES).all() and not present["short"].any()
    assert present.groupby("quality").size().to_dict() == {q: N_VIDEOS for q in QUALITIES}
    summary = load_json(ffpp_out / "summary.json")
    assert (summary["ok"], summary["crops"], summary["missing"]) == (2 * N_VIDEOS, 2 * N_VIDEOS * FRAMES,
                                                                     2 * (N_LISTED - N_VIDEOS))
    assert summary["qualities"] == list(QUALITIES) and summary["by_quality"]["c40"]["crops"] == N_VIDEOS * FRAMES
    assert (summary["run"]["processed"], summary["run"]["resumed"], summary["run"]["kept"]) == (2 * N_VIDEOS, 0, 0)


def test_every_ffpp_video_at_both_qualities(ffpp_out):
    "One manifest: each FF++ video at c23 and c40, one video_id, one source_id, one split, one label, one method."
    m = read_manifest(ffpp_out)
    per_video = m.groupby("video_id").agg(qualities=("quality", lambda q: tuple(sorted(set(q)))), rows=("path", "size"),
                                          **{c: (c, "nunique") for c in ("source_id", "split", "label", "method")})
    assert set(per_video["qualities"]) == {QUALITIES} and (per_video["rows"] == 2 * FRAMES).all()
    assert (per_video[["source_id", "split", "label", "method"]] == 1).all().all()
    c23, c40 = (m[m.quality == q].drop(columns=["path", "quality"]).reset_index(drop=True) for q in QUALITIES)
    pd.testing.assert_frame_equal(c23, c40)


def test_ffpp_crops_show_the_face(ffpp_out):
    m = read_manifest(ffpp_out)
    detector, big = FaceDetector(detect_size=0), 2 * SIZE   # a 64-px crop's face is below dlib's 80-px window: look at 2x
    head = cv2.resize(astronaut_head(), (SIZE, SIZE), interpolation=cv2.INTER_AREA).astype(float)
    corr = lambda x, y: np.corrcoef(x.reshape(-1, 3).T.ravel(), y.reshape(-1, 3).T.ravel())[0, 1]
    for path in m["path"]:
        crop = cv2.imread(str(ffpp_out / path))
        assert crop.shape == (SIZE, SIZE, 3), path
    for path in m.groupby(["video_id", "quality"])["path"].first():
        crop = cv2.imread(str(ffpp_out / path))
        box, _ = detector(cv2.resize(crop, (big, big), interpolation=cv2.INTER_CUBIC))
        assert box is not None, path                      # the crop itself shows a detectable face
        side = box[2] - box[0]
        assert 0.55 * big < side < 0.95 * big, (path, box)    # margin 1.3: the face fills about 1/1.3 of it
        assert corr(crop.astype(float), head) > corr(crop[..., ::-1].astype(float), head)   # not BGR/RGB swapped
    # the c40 crops come from the c40 files (the same frames, more heavily compressed, so other pixels and boxes)
    for c23 in m.loc[m.quality == "c23", "path"].iloc[::7]:
        a, b = (cv2.imread(str(ffpp_out / p)) for p in (c23, c23.replace("crops/c23/", "crops/c40/")))
        assert not np.array_equal(a, b), c23


def test_quality_by_quality_gives_the_same_folder(tmp_path, ffpp_tree, ffpp_out):
    "--quality c23, then --quality c40 into the same folder: the c23 videos are kept, the manifest is the one-run manifest."
    out = tmp_path / "out"
    assert run("ffpp", "--root", ffpp_tree, "--out", out, "--quality", "c23", "--workers", 2) == 0
    m23 = read_manifest(out)
    assert set(m23["quality"]) == {"c23"} and len(m23) == N_VIDEOS * FRAMES
    assert run("ffpp", "--root", ffpp_tree, "--out", out, "--quality", "c40", "--workers", 2) == 0
    summary = load_json(out / "summary.json")
    assert (summary["run"]["processed"], summary["run"]["resumed"], summary["run"]["kept"]) == (N_VIDEOS, 0, N_LISTED)
    assert summary["by_quality"]["c23"]["ok"] == N_VIDEOS and summary["qualities"] == list(QUALITIES)
    assert load_json(out / "preprocess.json")["qualities"] == list(QUALITIES)
    pd.testing.assert_frame_equal(read_manifest(out), read_manifest(ffpp_out))
    assert manifest_bytes(out) == manifest_bytes(ffpp_out)            # rows sorted: the order of the runs does not show
    report, once = (pd.read_csv(d / "report.csv").drop(columns=["seconds"]) for d in (out, ffpp_out))
    pd.testing.assert_frame_equal(report.drop(columns=["video"]), once.drop(columns=["video"]))
    # both qualities again (the default): every video is reused, nothing is redone
    assert run("ffpp", "--root", ffpp_tree, "--out", out, "--workers", 2) == 0
    summary = load_json(out / "summary.json")
    assert (summary["run"]["processed"], summary["run"]["resumed"], summary["run"]["kept"]) == (0, 2 * N_VIDEOS, 0)
    assert manifest_bytes(out) == manifest_bytes(ffpp_out)


def test_method_by_method_keeps_the_other_methods(tmp_path, ffpp_tree, ffpp_out):
    "--methods DF, then --methods F2F: the DF rows stay, the reals are reused, F2F is added."
    out = tmp_path / "out"
    assert run("ffpp", "--root", ffpp_tree, "--out", out, "--methods", "DF", "--workers", 2) == 0
    assert run("ffpp", "--root", ffpp_tree, "--out", out, "--methods", "F2F", "--workers", 2) == 0
    summary = load_json(out / "summary.json")
    n_real, n_fake = 2 * 3 * 2, 2 * 3 * 2                            # per method, at both qualities
    assert (summary["run"]["processed"], summary["run"]["resumed"]) == (n_fake, n_real)
    assert summary["run"]["kept"] == 2 * 1000 and summary["ok"] == n_real + 2 * n_fake   # every DF row of the report
    full = read_manifest(ffpp_out)
    want = full[full["method"].isin(["real", "DF", "F2F"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(read_manifest(out), want, check_like=False)
    report = pd.read_csv(out / "report.csv")
    assert set(report.loc[report["status"] == "ok", "video_id"].str.split("/").str[1]) == {"real", "DF", "F2F"}
    assert len(report) == 2 * 3000


def test_other_settings_into_the_same_folder_are_refused(ffpp_tree, ffpp_out, capsys):
    before = manifest_bytes(ffpp_out)
    assert main(["preprocess", "ffpp", "--root", str(ffpp_tree), "--out", str(ffpp_out), "--frames", str(FRAMES),
                 "--size", "96", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "size=64, not 96" in err and err.strip().count("\n") == 0
    assert manifest_bytes(ffpp_out) == before and load_json(ffpp_out / "preprocess.json")["size"] == SIZE


def test_missing_quality_is_one_line(tmp_path, capsys):
    root = make_example_tree("ffpp", tmp_path / "raw", n_frames=2, size=(160, 120), methods=("DF",))   # c23 only
    assert run("ffpp", "--root", root, "--out", tmp_path / "o", "--methods", "DF") == 2       # default: c23 and c40
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert f"expected the folder {root / 'original_sequences/youtube/c40/videos'}" in err
    assert "pass --quality with the qualities the download has (here: c23)" in err
    assert not (tmp_path / "o").exists()


def test_missing_folders_and_files_are_named(tmp_path, ffpp_tree, capsys):
    partial = tmp_path / "partial"
    shutil.copytree(ffpp_tree, partial)
    shutil.rmtree(partial / "manipulated_sequences" / "NeuralTextures" / "c40")
    assert run("ffpp", "--root", partial, "--out", tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert str(partial / "manipulated_sequences/NeuralTextures/c40/videos") in err and "pass --methods" in err
    (tmp_path / "cdf").mkdir()
    assert run("celebdf", "--root", tmp_path / "cdf", "--out", tmp_path / "o") == 2
    assert f"expected the file {tmp_path / 'cdf' / 'List_of_testing_videos.txt'}" in capsys.readouterr().err
    assert run("dfdc", "--root", tmp_path / "cdf", "--out", tmp_path / "o") == 2
    assert f"expected the file {tmp_path / 'cdf' / 'labels.csv'}" in capsys.readouterr().err
    assert run("dfdc", "--root", tmp_path / "cdf", "--out", tmp_path / "o", "--quality", "c23") == 2
    assert "option qualities (--quality) does not apply to dfdc" in capsys.readouterr().err


def test_celebdf(tmp_path):
    root = make_example_tree("celebdf", tmp_path / "raw", n_frames=N_FRAMES)
    out = tmp_path / "out"
    assert run("celebdf", "--root", root, "--out", out, "--workers", 2) == 0
    m = read_manifest(out)
    labels = m.groupby("video_id")["label"].first().to_dict()
    assert labels == {"celebdf/real/id0_0000": 0, "celebdf/real/id1_0001": 0, "celebdf/real/00000": 0,
                      "celebdf/fake/id0_id1_0000": 1, "celebdf/fake/id1_id0_0001": 1}   # the unlisted video is ignored
    assert set(m["split"]) == {"test"} and m.groupby("video_id").size().eq(FRAMES).all()
    assert set(m["quality"]) == {"orig"} and m["path"].str.startswith("crops/orig/celebdf/").all()
    assert m.loc[m.video_id == "celebdf/fake/id1_id0_0001", "source_id"].unique().tolist() == ["id1_0001"]
    summary = load_json(out / "summary.json")
    assert (summary["real"], summary["fake"], summary["qualities"]) == (3, 2, ["orig"])
    # a second run into the same folder resumes
    first = manifest_bytes(out)
    assert run("celebdf", "--root", root, "--out", out, "--workers", 2) == 0
    summary = load_json(out / "summary.json")
    assert (summary["run"]["resumed"], summary["run"]["processed"], manifest_bytes(out) == first) == (5, 0, True)


def test_dfdc_video_folder_and_labels(tmp_path, capsys):
    root = make_example_tree("dfdc", tmp_path / "raw", n_frames=N_FRAMES)
    # the videos sit in test_videos/: without --videos none is found, and the error names one
    assert run("dfdc", "--root", root, "--out", tmp_path / "x", "--workers", 1) == 2
    err = capsys.readouterr().err
    assert "none of the 4 videos dfdc lists was found" in err and str(root / "aaqaifqrwn.mp4") in err
    assert not (tmp_path / "x").exists()
    shutil.move(root / "labels.csv", root / "test_labels.csv")
    assert run("dfdc", "--root", root, "--out", tmp_path / "out", "--videos", "test_videos",
               "--labels", "test_labels.csv", "--workers", 2) == 0
    m = read_manifest(tmp_path / "out")
    assert m.groupby("video_id")["label"].first().to_dict() == {
        "dfdc/real/aaqaifqrwn": 0, "dfdc/fake/abarnvbtwb": 1, "dfdc/real/acazlolrpz": 0, "dfdc/fake/adohdulfwb": 1}
    assert (tmp_path / "out" / "crops" / "orig" / "dfdc" / "real" / "aaqaifqrwn" / "video.json").is_file()


def test_corrupt_and_short_videos(tmp_path):
    root = make_example_tree("dfdc", tmp_path / "raw", n_frames=N_FRAMES)
    videos = root / "test_videos"
    (videos / "abarnvbtwb.mp4").write_bytes(os.urandom(5000))                 # garbage
    whole = (videos / "acazlolrpz.mp4").read_bytes()
    (videos / "acazlolrpz.mp4").write_bytes(whole[: len(whole) // 2])         # truncated download
    make_face_video(videos / "adohdulfwb.mp4", n_frames=3, seed=7)            # shorter than --frames
    out = tmp_path / "out"
    assert run("dfdc", "--root", root, "--out", out, "--videos", "test_videos", "--workers", 2) == 0
    report = pd.read_csv(out / "report.csv").set_index("video_id")
    assert report.loc["dfdc/fake/abarnvbtwb", "status"] == "unreadable"
    assert report.loc["dfdc/real/acazlolrpz", "status"] == "unreadable"
    assert "cannot open video" in report.loc["dfdc/fake/abarnvbtwb", "error"]
    assert report.loc["dfdc/fake/adohdulfwb", ["n_frames", "n_sampled", "n_faces"]].tolist() == [3, 3, 3]
    assert bool(report.loc["dfdc/fake/adohdulfwb", "short"])
    summary = load_json(out / "summary.json")
    assert (summary["unreadable"], summary["ok"], summary["short"], summary["crops"]) == (2, 2, 1, FRAMES + 3)
    m = read_manifest(out)
    assert sorted(m["video_id"].unique()) == ["dfdc/fake/adohdulfwb", "dfdc/real/aaqaifqrwn"]
    assert not any(p.name.startswith(".") for p in (out / "crops").rglob("*"))   # no partial folders


def test_killed_run_resumes_to_the_identical_manifest(tmp_path, ffpp_tree, ffpp_out):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "gsrepro", "preprocess", "ffpp", "--root", str(ffpp_tree), "--out", str(out),
           "--frames", str(FRAMES), "--size", str(SIZE), "--workers", "2", "--no-progress"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done = lambda: list(out.glob("crops/*/*/*/*/video.json"))
    deadline = time.monotonic() + 120
    while proc.poll() is None and not done() and time.monotonic() < deadline:
        time.sleep(0.01)
    killed = proc.poll() is None
    if killed: os.killpg(proc.pid, signal.SIGKILL)     # the command and its pool workers, mid-run
    proc.wait()
    done_before = len([p for p in done() if not p.parent.name.startswith(".")])
    if killed: assert not (out / "manifest.csv").exists() and done_before < 2 * N_VIDEOS
    assert done_before >= 1
    assert run("ffpp", "--root", ffpp_tree, "--out", out, "--workers", 2) == 0
    assert load_json(out / "summary.json")["run"]["resumed"] == done_before
    assert manifest_bytes(out) == manifest_bytes(ffpp_out)
    assert not list(out.glob("crops/*/*/*/.*"))


def test_lost_outputs_are_redone_identically(tmp_path, ffpp_tree, ffpp_out):
    "Delete the manifest and some finished videos, leave a stale partial folder: the re-run rebuilds the same manifest."
    out = tmp_path / "out"
    shutil.copytree(ffpp_out, out)
    (out / "manifest.csv").unlink()
    gone = sorted(out.glob("crops/*/ffpp/*/*/video.json"))[::5]
    for done in gone: shutil.rmtree(done.parent)
    stale = out / "crops" / "c40" / "ffpp" / "DF" / ".000_003.partial-99999"
    stale.mkdir()
    (stale / "000001.png").write_bytes(b"half")
    assert run("ffpp", "--root", ffpp_tree, "--out", out, "--workers", 2) == 0
    assert load_json(out / "summary.json")["run"]["resumed"] == 2 * N_VIDEOS - len(gone)
    assert manifest_bytes(out) == manifest_bytes(ffpp_out)
    assert not stale.exists()


def test_a_lost_manifest_keeps_the_other_quality(tmp_path, ffpp_tree, ffpp_out):
    "The manifest is rebuilt from the crop folders: with manifest.csv deleted, a c40-only run still lists the c23 crops."
    out = tmp_path / "out"
    shutil.copytree(ffpp_out, out)
    (out / "manifest.csv").unlink()
    assert run("ffpp", "--root", ffpp_tree, "--out", out, "--quality", "c40", "--workers", 1) == 0
    assert load_json(out / "summary.json")["run"]["resumed"] == N_VIDEOS
    assert manifest_bytes(out) == manifest_bytes(ffpp_out)


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


# --- paths and video ids of the raw lists -------------------------------------------------------------------------

def test_dfdc_filenames_stay_inside_the_video_folder(tmp_path, capsys):
    "`../` and absolute names in labels.csv would read videos outside the folder: one line with file, line and value."
    root = make_example_tree("dfdc", tmp_path / "raw", n_frames=2, size=(160, 120))
    make_face_video(tmp_path / "outside.mp4", n_frames=2, size=(160, 120))
    labels = root / "labels.csv"
    for name in ("../../outside.mp4", str(tmp_path / "outside.mp4"), "a/../../../outside.mp4", "a/.."):
        labels.write_text(f"filename,label\naaqaifqrwn.mp4,0\n{name},1\n")
        assert run("dfdc", "--root", root, "--out", tmp_path / "out", "--videos", "test_videos") == 2
        err = capsys.readouterr().err.strip()
        assert err == (f"gsrepro preprocess: error: {labels}, line 3: filename {name!r} leaves the video folder "
                       f"{root / 'test_videos'}; expected a file name or a relative path inside it"), err
        assert not (tmp_path / "out").exists()


def test_dfdc_one_name_in_two_folders_is_refused_up_front(tmp_path, capsys):
    "a/x.mp4 and b/x.mp4 are both dfdc/<method>/x: their crops would overwrite each other; both lines are named."
    root = make_example_tree("dfdc", tmp_path / "raw", n_frames=2, size=(160, 120))
    for sub in ("a", "b"): make_face_video(root / "test_videos" / sub / "x.mp4", n_frames=2, size=(160, 120))
    labels = root / "labels.csv"
    labels.write_text("filename,label\na/x.mp4,1\naaqaifqrwn.mp4,0\nb/x.mp4,1\n")
    assert run("dfdc", "--root", root, "--out", tmp_path / "out", "--videos", "test_videos") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{labels}, lines 2 and 4: a/x.mp4 and b/x.mp4 give one video id dfdc/fake/x" in err
    assert not (tmp_path / "out").exists()
    labels.write_text("filename,label\nb/x.mp4,1\n./b//x.mp4,1\n")                     # one file, written twice
    assert run("dfdc", "--root", root, "--out", tmp_path / "out", "--videos", "test_videos") == 2
    assert f"{labels}, line 3: b/x.mp4 repeats line 2" in capsys.readouterr().err
    labels.write_text("filename,label\na/x.mp4,1\nb/../b/y.mp4,0\n")                   # normalised, inside: accepted
    assert run("dfdc", "--root", root, "--out", tmp_path / "out", "--videos", "test_videos", "--workers", 1) == 0
    assert read_manifest(tmp_path / "out")["video_id"].unique().tolist() == ["dfdc/fake/x"]


def test_celebdf_list_lines_are_unique_by_video_id_and_normalised_path(tmp_path, capsys):
    root = make_example_tree("celebdf", tmp_path / "raw", n_frames=2, size=(160, 120))
    make_face_video(root / "Celeb-real" / "00000.mp4", n_frames=2, size=(160, 120))      # also in YouTube-real/
    listed = root / "List_of_testing_videos.txt"
    cases = {"1 Celeb-real/id0_0000.mp4\n1 ./Celeb-real//id0_0000.mp4\n": "line 2: Celeb-real/id0_0000.mp4 repeats line 1",
             "1 YouTube-real/00000.mp4\n0 Celeb-synthesis/id0_id1_0000.mp4\n1 Celeb-real/00000.mp4\n":
                 "lines 1 and 3: YouTube-real/00000.mp4 and Celeb-real/00000.mp4 give one video id celebdf/real/00000",
             "1 Celeb-real/../../outside.mp4\n": "line 1: 'Celeb-real/../../outside.mp4' leaves the Celeb-DF folder"}
    for text, want in cases.items():
        listed.write_text(text)
        assert run("celebdf", "--root", root, "--out", tmp_path / "out") == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and f"{listed}, {want}" in err, err
    assert not (tmp_path / "out").exists()


# --- done-files and other JSON -------------------------------------------------------------------------------------

def test_a_truncated_done_file_is_redone_with_one_warning(tmp_path, ffpp_tree, ffpp_out):
    "A video.json cut short (an old version killed mid-write, a disk fault) is 'not done': warned once, processed again."
    out = tmp_path / "out"
    shutil.copytree(ffpp_out, out)
    done = sorted(out.glob("crops/*/ffpp/*/*/video.json"))
    bad = {done[0]: done[0].read_text()[:40], done[7]: "", done[-1]: "[]"}     # cut short, empty, not a record
    for path, text in bad.items(): path.write_text(text)
    with pytest.warns(UserWarning) as caught:
        assert run("ffpp", "--root", ffpp_tree, "--out", out, "--workers", 2) == 0
    named = [str(w.message) for w in caught if "video.json" in str(w.message)]
    assert sorted(m.split(":")[0] for m in named) == sorted(map(str, bad)), named      # one warning per file, naming it
    assert all(m.endswith("the video is processed again") for m in named)
    summary = load_json(out / "summary.json")
    assert (summary["run"]["processed"], summary["run"]["resumed"]) == (3, 2 * N_VIDEOS - 3)
    assert manifest_bytes(out) == manifest_bytes(ffpp_out)
    assert all(isinstance(load_json(p)["frames"], list) for p in bad)
    # a done-file this run does not list (c23 while running c40): warned once, left out, the run goes on
    done[0].write_text("{")
    with pytest.warns(UserWarning, match=f"{done[0]}: not valid JSON"):
        assert run("ffpp", "--root", ffpp_tree, "--out", out, "--quality", "c40", "--workers", 1) == 0
    c23 = done[0].parts[-5] == "c23"
    assert len(read_manifest(out)) == 2 * N_VIDEOS * FRAMES - (FRAMES if c23 else 0)


def test_json_that_is_not_json_is_named(tmp_path, ffpp_tree, ffpp_out, capsys):
    out = tmp_path / "out"
    shutil.copytree(ffpp_out, out)
    (out / "preprocess.json").write_text('{"dataset": "ffpp", "fra')
    assert run("ffpp", "--root", ffpp_tree, "--out", out) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"gsrepro preprocess: error: {out / 'preprocess.json'}: not valid JSON (") and "\n" not in err
    splits = tmp_path / "splits"
    splits.mkdir()
    for split in ("train", "val", "test"): (splits / f"{split}.json").write_text('[["000", "003"], ["00')
    assert run("ffpp", "--root", ffpp_tree, "--out", tmp_path / "o2", "--splits-dir", splits) == 2
    assert f"error: {splits / 'train.json'}: not valid JSON (" in capsys.readouterr().err


# --- worker processes end with the command -------------------------------------------------------------------------

try:
    import psutil
except ImportError:                                   # /proc instead
    psutil = None


def _descendants(pid):
    "Handles of the live descendants of `pid` (psutil processes, or pids read from /proc)."
    if psutil: return psutil.Process(pid).children(recursive=True)
    parent_of = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try: parent_of[int(d)] = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError): pass
    found, todo = [], [pid]
    while todo:
        kids = [c for c, p in parent_of.items() if p == todo.pop()]
        found += kids
        todo += kids
    return found


def _alive(proc) -> bool:
    "Whether a handle from `_descendants` is still a running process (a zombie is not)."
    if psutil:
        try: return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess: return False
    try: return open(f"/proc/{proc}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError): return False


def _still_alive(procs, within: float):
    deadline = time.monotonic() + within
    while (alive := [p for p in procs if _alive(p)]) and time.monotonic() < deadline: time.sleep(0.05)
    return alive


def _kill(procs):
    "Clean up after a failed test: SIGKILL each process the test started (directly or not), by its id."
    for p in procs:
        if _alive(p):
            try: os.kill(p.pid if psutil else p, signal.SIGKILL)
            except ProcessLookupError: pass


def _start(args, out, **popen):
    "Start `python -m gsrepro preprocess ARGS --out OUT` and wait until its first video is done (or it ends)."
    cmd = [sys.executable, "-m", "gsrepro", "preprocess", *map(str, args), "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, **popen)
    deadline = time.monotonic() + 120
    while proc.poll() is None and not list(out.glob("crops/*/*/*/*/video.json")) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be stopped: give it more work"
    return proc


@pytest.mark.parametrize("prctl", [True, False], ids=["prctl", "watch-thread"])
def test_a_worker_ends_with_its_parent(prctl):
    "die_with_parent: Linux's parent-death signal, and the fallback thread that watches os.getppid()."
    worker = ("import os, time; from gsrepro.core import die_with_parent; "
              f"die_with_parent(os.getppid(), prctl={prctl}); print(os.getpid(), flush=True); time.sleep(60)")
    middle = subprocess.Popen([sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, '-c', {worker!r}])"],
                              stdout=subprocess.PIPE, text=True)
    pid = int(middle.stdout.readline())
    kids = _descendants(middle.pid)
    try:
        middle.kill()
        middle.wait()
        assert not _still_alive(kids, within=5)
    finally:
        _kill(kids)


def test_killing_the_command_ends_its_workers(tmp_path, ffpp_tree):
    "SIGKILL to the command alone (no cleanup code runs in it): its pool workers end within seconds anyway."
    proc = _start(["ffpp", "--root", ffpp_tree, "--frames", FRAMES, "--size", SIZE, "--workers", 2], tmp_path / "out",
                  stderr=subprocess.DEVNULL, start_new_session=True)
    kids = _descendants(proc.pid)
    try:
        assert len(kids) >= 2                         # the two workers (and multiprocessing's resource tracker)
        proc.kill()
        proc.wait()
        assert not _still_alive(kids, within=5)
    finally:
        _kill(kids)


@pytest.fixture(scope="module")
def slow_tree(tmp_path_factory):
    "Four DFDC videos that take ~2 s each with the settings of `SLOW` (every frame, dlib upsampled once, full resolution)."
    return make_example_tree("dfdc", tmp_path_factory.mktemp("slow"), n_frames=36, size=(160, 120))


SLOW = ["--frames", 36, "--size", SIZE, "--upsample", 1, "--detect-size", 0]


@pytest.mark.parametrize("to", ["group", "parent"])
def test_ctrl_c_stops_the_pool_at_once_and_resumes(tmp_path, slow_tree, to):
    """SIGINT to the process group (a terminal's Ctrl-C) or to the command alone (`kill -INT`): the command stops
    without finishing the running videos, says so in one line (exit 130), leaves no process and no partial folder,
    and the same command resumes."""
    out, args = tmp_path / "out", ["dfdc", "--root", slow_tree, "--videos", "test_videos", *SLOW, "--workers", 2]
    proc = _start(args, out, stderr=subprocess.PIPE, text=True, start_new_session=True)
    kids = _descendants(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGINT) if to == "group" else os.kill(proc.pid, signal.SIGINT)
        start = time.monotonic()
        err = proc.communicate(timeout=60)[1]
        stopped = time.monotonic() - start
        assert not _still_alive(kids, within=5)
    finally:
        _kill(kids)
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == (
        f"gsrepro preprocess: interrupted; the finished videos in {out} are kept, the same command resumes")
    done = list(out.glob("crops/*/*/*/*/video.json"))
    video_seconds = min(load_json(p)["seconds"] for p in done)
    assert stopped < max(1.0, 0.4 * video_seconds), (stopped, video_seconds)   # not after the running videos
    assert not list(out.glob("crops/*/*/*/.*")) and not (out / "manifest.csv").exists()
    for p in done: assert sorted(f.name for f in p.parent.glob("*.png")) == [f"{t:06d}.png" for t in load_json(p)["frames"]]
    if to == "parent": return                                         # the resumed run is the same for both
    assert main(["preprocess", *map(str, args), "--out", str(out), "--no-progress"]) == 0
    summary = load_json(out / "summary.json")
    assert (summary["run"]["resumed"], summary["run"]["processed"], summary["ok"]) == (len(done), 4 - len(done), 4)
    assert len(read_manifest(out)) == 4 * 36
