"Eq. 3-4 and 7-8: hand-computed values and properties of every loss, and the Hungarian matching."
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gsrepro.guidespace import closed_form_guides
from gsrepro.losses import (GUIDE_FORMS, ce_k1_loss, domain_means, guide_geometry, guide_landscape, guide_loss,
                            hungarian_match, kcl_loss, matched_guides, pull_loss, push_loss, weighted_bce)

G = torch.tensor(closed_form_guides(64, 4, 120).guides, dtype=torch.float32)   # (5, 64)


def test_weighted_bce_hand_and_default_weights():
    logits, labels = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([1, 1, 0])
    per = [math.log(1 + math.exp(-2.0)), math.log(1 + math.exp(1.0)), math.log(1 + math.exp(0.5))]
    assert math.isclose(weighted_bce(logits, labels).item(), sum(per) / 3, rel_tol=1e-6)
    w = torch.tensor([0.5, 0.25, 0.25])
    assert math.isclose(weighted_bce(logits, labels, w).item(), 0.5 * per[0] + 0.25 * (per[1] + per[2]), rel_tol=1e-6)
    assert weighted_bce(logits.bfloat16(), labels).dtype == torch.float32


def test_ce_k1_matches_torch_and_weights():
    gen = torch.Generator().manual_seed(0)
    logits, dom = torch.randn(6, 5, generator=gen), torch.tensor([0, 1, 2, 3, 4, 0])
    assert torch.allclose(ce_k1_loss(logits, dom), F.cross_entropy(logits, dom))
    w = torch.zeros(6); w[2] = 1.0
    assert torch.allclose(ce_k1_loss(logits, dom, w), F.cross_entropy(logits[2:3], dom[2:3]))


def test_guide_loss_hand_value():
    # 2 guides at 90°; z on guide 0 at angle 60° from it
    g = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z = torch.tensor([[0.5, math.sqrt(3) / 2]])
    tau = 0.5
    assert math.isclose(guide_loss(z, torch.tensor([0]), g).item(), 1 - 0.5, rel_tol=1e-6)            # pull: 1 − cos 60°
    expected = -(0.5 / tau - math.log(math.exp(0.5 / tau) + math.exp(math.sqrt(3) / 2 / tau)))      # softmax over the guides
    assert math.isclose(guide_loss(z, torch.tensor([0]), g, tau=tau, form="softmax").item(), expected, rel_tol=1e-6)
    # contrast: the guide against one queue row of domain 1 at guide 1 (the row of domain 0 is no negative)
    bank, bank_d = torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([1, 0])
    expected = -(0.5 / tau - math.log(math.exp(0.5 / tau) + math.exp(math.sqrt(3) / 2 / tau)))
    assert math.isclose(guide_loss(z, torch.tensor([0]), g, tau=tau, form="contrast", bank_z=bank, bank_domains=bank_d).item(),
                        expected, rel_tol=1e-6)


@pytest.mark.parametrize("theta", [90, 120, 150])
@pytest.mark.parametrize("form", list(GUIDE_FORMS))
def test_guide_landscape_minimum_is_the_guides_only_for_pull(form, theta):
    "Free unit vectors minimising a form alone: the default (pull) ends within 2° of every guide and learns θ; the others do not."
    r = guide_landscape(form, theta)
    if form == "pull":
        assert r["max_off_deg"] < 2 and abs(r["real_forgery"] - theta) < 2, r
        assert abs(r["forgery_forgery"] - closed_form_guides(512, 4, theta).phi_deg) < 2, r
    else:
        assert r["max_off_deg"] > 10, r                                       # the comparison forms miss their guides


def test_guide_geometry_reads_back_a_planted_space():
    g = torch.tensor(closed_form_guides(64, 4, 150).guides, dtype=torch.float32)
    dom = torch.arange(5).repeat(8)
    geo = guide_geometry(g[[0, 2, 1, 4, 3]][dom], dom, g)                      # forgery domains on permuted guides
    assert geo["perm"].tolist() == [1, 0, 3, 2] and min(geo["cos"]) > 0.999
    assert abs(geo["real_forgery"] - 150) < 0.1 and abs(geo["span_share"] - 1) < 1e-5


@pytest.mark.parametrize("theta", [90, 120, 150])
def test_guide_loss_lowest_on_own_guides(theta):
    g = torch.tensor(closed_form_guides(32, 4, theta).guides, dtype=torch.float32)
    dom = torch.arange(5).repeat(2)
    best = guide_loss(g[dom], dom, g)
    assert best.item() == pytest.approx(0.0, abs=1e-6)                         # pull: zero exactly on the guides
    for perm in itertools.permutations(range(5)):
        if perm != tuple(range(5)):
            assert guide_loss(g[list(perm)][dom], dom, g) > best
    # moving an embedding away from its guide along the sphere raises the loss
    gen = torch.Generator().manual_seed(theta)
    for eps in (0.1, 0.3, 1.0):
        z = F.normalize(g[dom] + eps * torch.randn(10, 32, generator=gen), dim=1)
        assert guide_loss(z, dom, g) > best


def test_guide_loss_weights_select_samples():
    dom = torch.tensor([0, 1, 2])
    z = F.normalize(torch.randn(3, 64), dim=1)
    one_hot = torch.tensor([0.0, 1.0, 0.0])
    assert torch.allclose(guide_loss(z, dom, G, weights=one_hot), guide_loss(z[1:2], dom[1:2], G))


def test_hungarian_recovers_every_permutation_under_noise():
    gen = torch.Generator().manual_seed(0)
    Gf = G[1:]
    for perm in itertools.permutations(range(4)):
        means = Gf[list(perm)] + 0.5 * torch.randn(4, 64, generator=gen) / 8
        assert hungarian_match(means, Gf).tolist() == list(perm)


def test_hungarian_is_optimal_against_brute_force():
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        means, guides = torch.randn(4, 6, generator=gen), torch.randn(4, 6, generator=gen)
        cos = (F.normalize(means, dim=1) @ F.normalize(guides, dim=1).T).numpy()
        best = max(itertools.permutations(range(4)), key=lambda p: sum(cos[k, p[k]] for k in range(4)))
        perm = hungarian_match(means, guides)
        assert math.isclose(sum(cos[k, perm[k]] for k in range(4)), sum(cos[k, best[k]] for k in range(4)), rel_tol=1e-6)


def test_hungarian_absent_domains_get_leftover_guides():
    Gf = G[1:]
    means = torch.full((4, 64), float("nan"))
    assert hungarian_match(means, Gf).tolist() == [0, 1, 2, 3]
    means[3] = Gf[0]
    assert hungarian_match(means, Gf).tolist() == [1, 2, 3, 0]


def test_domain_means_and_matched_guides_with_queue():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    m = domain_means(z, torch.tensor([0, 2, 2]), 4)
    assert torch.equal(m[0], torch.tensor([1.0, 0.0])) and torch.equal(m[2], torch.tensor([0.0, 2.0]))
    assert torch.isnan(m[1]).all() and torch.isnan(m[3]).all()
    # batch has only domain 1; the queue supplies domains 2 and 3 and disambiguates
    g = torch.tensor([[-1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0, -1.0, 0]])
    zb, db = torch.tensor([[0.0, 0.1, 1.0]]), torch.tensor([1])
    bank, bank_d = torch.tensor([[0.0, 1.0, 0.0], [0.0, -1.0, 0.1]]), torch.tensor([2, 3])
    gm, perm = matched_guides(g, zb, db, bank, bank_d)
    assert perm.tolist() == [1, 0, 2]
    assert torch.equal(gm, g[[0, 2, 1, 3]])


def test_kcl_hand_values_and_tau():
    # τ = 0.5, positive at 0.8, negatives at 0.2 and -0.4
    tau = 0.5
    L = math.log(math.exp(0.8 / tau) + math.exp(0.2 / tau) + math.exp(-0.4 / tau))
    got = kcl_loss(torch.tensor([[0.8]]), torch.tensor([[0.2, -0.4]]), tau=tau).item()
    assert math.isclose(got, -(0.8 / tau - L), rel_tol=1e-6)
    # two anchors average; mask removes the second anchor's only positive
    both = kcl_loss(torch.tensor([[0.8], [0.1]]), torch.tensor([[0.2, -0.4], [0.0, 0.0]]), tau=tau,
                    pos_mask=torch.tensor([[True], [False]]))
    assert math.isclose(both.item(), got, rel_tol=1e-6)


def test_kcl_lower_bound_and_gradient_direction():
    # with P equal positives and no negatives' mass the loss tends to log P (KCL's balanced optimum)
    pos, neg = torch.ones(1, 4), torch.full((1, 3), -1.0)
    assert math.isclose(kcl_loss(pos, neg, tau=0.01).item(), math.log(4), rel_tol=1e-4)
    s_pos = torch.tensor([[0.1, 0.2]], requires_grad=True)
    s_neg = torch.tensor([[0.3]], requires_grad=True)
    kcl_loss(s_pos, s_neg).backward()
    assert (s_pos.grad < 0).all() and (s_neg.grad > 0).all()              # raise positives, lower negatives


def test_push_and_pull_on_a_queue():
    gen = torch.Generator().manual_seed(0)
    bank = F.normalize(torch.randn(20, 8, generator=gen), dim=1)
    bank_d = torch.arange(20) % 3
    z = F.normalize(torch.randn(4, 8, generator=gen), dim=1).requires_grad_(True)
    d = torch.tensor([0, 1, 2, 1])
    idx = torch.randint(0, 20, (4, 5), generator=gen)
    valid = torch.ones(4, 5, dtype=torch.bool)
    # pull equals KCL on gathered positives vs every other-domain row
    sim = z @ bank.T
    other = d[:, None] != bank_d[None]
    ref = kcl_loss(sim.gather(1, idx), sim, 0.07, valid, other)
    got = pull_loss(z, d, bank, bank_d, idx, valid)
    assert torch.allclose(got, ref)
    # push: an explicit per-anchor computation
    g_hat = G[d][:, :8].clone()
    g_hat = F.normalize(g_hat, dim=1)
    push_idx = torch.randint(0, 20, (4, 3), generator=gen)
    loss = push_loss(z, g_hat, bank, idx, valid, push_idx, torch.ones(4, 3, dtype=torch.bool))
    per = []
    for i in range(4):
        pos = torch.cat([(z[i] * g_hat[i]).sum()[None], bank[idx[i]] @ z[i]]) / 0.07
        neg = bank[push_idx[i]] @ z[i] / 0.07
        lse = torch.logsumexp(torch.cat([pos, neg]), 0)
        per.append(-(pos - lse).mean())
    assert torch.allclose(loss, torch.stack(per).mean(), atol=1e-5)
    loss.backward()
    assert torch.isfinite(z.grad).all()


def test_push_loss_falls_when_push_set_moves_away():
    z = torch.tensor([[1.0, 0.0]])
    g_hat = torch.tensor([[1.0, 0.0]])
    idx, ok = torch.tensor([[0]]), torch.tensor([[True]])
    losses = []
    for angle in (10, 60, 120, 170):
        a = math.radians(angle)
        bank = torch.tensor([[1.0, 0.0], [math.cos(a), math.sin(a)]])
        losses.append(push_loss(z, g_hat, bank, idx, ok, torch.tensor([[1]]), ok).item())
    assert losses == sorted(losses, reverse=True)


def test_shared_similarity_matches_separate_computation():
    from gsrepro.losses import bank_similarity
    gen = torch.Generator().manual_seed(4)
    bank = F.normalize(torch.randn(30, 8, generator=gen), dim=1)
    bd = torch.arange(30) % 4
    z = F.normalize(torch.randn(5, 8, generator=gen), dim=1).requires_grad_(True)
    d = torch.tensor([0, 1, 2, 3, 1])
    idx = torch.randint(0, 30, (5, 4), generator=gen)
    ok = torch.rand(5, 4, generator=gen) > 0.3
    g_hat = F.normalize(torch.randn(5, 8, generator=gen), dim=1)
    def total(sim):
        return push_loss(z, g_hat, bank, idx, ok, idx.flip(1), ok, sim=sim) + pull_loss(z, d, bank, bd, idx, ok, sim=sim)
    a, b = total(None), total(bank_similarity(z, bank))
    assert torch.allclose(a, b)
    assert torch.allclose(torch.autograd.grad(a, z)[0], torch.autograd.grad(b, z)[0], atol=1e-6)


def test_losses_are_float32_under_autocast():
    z = F.normalize(torch.randn(4, 64), dim=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = guide_loss(z.bfloat16(), torch.tensor([0, 1, 2, 3]), G)
        ref = guide_loss(z.bfloat16().float(), torch.tensor([0, 1, 2, 3]), G)
    assert out.dtype == torch.float32 and torch.allclose(out, ref, rtol=1e-6)


def test_kcl_fully_masked_rows_give_finite_gradients():
    p = torch.zeros(2, 2, requires_grad=True)
    n = torch.zeros(2, 3, requires_grad=True)
    loss = kcl_loss(p, n, pos_mask=torch.tensor([[True, True], [False, False]]),
                    neg_mask=torch.tensor([[True, False, False], [False, False, False]]))
    loss.backward()
    assert math.isclose(loss.item(), math.log(3), rel_tol=1e-6)           # row 0: 2 positives + 1 negative, all equal
    assert torch.isfinite(p.grad).all() and torch.isfinite(n.grad).all()
    assert p.grad[1].abs().sum() == 0 and n.grad[1].abs().sum() == 0
