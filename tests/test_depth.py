"""Surface depth (engine.avatar.depth): the face-mesh interpolation against a hand computation, and on the astronaut
the shape a person has: the nose nearer the camera than the cheeks, the head deeper than the flattened torso."""
from pathlib import Path

import math

import pytest
import torch

from engine.avatar.depth import face_front_depth, surface_depth
from engine.avatar.inflate import inflate, inflate_open
from engine.avatar.regions import BODY, FACE, HAIR


def test_face_front_depth_is_inverse_squared_distance_weighting():
    face = torch.tensor([[0.0, 0.0, -2.0], [4.0, 0.0, -6.0], [0.0, 3.0, 1.0], [10.0, 10.0, 5.0]])
    got = face_front_depth(face, torch.tensor([[1, 1]]), k=3)
    d2 = torch.tensor([2.0, 10.0, 5.0])                                  # to the three nearest points
    w = 1.0 / (d2 + 0.25)
    expected = float((w * torch.tensor([2.0, 6.0, -1.0])).sum() / w.sum())
    assert abs(float(got[0]) - expected) < 1e-5


def test_head_is_a_ball_and_body_is_flattened():
    H = W = 64
    yy, xx = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    head = (xx - 32) ** 2 + (yy - 16) ** 2 <= 10 ** 2
    torso = (yy > 24) & ((xx - 32).abs() < 20)
    person = head | torso
    regions = torch.full((H, W), BODY)
    regions[head] = HAIR
    front, back = surface_depth(person, regions, None, thickness=0.6, head_roundness=1.0)
    assert torch.equal(front, back)
    assert float(front[~person].abs().max()) == 0.0
    # the head's centre is about one head radius deep (a ball), far deeper than the body relief there
    assert abs(float(front[16, 32]) - 10.0) < 1.0, float(front[16, 32])
    body_only = 0.6 * inflate_open(person)
    assert float(front[16, 32]) > 1.5 * float(body_only[16, 32])
    assert torch.equal(front[torso & ~head], body_only[torso & ~head])
    # the torso runs off the bottom of the frame: it goes on there, not thinning to a point on the frame's edge
    assert float(front[63, 32]) > 0.9 * float(front[48, 32]) > 0
    assert float(0.6 * inflate(person)[63, 32]) < 0.3 * float(front[48, 32])   # what a closed silhouette gave


ASTRONAUT = Path(__file__).resolve().parent.parent / "assets" / "astronaut.png"


def test_the_nose_comes_forward_on_the_astronaut():
    pytest.importorskip("mediapipe", reason="mediapipe is installed by scripts/setup.sh")
    from engine.avatar.landmarks import detect
    from engine.avatar.photo import load_photo
    from engine.avatar.regions import region_map

    image, _ = load_photo(ASTRONAUT, max_side=256)
    lm = detect(image)
    person = lm.mask > 0.5
    regions = region_map(lm, person)
    front, back = surface_depth(person, regions, lm.face, 0.6, 0.9)
    at = lambda i: float(front[int(lm.face[i, 1]), int(lm.face[i, 0])])   # noqa: E731
    nose, cheeks = at(1), (at(234) + at(454)) / 2                       # mediapipe: 1 nose tip, 234/454 cheeks
    assert nose > cheeks + 3.0, (nose, cheeks)
    # the back of the head is a ball, not the face relief mirrored
    facial = regions == FACE
    assert float((front[facial] - back[facial]).abs().mean()) > 0.5
    assert math.isfinite(float(front.sum())) and float(front.min()) >= 0.0


def _turned_face(H: int = 96):
    """A head of hair (a disc, radius 36) over a body, and in it a face (a disc, radius 18) whose mesh's depth
    tilts 1 px per px across it, as a face turned away from the camera: its oval stands out of the head's ball on
    one side. -> (person, regions, face [478, 3], face disc)."""
    pytest.importorskip("mediapipe", reason="mediapipe is installed by scripts/setup.sh")
    from engine.avatar.regions import face_index_sets
    yy, xx = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(H) + 0.5, indexing="ij")
    head = (xx - 48) ** 2 + (yy - 40) ** 2 <= 36 ** 2
    person = head | (yy > 70)
    regions = torch.full((H, H), BODY)
    regions[head] = HAIR
    face_disc = (xx - 48) ** 2 + (yy - 40) ** 2 <= 18 ** 2
    regions[face_disc] = FACE
    g = torch.Generator().manual_seed(0)
    r, a = 17.0 * torch.rand(478, generator=g).sqrt(), 2 * math.pi * torch.rand(478, generator=g)
    oval = torch.tensor(face_index_sets()["oval"])
    r[oval] = 18.0
    a[oval] = torch.linspace(0, 2 * math.pi, len(oval) + 1)[:-1]
    x, y = 48 + r * torch.cos(a), 40 + r * torch.sin(a)
    return person, regions, torch.stack([x, y, -(48 - x)], 1), face_disc


def test_the_hair_around_a_turned_face_meets_its_edge(monkeypatch):
    import engine.avatar.depth as depth
    from engine.avatar.shell import ShellConfig, crack_walls
    from engine.render.camera import intrinsics
    person, regions, face, face_disc = _turned_face()
    near = torch.nn.functional.max_pool2d(face_disc.float()[None, None], 5, 1, 2)[0, 0] > 0   # 2 px around it

    def walls_at_the_face(front):
        """How many crack walls engine.avatar.shell raises within 2 px of the face."""
        _, px, _ = crack_walls(person, front, -1.0, intrinsics(96, 96), ShellConfig(), within=face_disc)
        return int(near[px[:, 1], px[:, 0]].sum())

    monkeypatch.setattr(depth, "FACE_BLEND", 0.0)
    cliff, _ = depth.surface_depth(person, regions, face, 0.6, 1.0)
    monkeypatch.undo()
    front, back = depth.surface_depth(person, regions, face, 0.6, 1.0)
    assert walls_at_the_face(cliff) > 10                      # the face stands out of its hair on one side
    assert walls_at_the_face(front) == 0
    # the face keeps the mesh's shape, the back of the head its ball, and the hair far from the face its own depth
    assert torch.equal(front[face_disc], cliff[face_disc])
    far = person & ~face_disc & ~(torch.nn.functional.max_pool2d(face_disc.float()[None, None], 27, 1, 13)[0, 0] > 0)
    assert torch.equal(front[far], cliff[far]) and bool(far.any())


def limbs_scene():
    """A torso (rows 10-59, x 40-79), a right arm strip 16 px wide hanging beside it and touching it (x 24-39,
    rows 12-59), and two legs 20 px wide below it, 10 px apart (x 40-59 and 70-89 ... rows 60-119). Body parts
    drawn by hand (engine.avatar.limbs.BONES ids: 1 right forearm, 5 right shin, 8 left shin, 10 torso)."""
    H, W = 120, 120
    person = torch.zeros(H, W, dtype=torch.bool)
    parts = torch.full((H, W), 10)
    person[10:60, 40:80] = True
    person[12:60, 24:40] = True
    parts[12:60, 24:40] = 1
    person[60:120, 40:60] = True
    parts[60:120, 40:60] = 5
    person[60:120, 70:90] = True
    parts[60:120, 70:90] = 8
    return person, torch.full((H, W), BODY), parts


def test_each_limb_is_at_least_a_round_tube_of_its_own_width():
    """A strip's inflation is a round tube's profile (sqrt(a^2 - d^2) for half-width a): each leg, and the arm
    pressed against the torso, get LIMB_ROUND of their own tube, not of the blob they form with the torso."""
    from engine.avatar.depth import LIMB_ROUND, limb_tubes
    person, regions, parts = limbs_scene()
    tube = limb_tubes(person, regions, parts)
    assert float(tube[10:60, 40:80].abs().max()) == 0.0                       # the torso is no limb
    # a leg's row, 20 px of pixels (its edge half a pixel past the outer ones, at the first pixel outside: a tube
    # of half-width 10.5), running off the photo's bottom (engine.avatar.inflate.inflate_open: it goes on)
    x = torch.arange(40, 60) + 0.5
    expected = LIMB_ROUND * torch.sqrt((10.5 ** 2 - (x - 50.0) ** 2).clamp(min=0))
    assert float((tube[100, 40:60] - expected).abs().max()) < 0.05
    # the arm (16 px wide, cut from the torso along x 39): a tube of half-width about 7.5, far thinner than the
    # arm-and-torso blob's relief there
    assert 0.8 * LIMB_ROUND * 7.5 < float(tube[36, 24:40].max()) < 1.1 * LIMB_ROUND * 8.0
    assert float(inflate_open(person)[36, 24:40].max()) > 1.5 * float(tube[36, 24:40].max())


def test_a_template_thinner_than_the_clothed_leg_is_thickened_to_its_tube():
    """The fitted template's legs 3 px deep under trousers 20 px wide: with the body parts the legs' half-thickness
    is the tube's (9.4 px at the middle), without them about the template's 3 px."""
    from engine.avatar.depth import LIMB_ROUND
    person, regions, parts = limbs_scene()
    front, back = torch.full(person.shape, 3.0), torch.full(person.shape, 3.0)
    front[10:60, 40:80], back[10:60, 40:80] = 15.0, 15.0                      # the torso: deep
    body = (front * person, back * person, person.clone())
    f0, b0 = surface_depth(person, regions, None, 0.6, 1.0, body=body)
    f1, b1 = surface_depth(person, regions, None, 0.6, 1.0, body=body, parts=parts)
    assert float((f0 + b0)[100, 50]) / 2 < 4.5                                # about the template's 3 px
    assert abs(float((f1 + b1)[100, 50]) / 2 - LIMB_ROUND * math.sqrt(10.5 ** 2 - 0.5 ** 2)) < 0.05
    assert torch.equal(f1[10:60, 40:80], f0[10:60, 40:80])                    # the torso is left as it was
