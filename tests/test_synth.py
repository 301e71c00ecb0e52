"SynthFF: FF++ pairing and splits, determinism, overwrite rules, manipulations, the CLI."
import contextlib
import io

import numpy as np
import pandas as pd
import pytest

from gsrepro.cli import main
from gsrepro.manifest import read_manifest
from gsrepro.synth import (PRESETS, _inner_face, ff_split_pairs, generate, get_preset, manipulate, render_background,
                           render_frames, video_spec)
from gsrepro.vocab import FF_METHODS

TINY = get_preset("mini", n_pairs=8, frames=3, celebdf_real=4, dfdc_pairs=2)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "tiny"
    return read_manifest(generate(out, TINY, seed=3, workers=1, progress=False))


def test_split_proportions_follow_ffpp():
    for n, expected in ((500, (360, 70, 70)), (112, (80, 16, 16)), (8, (6, 1, 1))):
        s = ff_split_pairs(n, seed=0)
        assert tuple(len(s[k]) for k in ("train", "val", "test")) == expected
        ids = [i for v in s.values() for p in v for i in p]
        assert sorted(ids) == list(range(2 * n))                      # each source video in exactly one pair
    with pytest.raises(ValueError, match="too small"): ff_split_pairs(2, 0)


def test_mini_preset_has_30_test_source_videos():
    assert 2 * len(ff_split_pairs(PRESETS["mini"].n_pairs, 0)["test"]) >= 30


def test_pairs_keep_reals_and_both_fakes_in_one_split(tiny):
    ff = tiny[(tiny.dataset == "synthff") & (tiny.quality == "c23")]
    video = ff["video_id"].str.split("/").str[-1].str.split("@").str[0]
    split_of_real = dict(zip(video[ff.method == "real"], ff.loc[ff.method == "real", "split"]))
    pairs = {s: ff_split_pairs(TINY.n_pairs, 3)[s] for s in ("train", "val", "test")}
    for split, plist in pairs.items():
        for a, b in plist:
            a, b = f"{a:03d}", f"{b:03d}"
            assert split_of_real[a] == split_of_real[b] == split
            for m in FF_METHODS:
                for name in (f"{a}_{b}", f"{b}_{a}"):
                    rows = ff[(ff.method == m) & (video == name)]
                    assert len(rows) == TINY.frames and set(rows.split) == {split}
    assert set(ff[ff.method == "DF"].source_id) == set(split_of_real)   # every video is a source once
    real_split = ff[ff.method == "real"].groupby("split")["identity"].apply(set)
    assert not (real_split["train"] & real_split["test"]) and not (real_split["val"] & real_split["test"])


def test_layout_qualities_and_cross_sets(tiny):
    counts = tiny.groupby(["dataset", "quality"]).size().to_dict()
    n_ff = 2 * TINY.n_pairs * 5 * TINY.frames
    assert counts == {("synthff", "raw"): n_ff, ("synthff", "c23"): n_ff, ("synthff", "c40"): n_ff,
                      ("synth-celebdf", "c23"): TINY.celebdf_real * 3 * TINY.frames,
                      ("synth-dfdc", "c23"): 4 * TINY.dfdc_pairs * TINY.frames}
    assert set(tiny[tiny.dataset != "synthff"].split) == {"test"}
    assert tiny[tiny.quality == "raw"].path.str.endswith(".png").all()
    assert tiny[tiny.quality != "raw"].path.str.endswith(".jpg").all()
    root = tiny.attrs["root"]
    assert all((root / p).is_file() for p in tiny.path)
    assert {"identity", "background"} <= set(tiny.columns)
    assert tiny.background.nunique() < tiny.identity.nunique()        # scenes are shared between some videos
    celeb = tiny[tiny.dataset == "synth-celebdf"]
    assert not set(celeb.identity) & set(tiny[tiny.dataset == "synthff"].identity)


def test_same_seed_same_bytes_other_seed_other_data(tiny, tmp_path):
    again = read_manifest(generate(tmp_path / "b", TINY, seed=3, workers=2, progress=False))
    pd.testing.assert_frame_equal(again, tiny, check_like=False)
    a, b = tiny.attrs["root"], again.attrs["root"]
    assert all((a / p).read_bytes() == (b / p).read_bytes() for p in tiny.path)
    other = read_manifest(generate(tmp_path / "c", TINY.replace(n_pairs=6), seed=4, workers=1, progress=False))
    same = [p for p in other.path if (a / p).is_file() and (a / p).read_bytes() == (other.attrs["root"] / p).read_bytes()]
    assert not same


def test_overwrite_rules(tmp_path):
    cfg = TINY.replace(n_pairs=6, frames=1, qualities=("c23",))
    m = generate(tmp_path / "d", cfg, seed=0, workers=1, progress=False)
    stamp = m.stat().st_mtime_ns
    assert generate(tmp_path / "d", cfg, seed=0, progress=False).stat().st_mtime_ns == stamp   # identical: a no-op
    with pytest.raises(FileExistsError, match="seed 0.*pass --force"): generate(tmp_path / "d", cfg, seed=1, progress=False)
    generate(tmp_path / "d", cfg, seed=1, force=True, workers=1, progress=False)
    assert read_manifest(m).equals(read_manifest(generate(tmp_path / "e", cfg, seed=1, workers=1, progress=False)))
    (tmp_path / "f").mkdir(); (tmp_path / "f" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a complete SynthFF dataset"): generate(tmp_path / "f", cfg, progress=False)
    generate(tmp_path / "f", cfg, force=True, workers=1, progress=False)
    assert (tmp_path / "f" / "notes.txt").read_text() == "mine"       # --force removes only what SynthFF writes
    with pytest.raises(ValueError, match="seed"): generate(tmp_path / "g", cfg, seed=-1)
    with pytest.raises(ValueError, match="unknown SynthConfig field"): get_preset("mini", pairs=3)
    with pytest.raises(ValueError, match="unknown SynthFF preset"): get_preset("huge")


@pytest.mark.parametrize("kind", [*FF_METHODS, "swap"])
def test_manipulations_stay_inside_the_face(kind):
    cfg, size = PRESETS["mini"], 64
    specs = [video_spec(0, "synthff", i, 4, 4) for i in (0, 1)]
    rendered = [render_frames(s["ident"], s["pose"], s["expr"], s["bg"], render_background(s["bg"], size), size) for s in specs]
    (tgt_frames, tgt_geom), (src_frames, src_geom) = rendered
    fake = manipulate(kind, specs[0], tgt_frames, tgt_geom, specs[1], src_frames, src_geom, cfg, np.random.default_rng(0))
    changed = np.abs(fake - tgt_frames).max(-1) > 0.5                                       # (F, H, W)
    face = _inner_face(tgt_geom, feather_px=0.0, scale=1.0, shrink_px=-6) > 0
    assert changed.mean() > 0.01                                                            # something was forged ...
    assert not (changed & ~face).any()                                                      # ... inside the face only


def test_cli(tmp_path):
    err = io.StringIO()
    with contextlib.redirect_stderr(err): code = main(["synth", "--out", str(tmp_path), "--seed", "-2", "--quiet"])
    assert code == 2 and err.getvalue().count("\n") == 1 and "seed" in err.getvalue()
    with contextlib.redirect_stdout(io.StringIO()), pytest.raises(SystemExit) as e: main(["synth", "--help"])
    assert e.value.code == 0
