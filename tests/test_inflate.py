"""Silhouette inflation against its closed form: on a disc of radius R, lap(h) = -1 with h = 0 on the rim
has h = (R^2 - r^2) / 4, so sqrt(2 h) = sqrt(R^2 - r^2) / sqrt(2), a hemisphere."""
import math

import pytest
import torch

from engine.avatar.inflate import inflate, poisson_height


def disc(size: int, radius: float):
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                            indexing="ij")
    c = (size - 1) / 2
    r2 = (xx - c) ** 2 + (yy - c) ** 2
    return r2 <= radius ** 2, r2


def test_disc_matches_the_closed_form():
    R = 40.0
    mask, r2 = disc(101, R)
    h = poisson_height(mask).double()
    # The zero boundary sits at the first pixel centres outside the mask, so the discrete disc is a little
    # wider than R: fit its radius from the centre value, h(0) = R_eff^2 / 4, and check it lies in [R, R + 1].
    r_eff = math.sqrt(4 * float(h[50, 50]))
    assert R <= r_eff <= R + 1, f"effective radius {r_eff:.3f} for R = {R}"
    exact = (r_eff ** 2 - r2) / 4
    inner = r2 <= (0.8 * R) ** 2
    rel = ((h - exact).abs() / exact)[inner].max()
    assert float(rel) < 0.01, f"max relative error {float(rel):.3g} inside 0.8 R"
    depth = inflate(mask).double()
    centre = depth[50, 50]
    assert abs(float(centre) - R / math.sqrt(2)) < 0.02 * R               # hemisphere height at the centre
    assert float(depth[~mask].abs().max()) == 0.0                          # nothing outside the silhouette


def test_rectangle_is_symmetric_and_peaks_in_the_middle():
    mask = torch.zeros(60, 100, dtype=torch.bool)
    mask[10:50, 20:80] = True
    d = inflate(mask)
    assert torch.allclose(d, d.flip(0), atol=1e-4) and torch.allclose(d, d.flip(1), atol=1e-4)
    assert int(d.argmax()) in {29 * 100 + 49, 29 * 100 + 50, 30 * 100 + 49, 30 * 100 + 50}


def test_empty_and_malformed_masks():
    with pytest.raises(ValueError, match="no pixel inside"):
        poisson_height(torch.zeros(10, 10))
    with pytest.raises(ValueError, match=r"expected shape \[H, W\]"):
        poisson_height(torch.ones(2, 10, 10))


def test_a_large_mask_starts_from_half_size_and_lands_near_the_full_solve():
    """Over COARSE px a side, the solve starts from a half-size one and polishes (2.3 s instead of 22 on a 768 px
    mask): within 0.6 px of relief of the plain conjugate-gradient solve, and within 1.5% of the disc's closed
    form (the plain solve: 0.05%)."""
    R = 150.0
    mask, r2 = disc(321, R)
    plain = poisson_height(mask, coarse=False).double()
    fast = poisson_height(mask).double()
    relief, plain_relief = (torch.sqrt(2 * v.clamp(min=0)) for v in (fast, plain))
    assert float((relief - plain_relief).abs().max()) < 0.6
    r_eff = math.sqrt(4 * float(plain[160, 160]))
    assert R <= r_eff <= R + 1, f"effective radius {r_eff:.3f} for R = {R}"
    exact = (r_eff ** 2 - r2) / 4
    inner = r2 <= (0.8 * R) ** 2
    assert float(((plain - exact).abs() / exact)[inner].max()) < 0.001
    assert float(((fast - exact).abs() / exact)[inner].max()) < 0.015
