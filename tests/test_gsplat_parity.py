"""Our projection and SH against gsplat's pure-torch implementation (`gsplat.cuda._torch_impl`), an
external check written by others. Skips cleanly when gsplat is not installed."""
import pytest
import torch

from cuda_ext import ops, reference
from splat_cases import Case, max_diff_report, random_scene

gsplat_torch = pytest.importorskip("gsplat.cuda._torch_impl", reason="gsplat is not installed")


@pytest.mark.parametrize("backend", ["kernel", "reference"])
@pytest.mark.parametrize("case", [Case(300, 64, 48, 1, None, 1), Case(2000, 128, 96, 2, None, 2)], ids=str)
def test_projection_matches_gsplat(case, backend, device):
    (means, quats, scales, _, _), viewmats, Ks = random_scene(case, device)
    radii, means2d, depths, conics = ops.fully_fused_projection(
        means, quats, scales, viewmats, Ks, case.width, case.height, backend=backend)
    covars, _ = gsplat_torch._quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    g_radii, g_means2d, g_depths, g_conics, _ = gsplat_torch._fully_fused_projection(
        means, covars, viewmats, Ks, case.width, case.height, eps2d=0.3, near_plane=0.01, far_plane=1e10)
    assert torch.equal(radii, g_radii), max_diff_report(radii, g_radii, "radii")[1]
    valid = (g_radii > 0).all(-1)
    assert int(valid.sum()) > 0 and int((~valid).sum()) > 0, "case should have both kept and culled splats"
    for ours, theirs, what in ((means2d, g_means2d, "means2d"), (depths, g_depths, "depths"),
                               (conics, g_conics, "conics")):
        worst, msg = max_diff_report(ours[valid], theirs[valid], what)
        assert worst <= 1e-4 * max(1.0, float(theirs[valid].abs().max())), msg


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_spherical_harmonics_match_gsplat(degree, device):
    g = torch.Generator().manual_seed(degree)
    dirs, coeffs = torch.randn(500, 3, generator=g).to(device), torch.randn(500, 16, 3, generator=g).to(device)
    theirs = gsplat_torch._spherical_harmonics(degree, dirs, coeffs)
    for ours in (reference.spherical_harmonics(degree, dirs, coeffs), ops.spherical_harmonics(degree, dirs, coeffs)):
        worst, msg = max_diff_report(ours, theirs, f"SH degree {degree}")
        assert worst <= 1e-5, msg


def test_tile_binning_matches_gsplat(device):
    case = Case(150, 64, 48, 2, None, 3)
    (means, quats, scales, _, _), viewmats, Ks = random_scene(case, device)
    radii, means2d, depths, _ = reference.fully_fused_projection(means, quats, scales, viewmats, Ks, 64, 48)
    ours = ops.isect_tiles(means2d, radii, depths, 16, 4, 3)
    theirs = gsplat_torch._isect_tiles(means2d, radii, depths, 16, 4, 3)
    for a, b, what in zip(ours, theirs, ("tiles_per_gauss", "isect_ids", "flatten_ids")):
        assert torch.equal(a, b.to(a.dtype)), f"{what} differ from gsplat"
    assert torch.equal(ops.isect_offset_encode(ours[1], 2, 4, 3),
                       gsplat_torch._isect_offset_encode(theirs[1], 2, 4, 3))
