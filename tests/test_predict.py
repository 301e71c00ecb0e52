"""`gsrepro predict` and `gsrepro export` on short videos of a real face (320×240, where dlib finds it) and a tiny
trained run: per-frame probabilities equal to `gsrepro evaluate` on `gsrepro preprocess` crops of the same videos, a
portable model file scoring identically to its run folder, counted rows for files that cannot be scored, Grad-CAM
overlays, and model files that are refused with one line (a pickle that would run code is never unpickled); a model
trained on SynthFF says so on every run, a model file holds no path of the machine it was made on, and what the video
and image decoders print about broken files lands in the table, not on the terminal."""
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from safetensors import safe_open

from gsrepro.cli import main
from gsrepro.config import TrainConfig
from gsrepro.predict import FILE_COLUMNS, FRAME_COLUMNS, GSR_KEYS, PATH_FIELDS, THRESHOLD
from gsrepro.preprocess import read_frames, sample_indices, square_crop
from gsrepro.synth import generate, get_preset
from gsrepro.testing import make_example_tree, make_face_video
from gsrepro.train import train

N_FRAMES = 24   # frames of each test video: fewer than the default 32 sampled, so every frame is scored


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    "A CE-2 run of one epoch on a tiny SynthFF (mini backbone at 32 px); its data has no preprocess.json."
    root = tmp_path_factory.mktemp("predict_run")
    data = generate(root / "synth", get_preset("mini", n_pairs=8, image_size=32, frames=2, qualities=("c23",),
                                               celebdf_real=3, dfdc_pairs=1), workers=1, progress=False)
    cfg = TrainConfig.from_preset("mini", data=str(data), loss="ce2", epochs=1, image_size=32, batch_size=16, progress=False)
    train(cfg, root / "run")
    return root / "run"


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    "A DFDC-layout tree: four videos of a real face, two labelled fake, in test_videos/."
    return make_example_tree("dfdc", tmp_path_factory.mktemp("dfdc"), n_frames=N_FRAMES)


@pytest.fixture(scope="module")
def gsr(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "model.gsr"
    assert main(["export", str(run), "--out", str(out)]) == 0
    return out


def cli(capsys, *argv):
    "(exit code, stdout, stderr) of `gsrepro ARGV`."
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def predict(capsys, model, *inputs, out, extra=()):
    rc, stdout, err = cli(capsys, "predict", "--model", model, *inputs, "--out", out, "--device", "cpu", "--no-progress", *extra)
    assert rc == 0, err
    files = pd.read_csv(out, keep_default_na=False, na_values=[""])
    frames = pd.read_csv(Path(out).with_name(Path(out).stem + "_frames.csv"), keep_default_na=False, na_values=[""])
    return files, frames, stdout


def test_predict_equals_evaluate_on_preprocessed_crops(run, tree, tmp_path, capsys):
    assert cli(capsys, "preprocess", "dfdc", "--root", tree, "--out", tmp_path / "crops", "--videos", "test_videos",
               "--workers", 1, "--no-progress")[0] == 0
    run_copy = tmp_path / "run"                                        # evaluate writes scores.csv into the run
    shutil.copytree(run, run_copy)
    rc, _, err = cli(capsys, "evaluate", "--run", run_copy, "--data", tmp_path / "crops", "--bootstrap", 0,
                     "--device", "cpu", "--no-progress")
    assert rc == 0, err
    ev = pd.read_csv(run_copy / "scores.csv", dtype={"video_id": str})
    assert set(ev.test_set) == {"dfdc-orig"}

    files, frames, out = predict(capsys, run, tree / "test_videos", out=tmp_path / "pred/scores.csv")
    assert "PreprocessConfig defaults" in out and f"> {THRESHOLD}" in out
    assert list(files.columns) == list(FILE_COLUMNS) and list(frames.columns) == list(FRAME_COLUMNS)
    labels = pd.read_csv(tree / "labels.csv").set_index("filename").label
    frames["video_id"] = [f"dfdc/{'fake' if labels[Path(f).name] else 'real'}/{Path(f).stem}" for f in frames.file]
    scored = frames[frames.status == "ok"]
    assert len(scored) == len(ev) > 0 and (frames.status == "ok").all()
    both = ev.merge(scored, on=["video_id", "frame"], suffixes=("_evaluate", "_predict"), validate="one_to_one")
    assert len(both) == len(ev)                                        # the same frames of the same videos ...
    np.testing.assert_allclose(both.score_predict, both.score_evaluate, atol=1e-5, rtol=0)   # ... the same P(fake)
    # one row per video: the mean frame probability, as evaluation's video scores are computed
    assert files.status.tolist() == ["ok"] * 4 and files.n_faces.tolist() == [N_FRAMES] * 4
    mean = ev.groupby("video_id").score.mean()
    for _, row in files.iterrows():
        vid = f"dfdc/{'fake' if labels[Path(row.file).name] else 'real'}/{Path(row.file).stem}"
        assert abs(row.score - mean[vid]) < 1e-5
        assert row.label == ("fake" if row.score > THRESHOLD else "real")
    assert frames.groupby("file").frame.apply(list).tolist() == [sample_indices(N_FRAMES, 32)] * 4
    assert (frames.right > frames.left).all() and (frames.bottom > frames.top).all()


def test_exported_file_scores_like_its_run(run, gsr, tree, tmp_path, capsys):
    video = tree / "test_videos" / "aaqaifqrwn.mp4"
    _, by_run, _ = predict(capsys, run, video, out=tmp_path / "a.csv", extra=("--frames", 6))
    files, by_file, out = predict(capsys, gsr, video, out=tmp_path / "b.csv", extra=("--frames", 6))
    assert len(by_run) == 6
    pd.testing.assert_frame_equal(by_run, by_file)                      # identical, frame by frame
    assert f"model file {gsr}" in out
    with safe_open(str(gsr), framework="pt") as f: meta = {k: json.loads(v) for k, v in f.metadata().items()}
    assert set(meta) == set(GSR_KEYS)
    config, train_json = json.loads((run / "config.json").read_text()), json.loads((run / "train.json").read_text())
    assert meta["config"] == {**config, "data": "synth/manifest.csv", **dict.fromkeys(PATH_FIELDS)}
    assert meta["metrics"]["validation"] == {**train_json, "run_dir": "run"}
    assert meta["checkpoint"]["run"] == "run" and meta["data"]["name"] == "SynthFF-mini" and meta["data"]["synthetic"]
    assert meta["input"] == dict(size=32, mean=list(TrainConfig(**meta["config"]).input_mean),
                                 std=list(TrainConfig(**meta["config"]).input_std))
    assert meta["domain_names"] == ["real", "DF", "F2F", "FS", "NT"] and meta["crop"]["size"] == 320
    assert meta["crop_source"].startswith("PreprocessConfig defaults")


def test_files_that_cannot_be_scored_are_counted(run, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "wall.png"), cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (240, 320, 3), np.uint8), (0, 0), 6))
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "readme.txt").write_text("not an image\n")
    files, frames, out = predict(capsys, run, folder, out=tmp_path / "scores.csv")
    assert dict(zip(files.file.map(lambda f: Path(f).name), files.status)) == {
        "empty.jpg": "unreadable", "readme.txt": "not_media", "wall.png": "no_face"}
    assert files.score.isna().all() and (files.reason.str.len() > 0).all()
    assert frames.status.tolist() == ["no_face"] and frames.score.isna().all()
    assert "3 files: 0 scored" in out and "1 without a face, 1 unreadable, 1 not media" in out


def test_grad_cam_overlays(run, tree, tmp_path, capsys):
    video = tree / "test_videos" / "abarnvbtwb.mp4"
    _, frames, _ = predict(capsys, run, video, out=tmp_path / "s.csv", extra=("--frames", 3, "--cam", tmp_path / "cams"))
    names = sorted(p.name for p in (tmp_path / "cams").iterdir())
    assert names == [f"abarnvbtwb_{t:06d}.png" for t in sample_indices(N_FRAMES, 3)]
    assert sorted(Path(c).name for c in frames.cam) == names
    panel = cv2.imread(str(tmp_path / "cams" / names[0]))
    assert panel.shape[0] > 320 and panel.shape[1] > 2 * 320          # the full crop, its overlay beside it, a colour bar
    row = frames.iloc[0]                                                # the crop, cut again from the frame with its box
    (_, frame), = read_frames(video, [int(row.frame)])
    crop = square_crop(frame, (row.left, row.top, row.right, row.bottom), 1.3, 320)
    left, right = panel[-320:, :320].astype(int), panel[-320:, -320 - 52: -52].astype(int)
    assert np.abs(left - crop).mean() < 3 < np.abs(right - crop).mean()   # the original on the left, the tinted overlay beside it
    bar = panel[-320:, -46]                                             # the colour bar: red at the top (1), blue at the bottom (0)
    assert bar[0, 2] > 100 > bar[0, 0] and bar[-1, 0] > 100 > bar[-1, 2]


class WritesMarker:
    "Unpickling this writes `marker`: what a malicious checkpoint does."
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (Path.write_text, (Path(self.marker), "code ran"))


def test_a_pickle_that_runs_code_is_refused(run, tree, tmp_path, capsys):
    armed = tmp_path / "armed.pt"
    torch.save(WritesMarker(tmp_path / "proof"), armed)
    torch.load(armed, weights_only=False)                              # plain unpickling runs it: the payload is real
    assert (tmp_path / "proof").exists()

    evil, marker = tmp_path / "evil.pt", tmp_path / "marker"
    torch.save(WritesMarker(marker), evil)
    run_dir = tmp_path / "evil_run"                                    # the same file as a run's best.pt
    shutil.copytree(run, run_dir)
    shutil.copy(evil, run_dir / "best.pt")
    video = tree / "test_videos" / "aaqaifqrwn.mp4"
    for argv in (["predict", "--model", evil, video], ["predict", "--model", run_dir, video], ["export", run_dir, "--out", tmp_path / "m.gsr"]):
        rc, _, err = cli(capsys, *argv, *(["--out", tmp_path / "x.csv"] if argv[0] == "predict" else []))
        assert rc == 2 and err.count("\n") == 1 and err.startswith(f"gsrepro {argv[0]}: error: "), err
        assert not marker.exists()
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "m.gsr").exists()


def test_broken_model_files_are_one_line(gsr, tree, tmp_path, capsys):
    blob = gsr.read_bytes()
    edited = bytearray(blob)
    edited[-3] ^= 0x55
    cases = {"truncated.gsr": (blob[: len(blob) * 2 // 3], "truncated"), "edited.gsr": (bytes(edited), "digest"),
             "empty.gsr": (b"", "not a safetensors file"), "text.gsr": (b"hello\n", "not a safetensors file")}
    video = tree / "test_videos" / "aaqaifqrwn.mp4"
    for name, (data, says) in cases.items():
        (tmp_path / name).write_bytes(data)
        rc, _, err = cli(capsys, "predict", "--model", tmp_path / name, video, "--out", tmp_path / "x.csv")
        assert rc == 2 and err.count("\n") == 1 and says in err, (name, err)
    rc, _, err = cli(capsys, "predict", "--model", tmp_path / "nothing.gsr", video, "--out", tmp_path / "x.csv")
    assert rc == 2 and "no model at" in err
    rc, _, err = cli(capsys, "predict", "--model", gsr, tmp_path / "missing.mp4", "--out", tmp_path / "x.csv")
    assert rc == 2 and "no such file or folder" in err
    assert not (tmp_path / "x.csv").exists()


def test_help_names_the_columns(capsys):
    with pytest.raises(SystemExit): main(["predict", "--help"])
    text = capsys.readouterr().out
    assert all(c in text for c in FILE_COLUMNS + FRAME_COLUMNS) and f"score > {THRESHOLD}" in text
    with pytest.raises(SystemExit): main(["export", "--help"])
    assert "--checkpoint" in capsys.readouterr().out


WARNING = "warning: this model was trained on SynthFF-mini"


def test_a_synthff_model_says_so_on_every_run(run, gsr, tree, tmp_path, capsys):
    "The run is trained on a (tiny) SynthFF: predict from the run or its model file, and export, print the warning line once."
    video = tree / "test_videos" / "aaqaifqrwn.mp4"
    for model in (run, gsr):
        files, _, out = predict(capsys, model, video, out=tmp_path / "s.csv", extra=("--frames", 2))
        lines = out.splitlines()
        assert sum(line.startswith(WARNING) for line in lines) == 1, out
        assert "mean nothing on real videos or photos" in out and "trained on SynthFF-mini" in lines[0]
        assert files.trained_on.tolist() == ["SynthFF-mini"]         # every result names the training data
    rc, out, err = cli(capsys, "export", run, "--out", tmp_path / "m.gsr")
    assert rc == 0 and sum(line.startswith(WARNING) for line in out.splitlines()) == 1, out
    auc = json.loads((run / "train.json").read_text())["best_val_auc"]
    assert f"validation AUC {auc:.4f};" in out                          # rounded


def test_the_model_file_holds_no_path_of_this_machine(run, gsr):
    with safe_open(str(gsr), framework="pt") as f: header = json.dumps(f.metadata())
    for folder in (run.parent, run.parent.resolve(), Path.home(), Path.cwd()):
        assert str(folder) not in header, folder
    with safe_open(str(gsr), framework="pt") as f: meta = {k: json.loads(v) for k, v in f.metadata().items()}
    assert meta["data"]["manifest"] == meta["config"]["data"] == "synth/manifest.csv"


def test_decoder_messages_stay_off_the_terminal(run, tree, tmp_path, capfd):
    "A cut video, a text file named .mp4 and a cut JPEG: OpenCV, ffmpeg and libjpeg complain on the process's stderr."
    folder = tmp_path / "broken"
    folder.mkdir()
    blob = (tree / "test_videos" / "aaqaifqrwn.mp4").read_bytes()
    (folder / "cut.mp4").write_bytes(blob[: len(blob) // 2])
    (folder / "text.mp4").write_text("not a video\n")
    jpg = cv2.imencode(".jpg", np.full((64, 64, 3), 90, np.uint8))[1].tobytes()
    (folder / "cut.jpg").write_bytes(jpg[: len(jpg) // 2])
    capfd.readouterr()
    assert main(["predict", "--model", str(run), str(folder), "--out", str(tmp_path / "s.csv"), "--device", "cpu",
                 "--no-progress"]) == 0
    out, err = capfd.readouterr()
    assert err == "", err                                               # nothing on the terminal's stderr
    files = pd.read_csv(tmp_path / "s.csv", keep_default_na=False).set_index("file")
    reasons = {Path(f).name: r for f, r in files.reason.items()}
    assert files.status.tolist() == ["unreadable"] * 3
    assert "decoder: Premature end of JPEG file" in reasons["cut.jpg"], reasons
    assert all("decoder: " in r for r in reasons.values()), reasons   # each file's decoder message, in its row
