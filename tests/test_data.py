"FaceDataset, frame sampling, domain labels, corrupt files, balanced sampling and the loader."
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from gsrepro.data import (Augment, BalancedSampler, FaceDataset, domain_names_for, evenly_spaced, make_loader,
                          sample_frames)
from gsrepro.manifest import read_manifest, write_manifest


def make_manifest(folder, methods=("real", "DF", "F2F", "FS", "NT"), videos=("000", "001", "002"), frames=6, size=12):
    "Random images in the manifest layout; video 002 is the test split."
    rng = np.random.default_rng(0)
    rows = []
    for method in methods:
        for v in videos:
            name = v if method == "real" else f"{v}_{videos[(videos.index(v) + 1) % len(videos)]}"
            for f in range(frames):
                rel = f"{method}/{name}/{f:03d}.png"
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / rel)
                rows.append(dict(path=rel, dataset="toy", method=method, label=int(method != "real"), quality="c23",
                                 split="test" if v == "002" else "train", video_id=f"toy/{method}/{name}",
                                 frame=f * 3, source_id=name[-3:]))
    return write_manifest(pd.DataFrame(rows), folder / "manifest.csv")


@pytest.fixture()
def manifest(tmp_path):
    return make_manifest(tmp_path)


def test_domain_order_is_canonical_then_sorted():
    assert domain_names_for(["NT", "real", "FS", "DF", "F2F"]) == ["real", "DF", "F2F", "FS", "NT"]
    assert domain_names_for(["zeta", "NT", "alpha"]) == ["real", "NT", "alpha", "zeta"]
    with pytest.raises(ValueError, match="duplicates"): domain_names_for(["DF"], domain_order=["DF", "DF"])


def test_domains_of_a_leave_one_out_set(manifest):
    ds = FaceDataset(manifest, split="train", methods=["DF", "FS", "NT"])
    assert ds.domain_names == ["real", "DF", "FS", "NT"]
    for method, domain in zip(ds.frame["method"], ds.domains):
        assert domain == ds.domain_names.index(method)
    item = ds[len(ds) - 1]
    assert ds.frame.loc[item["index"], "method"] == ds.domain_names[item["domain"]]
    pinned = FaceDataset(manifest, split="test", methods=["NT"], domain_order=["DF", "F2F", "FS", "NT"])
    assert pinned.domain_names == ["real", "DF", "F2F", "FS", "NT"] and set(pinned.domains) == {0, 4}


def test_index_is_the_manifest_row(manifest):
    df = read_manifest(manifest)
    ds = FaceDataset(manifest, split="test", methods=["F2F"], frames_per_video=2)
    for i in range(len(ds)):
        item = ds[i]
        row = df.loc[item["index"]]
        assert (row["split"], row["label"]) == ("test", item["label"])


def test_evenly_spaced_frames():
    assert evenly_spaced(10, 1).tolist() == [0]
    assert evenly_spaced(10, 2).tolist() == [0, 9]
    assert evenly_spaced(32, 8).tolist() == [0, 4, 9, 13, 18, 22, 27, 31]
    assert evenly_spaced(5, 9).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError): evenly_spaced(5, 0)


def test_frame_sampling_per_video(manifest):
    ds = FaceDataset(manifest, frames_per_video=3)
    per_video = ds.frame.groupby("video_id")["frame"].apply(list)
    assert all(frames == [0, 6, 15] for frames in per_video)          # frames 0,3,..,15 -> positions 0, 2, 5
    shuffled = read_manifest(manifest).sample(frac=1, random_state=0)
    assert sorted(sample_frames(shuffled, 3).index) == sorted(ds.frame.index)  # order of the rows does not matter


def test_filters_reject_unknown_names(manifest):
    with pytest.raises(ValueError, match="no rows with method XX"): FaceDataset(manifest, methods=["XX"])
    with pytest.raises(ValueError, match="no rows with quality c40"): FaceDataset(manifest, quality="c40")
    with pytest.raises(ValueError, match="on_error"): FaceDataset(manifest, on_error="ignore")
    assert len(FaceDataset(manifest, quality=["c23"], dataset="toy", split=["train", "test"])) == 5 * 3 * 6


def test_missing_image_is_named(manifest):
    (manifest.parent / "FS/001_002/004.png").unlink()
    with pytest.raises(FileNotFoundError, match="FS/001_002/004.png"): FaceDataset(manifest)
    with pytest.warns(UserWarning, match="1 of 90 images missing"):
        ds = FaceDataset(manifest, on_error="skip")
    assert len(ds) == 89 and len(ds.skipped) == 1


@pytest.mark.parametrize("content", [b"", b"garbage", "truncated"])
def test_corrupt_image_is_named_or_skipped(manifest, content):
    bad = manifest.parent / "NT/000_001/002.png"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2] if content == "truncated" else content)
    ds = FaceDataset(manifest, split="train")
    i = int(np.flatnonzero(ds.frame["path"].to_numpy() == "NT/000_001/002.png")[0])
    with pytest.raises(ValueError, match="cannot decode image .*NT/000_001/002.png"): ds[i]
    ds = FaceDataset(manifest, split="train", on_error="skip")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches = list(make_loader(ds, batch_size=7, shuffle=False))
        ds[i]                                                           # a second failure: counted, no new warning
    assert len(caught) == 1 and "NT/000_001/002.png" in str(caught[0].message)
    assert sum(len(b["label"]) for b in batches) == len(ds) - 1
    assert ds.skipped == {int(ds.frame.index[i])}


def test_balanced_sampler_balances_and_splits_ranks():
    labels = np.array([0] * 20 + [1] * 80)
    drawn = labels[list(BalancedSampler(labels, num_samples=20_000, seed=1))]
    assert abs(drawn.mean() - 0.5) < 0.02
    ranks = [BalancedSampler(labels, num_samples=100, seed=3, rank=r, world_size=2) for r in (0, 1)]
    a, b = (list(s) for s in ranks)
    assert len(a) == len(b) == 50
    full = list(BalancedSampler(labels, num_samples=100, seed=3))
    assert sorted(a + b) == sorted(full)                              # the ranks share one global draw
    s = ranks[0]; s.set_epoch(5); e5 = list(s); s.set_epoch(5)
    assert list(s) == e5 and list(s) != e5                            # set_epoch pins; passes advance


def test_loader_batches_are_reproducible(manifest):
    ds = FaceDataset(manifest, augment=Augment(flip=0.5, jitter=0.1, jpeg=0.5))
    def batches():
        torch.manual_seed(0)
        return [b for b, _ in zip(make_loader(ds, batch_size=16, balanced=True, seed=4), range(3))]
    a, b = batches(), batches()
    for x, y in zip(a, b):
        assert torch.equal(x["index"], y["index"]) and torch.equal(x["image"], y["image"])
    assert a[0]["image"].shape == (16, 3, 12, 12) and a[0]["image"].dtype == torch.float32
    assert set(a[0]) == {"image", "label", "domain", "index"}
    plain = FaceDataset(manifest)
    x = plain[0]["image"]
    assert abs(float(x.mean())) < 1.0                                 # normalised, not 0..255
    assert FaceDataset(manifest, image_size=20)[0]["image"].shape == (3, 20, 20)


def test_a_dataframe_built_in_code_keeps_its_paths_inside_the_root(manifest):
    "A DataFrame never read by read_manifest (attrs['root'] set in code) gets the manifest's path rule."
    df = read_manifest(manifest)
    escape = "../" * 40 + "etc/passwd"                                 # resolves to /etc/passwd from any root
    evil = df.copy()
    evil.loc[5, "path"] = escape
    evil.attrs["root"] = df.attrs["root"]
    with pytest.raises(ValueError, match=r"row 7, column 'path': must stay inside the manifest's folder \(normalised"):
        FaceDataset(evil)
    with pytest.raises(ValueError, match="row 2, column 'path'"):
        FaceDataset(df.assign(path="/etc/passwd"), root=manifest.parent)
    # inside the root, written oddly: opened normalised (the kernel would refuse `nowhere/../x` itself)
    odd = FaceDataset(df.assign(path="nowhere/../" + df["path"]))
    assert odd.frame["path"].tolist() == df["path"].tolist() and odd[0]["image"].shape == (3, 12, 12)
