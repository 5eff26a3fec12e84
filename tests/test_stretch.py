"""engine.deform.stretch: splats grow by the local stretch of the face's motion, never across the mouth."""
import math

import pytest
import torch

from engine.avatar.mouth import LOWER_LIP, UPPER_LIP
from engine.deform.stretch import MAX_GROWTH, SLACK, FaceStretch
from engine.render.gaussians import Gaussians

CHEEKS = (6, 12, 18, 24, 30, 36, 42, 48, 54, 60)        # face-mesh vertices in no lip or eye set


def mouth_particles():
    """A closed mouth (world units): the upper lip's outer contour on y = -0.08 and its inner on y = 0, the lower
    lip's inner on y = 0.02 and its outer on y = 0.1 (9 slots each), the corners 61 and 291 at the ends, ten cheek
    slots on a ring round it, and two body slots. -> (particles [K, 3], names)."""
    pts, names = [], []
    for ids, rows in ((UPPER_LIP, (-0.08, 0.0)), (LOWER_LIP, (0.1, 0.02))):     # (outer 9, inner 9) of each lip
        for j, i in enumerate(ids):
            pts.append((-0.5 + (j % 9) / 8, rows[j // 9], 0.0))
            names.append(f"face:{i}")
    pts += [(-0.6, 0.01, 0.0), (0.6, 0.01, 0.0)]
    names += ["face:61", "face:291"]
    for j, i in enumerate(CHEEKS):
        a = 2 * math.pi * j / len(CHEEKS)
        pts.append((0.9 * math.cos(a), 0.5 * math.sin(a), 0.0))
        names.append(f"face:{i}")
    pts += [(0.0, 2.0, 0.0), (0.5, 2.0, 0.0)]
    names += ["pose:11", "pose:12"]
    return torch.tensor(pts), names


def single_skin(k: int):
    """Each of k Gaussians skinned to particle i alone."""
    return torch.arange(k)[:, None].repeat(1, 4), torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(k, 1)


def test_a_rigid_motion_grows_nothing_and_a_uniform_stretch_grows_the_face_by_stretch_over_slack():
    p, names = mouth_particles()
    idx, w = single_skin(len(names))
    s = FaceStretch(p, names, idx, w)
    face = torch.tensor([n.startswith("face:") for n in names])
    # a turn by 20 degrees in the image plane and a shift: F is a rotation, its singular values 1
    c, sn = math.cos(0.35), math.sin(0.35)
    turned = p.clone()
    turned[:, 0], turned[:, 1] = c * p[:, 0] - sn * p[:, 1] + 0.3, sn * p[:, 0] + c * p[:, 1] - 0.1
    assert float(s.log_growth(turned - p).abs().max()) < 1e-4
    # the face stretched 2.4x in height (each point's y x 2.4): F = diag(1, 2.4), growth 2.4 / SLACK = 1.6
    stretch = torch.zeros_like(p)
    stretch[:, 1] = 1.4 * p[:, 1]
    grow = s.log_growth(stretch).exp()
    assert grow[face].tolist() == pytest.approx([2.4 / SLACK] * int(face.sum()), rel=1e-3)
    assert grow[~face].tolist() == [1.0, 1.0]                                 # the body is never grown here
    # 6x: capped
    stretch[:, 1] = 5.0 * p[:, 1]
    assert float(s.log_growth(stretch).exp()[face].max()) == pytest.approx(MAX_GROWTH, rel=1e-5)


def test_an_opening_mouth_grows_its_corners_and_not_its_lips():
    """The lower lip drops 0.3 as one piece: each lip is rigid on its own (its neighbours are its own lip's), so
    neither lip's splats grow (nor the teeth skinned to them); the corners, whose neighbours are on both lips,
    are stretched past SLACK and grow."""
    p, names = mouth_particles()
    idx, w = single_skin(len(names))
    s = FaceStretch(p, names, idx, w)
    motion = torch.zeros_like(p)
    lower = torch.tensor([n in {f"face:{i}" for i in LOWER_LIP} for n in names])
    motion[lower, 1] = 0.3
    grow = s.log_growth(motion).exp()
    lips = torch.tensor([n in {f"face:{i}" for i in UPPER_LIP + LOWER_LIP} for n in names])
    assert grow[lips].tolist() == [1.0] * int(lips.sum())
    corners = torch.tensor([n in ("face:61", "face:291") for n in names])
    assert bool((grow[corners] > 1.5).all())


def test_apply_scales_the_grown_particles_gaussians_by_their_blended_growth_and_leaves_the_rest():
    p, names = mouth_particles()
    K = len(names)
    # Gaussian 0 half on a corner (61) and half on an upper-lip slot; 1 on the body; 2 on a cheek
    corner, lip, body, cheek = names.index("face:61"), names.index(f"face:{UPPER_LIP[0]}"), names.index("pose:11"), \
        names.index("face:6")
    idx = torch.tensor([[corner, lip, 0, 0], [body, 0, 0, 0], [cheek, 0, 0, 0]])
    w = torch.tensor([[0.5, 0.5, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    s = FaceStretch(p, names, idx, w)
    g = Gaussians(torch.zeros(3, 3), torch.tensor([[1.0, 0, 0, 0]]).repeat(3, 1), torch.full((3, 3), 0.01),
                  torch.ones(3), torch.zeros(3, 1, 3))
    assert s.apply(g, torch.zeros(K, 3)) is g                                  # no motion: the very same Gaussians
    motion = torch.zeros(K, 3)
    motion[torch.tensor([n in {f"face:{i}" for i in LOWER_LIP} for n in names]), 1] = 0.3
    grow = s.log_growth(motion)
    out = s.apply(g, motion)
    want = 0.01 * math.exp(0.5 * float(grow[corner]) + 0.5 * float(grow[lip]))
    assert out.scales[0].tolist() == pytest.approx([want] * 3, rel=1e-5) and want > 0.01
    assert torch.equal(out.scales[1], g.scales[1])                            # the body's: untouched
    assert torch.equal(out.means, g.means) and torch.equal(out.opacities, g.opacities)


def test_bad_particles_are_named():
    with pytest.raises(ValueError, match="particles"):
        FaceStretch(torch.zeros(4, 2), ["face:1"] * 4, torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 4))
