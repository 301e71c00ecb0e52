"FeatureQueue (incl. the 2-process gloo gather), A-DBM confidence (Eq. 5) and weights (Eq. 6)."
import math
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from gsrepro.adbm import FeatureQueue, adbm_confidence, adbm_start_epoch, adbm_weights, all_gather_rows


def _gather_worker(rank, world, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        q = FeatureQueue(size=6, dim=3)
        # rank 0 has 3 rows, rank 1 has 2 rows (uneven, like a last batch); features encode (rank, row)
        for step in range(2):
            n = 3 - rank
            z = torch.tensor([[rank, i, step] for i in range(n)], dtype=torch.float32)
            q.enqueue(z, torch.full((n,), rank), torch.arange(n) + 10 * rank)
        torch.save(q.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
        assert all_gather_rows(torch.tensor([[rank]])).flatten().tolist() == list(range(world))
    finally:
        dist.destroy_process_group()


def test_enqueue_gathers_every_rank(tmp_path):
    mp.spawn(_gather_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    s0, s1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for k in s0: assert torch.equal(s0[k], s1[k]), k                       # every rank holds the same queue
    # 5 rows per step, 2 steps = 10 rows into 6 slots: step 1 overwrote slots 5, 0, 1, 2, 3
    step0 = [[0, 0, 0], [0, 1, 0], [0, 2, 0], [1, 0, 0], [1, 1, 0]]
    step1 = [[0, 0, 1], [0, 1, 1], [0, 2, 1], [1, 0, 1], [1, 1, 1]]
    expected = torch.tensor([step1[1], step1[2], step1[3], step1[4], step0[4], step1[0]], dtype=torch.float32)
    assert torch.equal(s0["z"], expected)
    assert s0["domain"].tolist() == [0, 0, 1, 1, 1, 0]
    assert s0["cluster"].tolist() == [1, 2, 10, 11, 11, 0]
    assert (int(s0["ptr"]), int(s0["filled"])) == (4, 6)


def test_queue_circular_order_and_bank():
    q = FeatureQueue(size=4, dim=2)
    for i in range(6):
        q.enqueue(torch.full((1, 2), float(i)), torch.tensor([i % 3]), torch.tensor([i]))
    z, d, c = q.bank()
    assert z[:, 0].tolist() == [4.0, 5.0, 2.0, 3.0] and c.tolist() == [4, 5, 2, 3] and d.tolist() == [1, 2, 2, 0]
    assert len(q) == 4 and int(q.ptr) == 2


def test_queue_rejects_bad_sizes():
    with pytest.raises(ValueError, match="size and dim"):
        FeatureQueue(0, 4)


def test_confidence_own_domain_beats_other_domains():
    gen = torch.Generator().manual_seed(3)
    K1, per = 5, 60
    centres = F.normalize(torch.randn(K1, 32, generator=gen), dim=1)
    bank_dom = torch.arange(K1).repeat_interleave(per)
    bank_z = F.normalize(centres[bank_dom] + 0.15 * torch.randn(K1 * per, 32, generator=gen), dim=1)
    z = centres.repeat(K1, 1)                                               # every centre ...
    dom = torch.arange(K1).repeat_interleave(K1)                            # ... labelled with every domain
    c = adbm_confidence(z, dom, bank_z, bank_dom, k=55).view(K1, K1)        # [label, position]
    own = c.diagonal()
    assert (own > 0.95).all()
    assert (c < own[:, None] - 0.9).sum() == K1 * (K1 - 1)                  # off-diagonal all far lower
    assert ((c >= 0) & (c <= 1 + 1e-6)).all()


def test_confidence_alpha_weights_real_neighbours_more():
    # forgery anchor, k = 2 neighbours: one own-domain, one foreign at the same similarity
    bank = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    z = torch.tensor([[1.0, 0.0]])
    with_real = adbm_confidence(z, torch.tensor([2]), bank, torch.tensor([2, 0]), alpha_real=1.0, alpha_forgery=0.5)
    with_fake = adbm_confidence(z, torch.tensor([2]), bank, torch.tensor([2, 3]), alpha_real=1.0, alpha_forgery=0.5)
    assert math.isclose(with_real.item(), 1 / 2, rel_tol=1e-6) and math.isclose(with_fake.item(), 1 / 1.5, rel_tol=1e-6)


def test_confidence_k_larger_than_queue():
    bank, dom = F.normalize(torch.randn(7, 8), dim=1), torch.randint(0, 3, (7,))
    z = F.normalize(torch.randn(4, 8), dim=1)
    d = torch.randint(0, 3, (4,))
    assert torch.allclose(adbm_confidence(z, d, bank, dom, k=55), adbm_confidence(z, d, bank, dom, k=7))


def test_weights_properties():
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        c = torch.rand(16, generator=gen)
        for T in (0.1, 1.0, 5.0):
            w = adbm_weights(c, T)
            assert math.isclose(w.sum().item(), 1.0, rel_tol=1e-5)
            order = torch.argsort(c)                                        # increasing confidence ...
            assert (w[order].diff() <= 1e-7).all()                          # ... non-increasing weight


def test_start_epoch_scales():
    assert adbm_start_epoch(60) == 10 and adbm_start_epoch(120) == 20 and adbm_start_epoch(6) == 1


def test_confidence_accepts_the_shared_similarity():
    bank, dom = F.normalize(torch.randn(40, 8), dim=1), torch.randint(0, 3, (40,))
    z, d = F.normalize(torch.randn(6, 8), dim=1), torch.randint(0, 3, (6,))
    assert torch.equal(adbm_confidence(z, d, bank, dom, k=5), adbm_confidence(z, d, bank, dom, k=5, sim=z @ bank.T))
