"""The mouth split and under-layer (engine.avatar.mouth) on the astronaut: the split line runs between the inner lips,
and in a personalized avatar opening the jaw moves the lower lip and leaves the upper lip where it was."""
from pathlib import Path

import math

import pytest
import torch

pytest.importorskip("mediapipe", reason="mediapipe is installed by scripts/setup.sh")
from engine.avatar.landmarks import detect  # noqa: E402
from engine.render.gaussians import rgb_to_sh_dc, sh_dc_to_rgb  # noqa: E402
from engine.avatar.mouth import (LOWER_INNER, UPPER_INNER, closed_line_y, closing_shift, in_gap, inner_lip_contours,
                                 mouth_sides,  # noqa: E402
                                 particle_sides, split_line_y, under_layer, CORNER_INSET, JAW_REACH, LOWER_LIP,
                                 OUTER_LIPS, OVERLAP_PX, UPPER_LIP, UPPER_SHARE)
from engine.avatar.personalize import PersonalizeConfig, personalize  # noqa: E402
from engine.avatar.photo import load_photo  # noqa: E402
from engine.avatar.regions import FACE, LIPS, convex_hull, polygon_mask, region_map  # noqa: E402
from engine.avatar.teeth import inner_lip_mask, mouth_colours  # noqa: E402

ASTRONAUT = Path(__file__).resolve().parent.parent / "assets" / "astronaut.png"


@pytest.fixture(scope="module")
def face192():
    image, _ = load_photo(ASTRONAUT, max_side=192)
    lm = detect(image)
    return image, lm


def test_split_line_runs_between_the_inner_lips(face192):
    _, lm = face192
    face = lm.face
    x = face[13:14, 0]
    y = float(split_line_y(face, x))
    assert float(face[13, 1]) <= y <= float(face[14, 1])                # 13 upper inner, 14 lower inner lip
    px = torch.stack([face[[13, 14, 0, 17], 0], face[[13, 14, 0, 17], 1] + torch.tensor([-0.5, 0.5, 0.0, 0.0])], 1)
    assert mouth_sides(face, px).tolist() == [1, 2, 1, 2]               # 0: upper outer lip, 17: lower outer lip
    far = torch.tensor([[0.0, float(face[14, 1])]])                     # the photo's left edge: not in the column
    assert mouth_sides(face, far).tolist() == [0]
    assert particle_sides(face, far).tolist() == [2]                    # particles are always on a side
    assert set(UPPER_INNER) & set(LOWER_INNER) == {78, 308}             # the two contours meet at the corners


def test_under_layer_is_dark_inside_the_lips_and_skin_elsewhere(face192):
    image, lm = face192
    regions = region_map(lm, lm.mask > 0.5)
    facial = torch.isin(regions, torch.tensor([FACE, LIPS]))
    front = torch.zeros(regions.shape)
    K = torch.tensor([[500.0, 0, 96], [0, 500.0, 96], [0, 0, 1]])
    g, px, inside, behind = under_layer(lm.face, image, facial, front, K, 2.5, 0.01)
    assert bool(inside.any()) and bool((~inside).any())
    rgb = 0.5 + 0.28209479177387814 * g.sh[:, 0]                          # SH C0
    assert float(rgb[inside].mean()) < 0.2 < float(rgb[~inside].mean())
    assert torch.allclose(g.means[:, 2], torch.full((len(g),), 2.51))     # depth_behind behind a flat front
    # the interior reaches JAW_REACH eye widths below the lower lip (inside the face), with skin in front of it
    eye = float((lm.face[33, :2] - lm.face[263, :2]).norm())
    x, y = int(lm.face[17, 0]), int(lm.face[17, 1] + 0.5 * JAW_REACH * eye)    # below the lower lip's middle
    here = (px[:, 0] == x) & (px[:, 1] == y)
    assert bool(facial[y, x]) and bool((here & inside).any())
    too_far = (px[:, 1] > lm.face[list(OUTER_LIPS), 1].max() + JAW_REACH * eye + 1) & inside
    assert not bool(too_far.any())
    # below the lips and beside the corners, where the cheek stretches over it, the layer is skin (dark, it
    # showed through as specks beside the mouth), with the interior's fine splats; the lips' hull is dark to the
    # corners
    x0, x1 = sorted((float(lm.face[UPPER_INNER[0], 0]), float(lm.face[UPPER_INNER[-1], 0])))
    below_hull = px[:, 1] > lm.face[list(OUTER_LIPS), 1].max() + 1
    beside = (px[:, 0] + 0.5 < x0 + CORNER_INSET * (x1 - x0)) | (px[:, 0] + 0.5 > x1 - CORNER_INSET * (x1 - x0))
    fine = g.scales[:, 0] < 1.2 * 2.51 / 500.0                                  # the interior's 0.8 px, not 1.6
    cheek = below_hull & beside & fine
    assert bool(cheek.any()) and not bool((cheek & inside).any())
    # ... but still behind the mouth, as the dark interior is (both stay with the head; engine.avatar.personalize)
    assert bool(behind[cheek].all()) and bool(behind[inside].all()) and bool((~behind).any())
    assert float(rgb[cheek].mean()) > float(rgb[inside].mean()) + 0.2
    lips = polygon_mask(convex_hull(lm.face[list(OUTER_LIPS), :2]), *facial.shape)[px[:, 1], px[:, 0]]
    assert bool((lips & beside & inside).any()) and float(rgb[lips & fine].max()) < 0.3      # dark in the lips


def test_opening_the_jaw_moves_only_the_lower_lip(monkeypatch):
    image, _ = load_photo(ASTRONAUT, max_side=320)
    lm = detect(image)
    # the teeth and the tongue reach across the line on their own jaws, behind the lips (engine.avatar.teeth): built
    # pure green here, so that they can be told from the lips after the fit (one step barely moves a colour)
    import engine.avatar.personalize as pers
    built = pers.mouth_insides

    def green_insides(*args, **kwargs):
        g, px, side = built(*args, **kwargs)
        g.sh[:, 0] = rgb_to_sh_dc(torch.tensor([0.0, 1.0, 0.0]))
        return g, px, side
    monkeypatch.setattr(pers, "mouth_insides", green_insides)
    avatar = personalize(ASTRONAUT, PersonalizeConfig(max_side=320, fit_steps=1), progress=False)
    rgb = sh_dc_to_rgb(avatar.gaussians.sh[:, 0])
    inside = (rgb - torch.tensor([0.0, 1.0, 0.0])).abs().amax(-1) < 0.1
    K = avatar.camera.K
    p_px = (K @ (avatar.particles / avatar.particles[:, 2:]).T).T[:, :2]
    # a face particle's side is that of its landmark in the photo (the closed rest mouth moved the inner lips'
    # particles onto the split line, where their side can no longer be read off)
    for k, name in enumerate(avatar.particle_names):
        if name.startswith("face:"):
            p_px[k] = lm.face[int(name.split(":")[1]), :2]
    lower = particle_sides(lm.face, p_px) == 2
    move = torch.where(lower[:, None], torch.tensor([0.0, 0.05, 0.0]), torch.zeros(3))
    moved = (avatar.skin_weight[..., None] * move[avatar.skin_index]).sum(1)[:, 1]
    g_px = (K @ (avatar.gaussians.means / avatar.gaussians.means[:, 2:]).T).T[:, :2]
    lips = (avatar.regions == LIPS) & (avatar.gaussians.means[:, 2] < 2.5) & ~inside   # not the back of the head
    # the side each lies on now, in the closed rest mouth: above or below the line where the lips meet
    line = closed_line_y(lm.face, g_px[:, 0])
    sides = torch.where(mouth_sides(lm.face, g_px) != 0, torch.where(g_px[:, 1] > line, 2, 1), 0)
    d = g_px[:, 1] - line             # not on it: each lip closes OVERLAP_PX past it, and the fit moved means a bit
    sides = torch.where(d.abs() > OVERLAP_PX + 1.0, sides, torch.zeros_like(sides))
    upper_lip, lower_lip = lips & (sides == 1), lips & (sides == 2)
    assert int(upper_lip.sum()) > 10 and int(lower_lip.sum()) > 10 and int(inside.sum()) > 100
    regions = region_map(lm, lm.mask > 0.5)
    opening = inner_lip_mask(lm.face, *regions.shape)
    dark = mouth_colours(image, (lm.mask > 0.5) & (regions == LIPS) & ~opening, opening)["interior"]
    interior = (avatar.gaussians.sh[:, 0] - rgb_to_sh_dc(dark)).abs().amax(-1) < 1e-4
    assert int(interior.sum()) > 10
    assert float(moved[interior].abs().max()) == 0.0                     # the mouth interior stays with the head
    assert float(moved[upper_lip].abs().max()) == 0.0                    # so does the upper lip ...
    assert float(moved[lower_lip & ~interior].min()) == pytest.approx(0.05)   # ... and the lower lip drops


def synthetic_face(gap: float = 8.0) -> torch.Tensor:
    """A face-mesh stand-in [478, 3] with only what the mouth code reads: eye corners 60 px apart, the nose
    bottom at y 50, the chin at y 96, inner lip contours flat at y 66 (upper) and 66 + gap (lower) between
    x 35 and 65, meeting at the corners; the outer contours 6 px above and 8 px below them, the outer corners
    at x 33 and 67."""
    face = torch.zeros(478, 3)
    face[33, :2], face[263, :2] = torch.tensor([20.0, 40.0]), torch.tensor([80.0, 40.0])
    face[2, :2], face[152, :2] = torch.tensor([50.0, 50.0]), torch.tensor([50.0, 96.0])
    for ids, y in ((UPPER_INNER, 66.0), (LOWER_INNER, 66.0 + gap)):
        xs = torch.linspace(35, 65, len(ids))
        for i, x in zip(ids, xs):
            face[i, :2] = torch.tensor([float(x), y])
    face[78, :2], face[308, :2] = torch.tensor([35.0, 66.0 + gap / 2]), torch.tensor([65.0, 66.0 + gap / 2])
    for ids, y in ((OUTER_LIPS[1:10], 60.0), (OUTER_LIPS[11:][::-1], 66.0 + gap + 8.0)):
        for i, x in zip(ids, torch.linspace(36, 64, len(ids))):
            face[i, :2] = torch.tensor([float(x), y])
    face[61, :2], face[291, :2] = torch.tensor([33.0, 66.0 + gap / 2]), torch.tensor([67.0, 66.0 + gap / 2])
    return face


def test_closing_shift_brings_the_lips_together_and_leaves_nose_and_chin():
    face = synthetic_face(gap=8.0)
    pts = torch.tensor([[50.0, 66.0], [50.0, 74.0], [50.0, 50.0], [50.0, 96.0], [50.0, 58.0], [50.0, 66.0],
                        [50.0, 80.0], [50.0, 89.0]])
    sides = torch.tensor([1, 2, 1, 2, 1, 0, 2, 2])
    shift = closing_shift(face, pts, sides)
    assert shift[:, 0].abs().max() < 1e-6                              # an upright face: straight down its columns
    dy = shift[:, 1]
    # the upper lip comes down a quarter of the 8 px gap (2 px), the lower lip up the other 6, and each half a
    # pixel past the line where they meet; nothing at the nose and the chin; half-way up to the nose: half of the
    # upper lip's 2.5 px; side 0: none. The whole lower lip (down to its outer edge at 82) lifts as one, and
    # half-way from there to the chin (89) by half
    assert UPPER_SHARE == 0.25 and OVERLAP_PX == 0.5
    assert dy.tolist() == pytest.approx([2.5, -6.5, 0.0, 0.0, 1.25, 0.0, -6.5, -3.25], abs=1e-5)
    assert float(closed_line_y(face, torch.tensor([50.0]))) == pytest.approx(68.0)   # where they meet
    moved = pts[:2, 1] + dy[:2]
    assert float(moved[0] - moved[1]) == pytest.approx(1.0)             # the inner lips meet, 1 px over each other
    assert in_gap(face, torch.tensor([[50.0, 70.0], [50.0, 60.0], [20.0, 70.0]])).tolist() == [True, False, False]
    assert closing_shift(synthetic_face(gap=0.0), pts, sides).abs().max() == 0   # a closed photo mouth: no change


def test_a_tilted_head_splits_and_closes_its_mouth_along_its_own_up_and_down():
    """The same face and points turned 30 degrees about a point: every side, gap and band test gives the same
    answer, and the closing shift turns with them (in photo rows and columns it cut across the tilted lips)."""
    from engine.avatar.mouth import lip_band
    face = synthetic_face(gap=8.0)
    for i in (61,) + OUTER_LIPS[10:]:                                   # the lower outer lip, flat at y 80
        face[i, :2] = torch.tensor([50.0 + (i % 7) - 3, 80.0])
    face[61, 0], face[291, 0] = 33.0, 67.0
    yy, xx = torch.meshgrid(torch.arange(30.0, 100.0, 1.7), torch.arange(20.0, 80.0, 1.7), indexing="ij")
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    a = math.radians(30.0)
    turn = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    centre = torch.tensor([41.0, 77.0])                                 # anywhere: not the mouth's centre
    tilted = face.clone()
    tilted[:, :2] = (face[:, :2] - centre) @ turn.T + centre
    t_pts = (pts - centre) @ turn.T + centre
    sides = mouth_sides(face, pts)
    assert int((sides == 1).sum()) > 20 and int((sides == 2).sum()) > 20 and int((sides == 0).sum()) > 20
    assert torch.equal(mouth_sides(tilted, t_pts), sides)
    assert torch.equal(particle_sides(tilted, t_pts), particle_sides(face, pts))
    assert torch.equal(in_gap(tilted, t_pts), in_gap(face, pts)) and bool(in_gap(face, pts).any())
    assert torch.equal(lip_band(tilted, t_pts), lip_band(face, pts))
    torch.testing.assert_close(closing_shift(tilted, t_pts, sides), closing_shift(face, pts, sides) @ turn.T,
                               atol=1e-4, rtol=0)


def test_on_a_closed_mouth_lip_particles_take_their_lips_side_by_name():
    """Both inner lips on one line (gap 0): by height alone a lower inner-lip point is on the line, and its side a
    coin toss; by its name it is lower, and an upper one upper. Corners and other particles keep the line's rule."""
    face = synthetic_face(gap=0.0)
    names = ["face:14", "face:87", "face:13", "face:82", "face:61", "body:0"]
    px = face[[14, 87, 13, 82, 61, 14], :2].clone()
    px[5, 1] += 30.0                                                     # a body particle well below the mouth
    assert particle_sides(face, px, names).tolist() == [2, 2, 1, 1, int(particle_sides(face, px[4:5])), 2]
    assert 14 in LOWER_LIP and 13 in UPPER_LIP and 61 not in UPPER_LIP + LOWER_LIP


def test_closing_brings_a_lower_lip_that_lies_behind_the_upper_forward_to_its_depth():
    from engine.avatar.mouth import closing_depth
    from engine.avatar.personalize import _come_forward
    face = synthetic_face(gap=8.0)                      # nose 50, inner lips 66 / 74, chin 96
    front = torch.zeros(120, 120)
    front[70:] = -6.0                                   # the dropped lower lip and chin 6 px deeper than the upper lip
    pts = torch.tensor([[50.0, 60.0], [50.0, 74.5], [50.0, 85.5], [50.0, 96.5], [50.0, 74.5]])
    sides = torch.tensor([1, 2, 2, 2, 0])
    ahead = closing_depth(face, pts, sides, front)
    # the lower side by the 6 px between the lips, times the lift's weight: 1 over the lower lip (74 .. 82), then
    # (96 - y) / 14 to 0 at the chin (96); the upper side and an unsplit point not at all
    want = torch.tensor([0.0, 6.0, 6.0 * 10.5 / 14, 0.0, 0.0])
    torch.testing.assert_close(ahead, want, rtol=1e-5, atol=1e-6)
    front[70:] = 6.0                                    # a lower lip nearer than the upper: nothing goes back
    assert closing_depth(face, pts, sides, front).abs().max() == 0
    front[:] = 0.0
    front[67:] = -6.0                                   # a closed photo mouth (lips meeting at 66): they stay
    assert closing_depth(synthetic_face(gap=0.0), pts, sides, front).abs().max() == 0
    # brought forward along the line of sight: nearer by ahead x world_per_px, on the same pixel
    means = torch.tensor([[0.3, -0.2, 2.0], [0.0, 0.5, 1.5]])
    before = means[:, :2] / means[:, 2:]
    _come_forward(means, torch.tensor([10.0, 0.0]), 0.01)
    torch.testing.assert_close(means[:, 2], torch.tensor([1.9, 1.5]))
    torch.testing.assert_close(means[:, :2] / means[:, 2:], before)


def test_the_closed_rest_mouth_grows_the_stretched_splats_and_splits_only_the_lip_band():
    from engine.avatar.mouth import lip_band
    from engine.avatar.personalize import _close_the_mouth
    from engine.render.gaussians import Gaussians
    face = synthetic_face(gap=8.0)                      # nose 50, inner lips 66 / 74, chin 96, eyes 60 px apart
    pixel = torch.tensor([[50, 60], [50, 85], [50, 40], [50, 85]])
    sides = torch.tensor([1, 2, 1, 2])
    teeth = torch.tensor([False, False, False, True])
    K = torch.tensor([[100.0, 0, 0], [0, 100.0, 0], [0, 0, 1]])
    n = len(pixel)
    g = Gaussians(torch.cat([pixel.float() / 100.0, torch.ones(n, 1)], 1), torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
                  torch.full((n, 3), 0.01), torch.ones(n), torch.zeros(n, 1, 3))
    particles = torch.tensor([[0.5, 0.6, 1.0]])
    keep = _close_the_mouth(face, g, pixel, sides, torch.ones(n, dtype=torch.bool), teeth, particles,
                            torch.tensor([1]), K, torch.zeros(120, 120), 1.0)      # a flat front: nothing comes forward
    assert keep.tolist() == [True, True, True, True]
    # the upper side's shift (a quarter of the 8 px gap and half a pixel, 2.5 px at the lip, 0 at the nose)
    # stretches it by 2.5 / 16, the lower's (6.5 px over the lower lip, down to 82, 0 at the chin) the skin
    # under the lip by 6.5 / 14; above the nose and on the teeth nothing moves or grows
    want = torch.tensor([1 + 2.5 / 16, 1 + 6.5 / 14, 1.0, 1.0]) * 0.01
    torch.testing.assert_close(g.scales[:, 0], want, rtol=1e-4, atol=1e-7)
    # the band skinning splits: lower outer lip flat at y 80 between the corners -> down to 80 + 0.05 x 60
    for i in (61,) + OUTER_LIPS[10:]:
        face[i, :2] = torch.tensor([50.0 + (i % 7) - 3, 80.0])
    face[61, 0], face[291, 0] = 33.0, 67.0
    assert lip_band(face, torch.tensor([[50.0, 60.0], [50.0, 82.9], [50.0, 83.1], [10.0, 82.0]])).tolist() == [
        True, True, False, True]
