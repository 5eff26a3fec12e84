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
