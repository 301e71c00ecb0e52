"""DeepfakeBench's preprocessed data, end to end: a small tree in DeepfakeBench's own layout (FF++ c23 and c40 with the
official split files at its root, Celeb-DF v2 with its test list, DFDC test with labels.csv) and the JSON files its
`rearrange.py` writes, quirks included; `gsrepro import deepfakebench`; then `gsrepro reproduce --preset paper` with tiny
`--set` overrides: every printed cell of Tables 1 and 2 is measured, the notes say where the crops came from, and no
Celeb-DF test video is in any training set. Moving the tree and importing with `--root` works; a path out of the root is
one line naming the JSON entry."""
import json
import math
import os
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest

from gsrepro.cli import main
from gsrepro.manifest import read_manifest
from gsrepro.testing import make_deepfakebench_tree

TINY = dict(backbone="mini", pretrained="false", epochs=1, image_size=32, batch_size=8, queue_size=64, n_clusters=4,
            adbm_k=8, simmim="mini", num_workers=0, progress="false")
REAL_SOURCES = {"FF++ c23", "FF++ c40", "Celeb-DF v2 test list", "DFDC test set"}
JSONS = ("FaceForensics++", "DeepFakeDetection", "FaceShifter", "Celeb-DF-v2", "DFDC")


def run_import(jsons, out, *extra) -> int:
    return main(["import", "deepfakebench", *[f for j in jsons for f in ("--json", str(j))], "--out", str(out), *extra])


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_deepfakebench_tree(tmp_path_factory.mktemp("dfb"))


def test_import_then_tables_1_and_2_on_the_imported_folders(tree, tmp_path, capsys):
    jsons = tree
    t0 = time.perf_counter()
    assert run_import([jsons[k] for k in JSONS], tmp_path / "gs", "--frames", "2") == 0
    printed = capsys.readouterr().out
    assert "left out: Celeb-DF train: test-list videos also listed under train (never trained on): 3" in printed
    data = {k: str(tmp_path / "gs" / k) for k in ("ffpp", "celebdf", "dfdc")}
    assert printed.splitlines()[-1] == f"next: gsrepro reproduce --preset paper --ffpp {data['ffpp']} --celebdf {data['celebdf']} --dfdc {data['dfdc']}"
    flags = [f for k, v in data.items() for f in (f"--{k}", v)]
    assert main(["reproduce", "--preset", "paper", *flags, "--device", "cpu", "--out", str(tmp_path / "out"), "--runs",
                 str(tmp_path / "runs"), "--only", "table1,table2", *[f"--set={k}={v}" for k, v in TINY.items()]]) == 0
    print(f"import + paper-preset tables 1-2: {time.perf_counter() - t0:.0f} s")
    for name in ("table1", "table2"):
        rows = pd.read_csv(tmp_path / "out" / f"{name}.csv", keep_default_na=False, na_values=[""])
        own, measured = rows[(rows.source == "paper") & rows.quoted_from.isna()], rows[rows.source != "paper"]
        assert set(measured.source) <= REAL_SOURCES, (name, set(measured.source))
        have = {(m, c, k) for m, c, k, v in zip(measured.method, measured.column, measured.metric, measured.value) if math.isfinite(v)}
        assert not {(m, c, k) for m, c, k in zip(own.method, own.column, own.metric)} - have, name
        assert "DeepfakeBench's preprocessed frames (32 px" in (tmp_path / "out" / f"{name}.md").read_text()
    celebdf = read_manifest(data["celebdf"])
    assert set(celebdf.split) == {"test"}
    celebdf_videos = {v.split("/")[-1] for v in celebdf.video_id}
    celebdf_files = {os.path.realpath(celebdf.attrs["root"] / p) for p in celebdf.path}
    configs = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/config.json")]
    assert len(configs) >= 4
    for cfg in configs:
        train = read_manifest(cfg["data"])
        train = train[(train.dataset == cfg["dataset"]) & train.split.isin(["train", "val"])]
        assert len(train) and not {v.split("/")[-1] for v in train.video_id} & celebdf_videos
        assert not {os.path.realpath(train.attrs["root"] / p) for p in train.path} & celebdf_files


def test_moved_tree_imports_with_root_and_a_link_out_of_it_is_one_line(tmp_path, capsys):
    jsons = make_deepfakebench_tree(tmp_path / "old")
    assert run_import([jsons[k] for k in JSONS], tmp_path / "gs") == 0
    before = read_manifest(tmp_path / "gs" / "ffpp")
    assert before.attrs["root"] == (tmp_path / "old").resolve()
    moved = tmp_path / "elsewhere"
    shutil.move(tmp_path / "old", moved)                                      # the JSON files still name the old place
    moved_jsons = [moved / "dataset_json" / jsons[k].name for k in JSONS]
    with pytest.raises(FileNotFoundError, match="the data moved. import it again with --root"):
        read_manifest(tmp_path / "gs" / "ffpp")
    capsys.readouterr()
    assert run_import(moved_jsons, tmp_path / "gs2") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "if the data moved since rearrange.py ran, pass --root with the folder that now holds FaceForensics++" in err[0], err
    assert run_import(moved_jsons, tmp_path / "gs2", "--root", str(moved)) == 0
    m = read_manifest(tmp_path / "gs2" / "ffpp")
    assert m.attrs["root"] == moved.resolve() and all((moved / p).is_file() for p in m.path)
    assert m.equals(before)                                                   # the same rows, re-anchored
    victim = moved / "Celeb-DF-v2" / "Celeb-real" / "frames" / "id1_0001" / "000.png"
    victim.unlink()
    (tmp_path / "private.png").write_bytes(b"not part of the data")
    victim.symlink_to(tmp_path / "private.png")
    capsys.readouterr()
    assert run_import(moved_jsons, tmp_path / "gs3", "--root", str(moved)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gsrepro import: error: Celeb-DF-v2.json: Celeb-DF-v2 > CelebDFv2_real > test > id1_0001: frame "), err
    assert "outside the root" in err[0] and not (tmp_path / "gs3").exists()
    bad = json.loads(moved_jsons[-1].read_text())
    bad["DFDC"]["DFDC_Fake"]["test"]["abarnvbtwb"]["frames"][0] = "/etc/passwd"
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    assert run_import([tmp_path / "bad.json"], tmp_path / "gs4", "--root", str(moved)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["gsrepro import: error: bad.json: DFDC > DFDC_Fake > test > abarnvbtwb: frame '/etc/passwd' is not where DeepfakeBench "
                   "puts this video's frames (…/DFDC/test/frames/abarnvbtwb/<n>.png)"], err
