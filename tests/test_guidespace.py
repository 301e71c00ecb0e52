"""The guide-space solver agrees with the closed form on the issue's whole grid; units, angles and errors."""
import math
import re

import numpy as np
import pytest

from gsrepro.guidespace import GuideSpace, closed_form_guides, phi_from_theta, solve_guide_space

THETAS = (90, 100, 110, 120, 130, 140, 150)


@pytest.mark.parametrize("dim", (8, 128, 512))
@pytest.mark.parametrize("K", (2, 3, 4, 5))
def test_solver_matches_closed_form(dim, K):
    for theta in THETAS:
        num = solve_guide_space(dim, K, theta, seed=dim + K)
        ref = closed_form_guides(dim, K, theta, seed=1)
        np.testing.assert_allclose(np.linalg.norm(num.guides, axis=1), 1.0, atol=1e-10)
        A = num.angles_deg()
        # every pairwise angle within 0.01 degrees of the closed form
        assert np.abs(A - ref.angles_deg()).max() < 0.01, (dim, K, theta)
        np.testing.assert_allclose(A[0, 1:], theta, atol=0.01)
        assert abs(num.phi_deg - phi_from_theta(theta, K)) < 0.01


@pytest.mark.parametrize("K", (2, 3, 4, 5))
@pytest.mark.parametrize("theta", THETAS)
def test_closed_form_geometry(K, theta):
    gs = closed_form_guides(64, K, theta, seed=K)
    np.testing.assert_allclose(np.linalg.norm(gs.guides, axis=1), 1.0, atol=1e-12)
    A = gs.angles_deg()
    off = ~np.eye(K, dtype=bool)
    np.testing.assert_allclose(A[0, 1:], theta, atol=1e-9)
    np.testing.assert_allclose(A[1:, 1:][off], phi_from_theta(theta, K), atol=1e-9)


def test_phi_known_values():
    assert phi_from_theta(120, 4) == 90.0
    assert abs(phi_from_theta(90, 4) - math.degrees(math.acos(-1 / 3))) < 1e-9
    simplex = math.degrees(math.acos(-1 / 4))
    assert abs(phi_from_theta(simplex, 4) - simplex) < 1e-9


def test_phi_decreases_with_theta():
    phis = [phi_from_theta(t, 4) for t in THETAS]
    assert all(a > b for a, b in zip(phis, phis[1:]))


def test_single_forgery_guide():
    gs = solve_guide_space(8, 1, 120)
    assert abs(gs.angles_deg()[0, 1] - 120) < 0.01 and math.isnan(gs.phi_deg)


@pytest.mark.parametrize("make", (closed_form_guides, solve_guide_space))
@pytest.mark.parametrize("args, msg", [
    ((1, 1, 120), "dim >= 2"),
    ((8, 0, 120), "at least one forgery guide"),
    ((4, 4, 120), "dim >= K+1"),
    ((8, 3, 0), "strictly between"),
    ((8, 3, 180), "strictly between"),
    ((8, 3, -10), "strictly between"),
])
def test_impossible_requests(make, args, msg):
    with pytest.raises(ValueError, match=re.escape(msg)) as e:
        make(*args)
    assert "\n" not in str(e.value)


def test_save_load_roundtrip(tmp_path):
    gs = solve_guide_space(32, 3, 110, seed=5)
    gs.save(tmp_path / "g.npz")
    back = GuideSpace.load(tmp_path / "g.npz")
    np.testing.assert_array_equal(back.guides, gs.guides)
    assert (back.theta_deg, back.phi_deg, back.method) == (110.0, gs.phi_deg, "lagrangian")
