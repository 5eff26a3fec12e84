"""engine.render.away: an avatar's second colour, shown away from the photo camera, blended in by the angle between a
camera's ray to each Gaussian and the photo camera's ray to it (checked against hand-computed angles)."""
import math

import pytest
import torch

from engine.render.away import AWAY_DEG, NEAR_DEG, AwayColour, photo_weight, seen_from
from engine.render.camera import look_at
from engine.render.gaussians import Gaussians


def _scene(n: int = 5) -> tuple[Gaussians, AwayColour]:
    gen = torch.Generator().manual_seed(0)
    means = torch.randn(n, 3, generator=gen) * 0.05 + torch.tensor([0.0, 0.0, 2.0])
    quats = torch.nn.functional.normalize(torch.randn(n, 4, generator=gen), dim=-1)
    g = Gaussians(means, quats, torch.full((n, 3), 0.01), torch.rand(n, generator=gen) * 0.5 + 0.5,
                  torch.randn(n, 4, 3, generator=gen))                       # SH degree 1: the bands stay
    away = AwayColour(torch.randn(n, 3, generator=gen), torch.zeros(3))
    return g, away


def _camera_round(point: torch.Tensor, degrees: float) -> torch.Tensor:
    """viewmat [4, 4] of a camera as far from `point` as the photo camera (at the origin), its ray to the point
    turned `degrees` from the photo camera's (Rodrigues, about an axis square to that ray)."""
    d = -point
    u = torch.nn.functional.normalize(torch.linalg.cross(d, torch.tensor([1.0, 0.0, 0.0])), dim=0)
    a = math.radians(degrees)
    turned = d * math.cos(a) + torch.linalg.cross(u, d) * math.sin(a) + u * (u @ d) * (1 - math.cos(a))
    return look_at(point + turned, point)


def test_the_photo_camera_sees_the_photos_colour():
    g, away = _scene()
    seen = seen_from(g, away, torch.eye(4))
    assert torch.allclose(seen.sh, g.sh, atol=1e-6) and torch.equal(seen.opacities, g.opacities)


def test_the_colour_fades_with_the_angle_round_each_gaussian():
    g, away = _scene(1)
    p = g.means[0]
    mid = 0.5 * (NEAR_DEG + AWAY_DEG)
    for deg, want in ((0.5 * NEAR_DEG, 1.0), (NEAR_DEG, 1.0), (mid, None), (AWAY_DEG, 0.0), (60.0, 0.0), (170.0, 0.0)):
        vm = _camera_round(p, deg)
        if want is None:          # between: linear in the cosine
            c = lambda d: math.cos(math.radians(d))  # noqa: E731
            want = (c(deg) - c(AWAY_DEG)) / (c(NEAR_DEG) - c(AWAY_DEG))
        eye = -(vm[:3, :3].T @ vm[:3, 3])
        assert float(photo_weight(g.means, eye, away.eye)[0]) == pytest.approx(want, abs=1e-4), deg
        seen = seen_from(g, away, vm)
        assert torch.allclose(seen.sh[0, 0], away.dc[0] + want * (g.sh[0, 0] - away.dc[0]), atol=1e-4), deg
        assert torch.equal(seen.sh[:, 1:], g.sh[:, 1:]) and torch.equal(seen.opacities, g.opacities)


def test_a_colour_of_the_wrong_size_is_named():
    g, away = _scene(4)
    with pytest.raises(ValueError, match=r"away colour: expected dc \[4, 3\]"):
        seen_from(g, AwayColour(away.dc[:3], away.eye), torch.eye(4))


def test_the_live_view_and_the_turntable_show_the_away_colour():
    """AvatarView (the engine) and render_gaussians (stills, orbits) both pick the look per camera."""
    from engine.render.splat import render_gaussians
    from engine.view import AvatarView
    from tests.test_render_view import body_avatar

    a = body_avatar(normals=False)
    n = len(a.gaussians)
    a.away_dc = torch.zeros(n, 3)                                             # grey from away
    K = a.camera.scaled_K(64, 64)
    eye = -(a.camera.viewmat[:3, :3].T @ a.camera.viewmat[:3, 3])
    centre = a.gaussians.means.mean(0)
    side = look_at(centre + (centre - eye).norm() * torch.tensor([1.0, 0.0, 0.0]), centre)   # 90 degrees round
    view = AvatarView(a, side, K, 64, 64)
    assert torch.allclose(view.g0.sh[:, 0], torch.zeros_like(view.g0.sh[:, 0]), atol=1e-6)
    front = AvatarView(a, a.camera.viewmat, K, 64, 64)
    kept = torch.isin(a.gaussians.means, front.g0.means).all(-1)
    assert torch.allclose(front.g0.sh[:, 0], a.gaussians.sh[kept, 0], atol=1e-5)
    img_away, _ = render_gaussians(a.gaussians, side, K, 64, 64, away=a.away_colour())
    img_own, _ = render_gaussians(a.gaussians, side, K, 64, 64)
    assert float((img_away - img_own).abs().max()) > 0.05


def test_only_the_gaussians_with_a_second_colour_are_touched():
    g, away = _scene(6)
    base = g.sh[:, 0].clone()
    dc = base.clone()
    dc[1], dc[4, 2] = away.dc[1], -1.0                                        # two of six have a colour of their own
    look = AwayColour(dc, away.eye, base)
    assert look.rows().tolist() == [1, 4]
    vm = _camera_round(g.means[1], 40.0)
    fast, full = seen_from(g, look, vm), seen_from(g, AwayColour(dc, away.eye), vm)
    assert torch.allclose(fast.sh, full.sh, atol=1e-6)
    same = torch.tensor([0, 2, 3, 5])
    assert torch.equal(fast.sh[same], g.sh[same]) and torch.equal(fast.sh[1, 0], dc[1])
