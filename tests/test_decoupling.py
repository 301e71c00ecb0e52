"SimMIM (mini and the paper's Swin-V2 encoder), features, faiss k-means, the cluster cache, pull/push sampling."
import os
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from gsrepro.decoupling import (SIMMIM_PRESETS, SimMIM, SimMIMConfig, cluster_cache_key, cluster_ids_for,
                                draw_from_sets, extract_features, kmeans_clusters, random_patch_mask,
                                sample_pull_push, simmim_pretrain)
from gsrepro.losses import pull_loss, push_loss

TINY = replace(SIMMIM_PRESETS["mini"], epochs=1, batch_size=8)


class RandomImages(Dataset):
    "Random-tensor stand-in for FaceDataset: dict items with 'image' (and 'index' unless with_index=False)."
    def __init__(self, n=24, size=64, with_index=True, seed=0):
        self.x = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))
        self.with_index = with_index
    def __len__(self): return len(self.x)
    def __getitem__(self, i):
        item = {"image": self.x[i], "label": i % 2, "domain": i % 3}
        if self.with_index: item["index"] = 2 * i                       # manifest rows need not be 0..n-1
        return item


def test_patch_mask_ratio_and_randomness():
    g = torch.Generator().manual_seed(0)
    m = random_patch_mask(2000, 8, 0.6, g)
    assert (m.sum((1, 2)) == 38).all()
    assert 0.55 < m.float().mean(0).min() and m.float().mean(0).max() < 0.65   # every patch masked ~60% of the time


def test_paper_encoder_swinv2_step():
    cfg = SimMIMConfig(encoder="swinv2_tiny_window8_256", image_size=64, mask_patch=8)
    model = SimMIM(cfg)                                                  # built offline, no weights downloaded
    assert (model.stride, model.feature_dim) == (32, 768)
    x = torch.randn(2, 3, 64, 64)
    loss = model(x, random_patch_mask(2, 8, 0.6))
    loss.backward()
    assert torch.isfinite(loss) and model.mask_token.grad.abs().sum() > 0
    assert model.features(x).shape == (2, 768)


def test_pretrain_resizes_and_extracts_in_order():
    ds = RandomImages(n=10, size=48)                                    # resized to 64 inside
    model = simmim_pretrain(ds, TINY, progress=False)
    assert len(model.losses) == 2 and all(np.isfinite(model.losses))
    feats, index = extract_features(model, ds, batch_size=4, progress=False)
    assert feats.shape == (10, 96) and index.tolist() == list(range(0, 20, 2))
    _, pos = extract_features(model, RandomImages(n=5, with_index=False), progress=False)
    assert pos.tolist() == list(range(5))
    with pytest.raises(ValueError, match="non-empty"):
        simmim_pretrain(RandomImages(n=0), TINY)


def test_kmeans_clamps_and_is_deterministic():
    x = np.random.default_rng(0).standard_normal((30, 8)).astype(np.float32)
    a, b = kmeans_clusters(x, 4, seed=3), kmeans_clusters(x, 4, seed=3)
    assert (a == b).all() and set(a.tolist()) == {0, 1, 2, 3}
    assert len(set(kmeans_clusters(x[:3], 500).tolist())) == 3


def test_cluster_cache_reuse_and_atomicity(tmp_path):
    rows = pd.DataFrame({"path": [f"{i}.png" for i in range(24)]})
    ds = RandomImages(n=24)
    ids = cluster_ids_for(ds, rows, 4, TINY, cache_dir=tmp_path, progress=False)
    assert ids.shape == (47,) and (ids[1::2] == -1).all() and set(ids[::2].tolist()) == {0, 1, 2, 3}
    key = cluster_cache_key(rows, TINY)
    assert sorted(os.listdir(tmp_path)) == [f"{key}-k4.npz", f"{key}.npz"]   # no temporary files left
    with np.load(tmp_path / f"{key}.npz") as z:
        assert z["features"].shape == (24, 96) and len(z["simmim_loss"]) == 3

    class Boom(RandomImages):
        def __getitem__(self, i): raise AssertionError("recomputed instead of using the cache")
    assert (cluster_ids_for(Boom(), rows, 4, TINY, cache_dir=tmp_path) == ids).all()
    # a list of paths works as the row description too, and gives its own key
    assert cluster_cache_key([f"{i}.png" for i in range(24)], TINY) != key


def test_sampling_respects_sets_and_sizes():
    gen = torch.Generator().manual_seed(0)
    B, N = 16, 300
    dom, clu = torch.randint(0, 4, (B,), generator=gen), torch.randint(0, 8, (B,), generator=gen)
    bd, bc = torch.randint(0, 4, (N,), generator=gen), torch.randint(0, 8, (N,), generator=gen)
    s = sample_pull_push(dom, clu, bd, bc, n_pull=10, n_push=10, n_pos=5, generator=gen)
    assert s.pull_idx.shape == (B, 10) and s.pos_idx.shape == (B, 5)
    for i in range(B):
        pull_set = ((bd == dom[i]) & (bc != clu[i])).nonzero().flatten()
        push_set = ((bd != dom[i]) & (bc == clu[i])).nonzero().flatten()
        got_pull = s.pull_idx[i][s.pull_valid[i]]
        got_push = s.push_idx[i][s.push_valid[i]]
        assert len(got_pull) == min(10, len(pull_set)) and set(got_pull.tolist()) <= set(pull_set.tolist())
        assert len(got_push) == min(10, len(push_set)) and set(got_push.tolist()) <= set(push_set.tolist())
        assert len(set(got_push.tolist())) == len(got_push)
    again = sample_pull_push(dom, clu, bd, bc, n_pos=5, generator=torch.Generator().manual_seed(0))
    assert again.pull_idx.shape == (B, 10)


def test_sampled_sets_feed_the_losses():
    gen = torch.Generator().manual_seed(1)
    B, N, d = 8, 64, 16
    bank = F.normalize(torch.randn(N, d, generator=gen), dim=1)
    bd, bc = torch.randint(0, 3, (N,), generator=gen), torch.randint(0, 4, (N,), generator=gen)
    z = F.normalize(torch.randn(B, d, generator=gen), dim=1).requires_grad_(True)
    dom, clu = torch.randint(0, 3, (B,), generator=gen), torch.randint(0, 4, (B,), generator=gen)
    s = sample_pull_push(dom, clu, bd, bc, generator=gen)
    guides = F.normalize(torch.randn(3, d, generator=gen), dim=1)
    loss = push_loss(z, guides[dom], bank, s.pos_idx, s.pos_valid, s.push_idx, s.push_valid) + \
        pull_loss(z, dom, bank, bd, s.pull_idx, s.pull_valid)
    loss.backward()
    assert torch.isfinite(loss) and loss > 0 and z.grad.abs().sum() > 0
    # empty queue: both losses are 0, still differentiable
    e = sample_pull_push(dom, clu, bd[:0], bc[:0])
    zero = push_loss(z, guides[dom], bank[:0], e.pos_idx, e.pos_valid, e.push_idx, e.push_valid) + \
        pull_loss(z, dom, bank[:0], bd[:0], e.pull_idx, e.pull_valid)
    assert zero.item() == 0.0 and zero.requires_grad


def test_draw_from_sets_no_members():
    idx, ok = draw_from_sets(torch.zeros(3, 20, dtype=torch.bool), 10)
    assert idx.shape == (3, 10) and not ok.any()
