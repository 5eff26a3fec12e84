"""engine.avatar.inner_lips: the inner-lip contour moved off the teeth onto the lips' edges the photo shows."""
import math

import pytest
import torch

from engine.avatar.inner_lips import refine_inner_lips
from engine.avatar.mouth import LOWER_INNER, OUTER_LIPS, UPPER_INNER

SKIN, LIP, TOOTH, SHADOW = (0.85, 0.65, 0.55), (0.70, 0.30, 0.30), (0.92, 0.90, 0.85), (0.06, 0.03, 0.03)


def mouth_photo(rows: dict, size: int = 120) -> torch.Tensor:
    """A photo [size, size, 3] of skin with horizontal bands {(y0, y1): colour} (rows y0..y1-1) across x 30..90."""
    image = torch.tensor(SKIN).expand(size, size, 3).clone()
    for (y0, y1), colour in rows.items():
        image[y0:y1, 30:90] = torch.tensor(colour)
    return image


def face_mesh(upper: float, lower: float, outer_up: float = 50.0, outer_low: float = 90.0,
              turn_deg: float = 0.0, about=(60.0, 70.0)) -> torch.Tensor:
    """A face-mesh stand-in [478, 3]: eye corners level above the mouth, the inner lip contours flat at rows
    upper and lower between x 40 and 80 (corners half way between), the outer lip contour flat at outer_up and
    outer_low; all turned by turn_deg about `about` (a tilted head)."""
    face = torch.zeros(478, 3)
    face[33, :2], face[263, :2] = torch.tensor([30.0, 20.0]), torch.tensor([90.0, 20.0])
    for ids, y in ((UPPER_INNER, upper), (LOWER_INNER, lower)):
        for i, x in zip(ids, torch.linspace(40, 80, len(ids))):
            face[i, :2] = torch.tensor([float(x), y])
    for i in (UPPER_INNER[0], UPPER_INNER[-1]):
        face[i, 1] = (upper + lower) / 2
    face[OUTER_LIPS[0], :2] = torch.tensor([36.0, (upper + lower) / 2])             # the outer corners
    face[OUTER_LIPS[10], :2] = torch.tensor([84.0, (upper + lower) / 2])
    for ids, y in ((OUTER_LIPS[1:10], outer_up), (OUTER_LIPS[11:], outer_low)):
        xs = torch.linspace(38, 82, 9) if y == outer_up else torch.linspace(82, 38, 9)
        for i, x in zip(ids, xs):
            face[i, :2] = torch.tensor([float(x), y])
    if turn_deg:
        a = math.radians(turn_deg)
        rot = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        c = torch.tensor(about)
        face[:, :2] = (face[:, :2] - c) @ rot.T + c
    return face


def inner_rows(face: torch.Tensor) -> tuple[float, float]:
    """The mean row of the inner upper and the inner lower lip, corners excepted."""
    return (float(face[list(UPPER_INNER[1:-1]), 1].mean()), float(face[list(LOWER_INNER[1:-1]), 1].mean()))


def test_a_lower_contour_laid_on_the_teeth_moves_down_to_the_lower_lip():
    """Upper lip rows 50-65, teeth 66-77, lower lip 78-89; mediapipe's lower contour lies on the teeth at row 71
    (the teeth's lower 7 rows count as lip): it moves to row 78, where the lip starts. The upper contour, on the
    lip's edge already, stays; the corners stay."""
    image = mouth_photo({(50, 66): LIP, (66, 78): TOOTH, (78, 90): LIP})
    face = face_mesh(upper=66.0, lower=71.0)
    out = refine_inner_lips(face, image)
    up, low = inner_rows(out)
    assert up == pytest.approx(66.0, abs=0.01)
    assert low == pytest.approx(78.0, abs=0.51)
    for i in (UPPER_INNER[0], UPPER_INNER[-1]):
        assert torch.equal(out[i], face[i])
    assert torch.equal(out[:, 2], face[:, 2])


def test_greyscale_teeth_lighter_than_the_lips_are_found_too():
    grey = lambda c: (sum(c) / 3,) * 3                                                  # noqa: E731
    image = mouth_photo({(50, 66): grey(LIP), (66, 78): grey(TOOTH), (78, 90): grey(LIP)})
    _, low = inner_rows(refine_inner_lips(face_mesh(upper=66.0, lower=71.0), image))
    assert low == pytest.approx(78.0, abs=0.51)


def test_an_upper_contour_inside_the_dark_under_the_lip_moves_up_to_the_lip():
    """The shadow under the upper lip (rows 62-65) is the mouth's dark: mediapipe's contour in its middle (row
    64) moves up to row 62."""
    image = mouth_photo({(50, 62): LIP, (62, 66): SHADOW, (66, 78): TOOTH, (78, 90): LIP})
    up, low = inner_rows(refine_inner_lips(face_mesh(upper=64.0, lower=78.0), image))
    assert up == pytest.approx(62.0, abs=0.51)
    assert low == pytest.approx(78.0, abs=0.01)


def test_a_tilted_head_moves_its_contour_along_its_own_up_and_down():
    """The same mouth turned 20 degrees: the lower contour moves by the same 7 px, along the face's vertical."""
    a = math.radians(20.0)
    H = W = 120
    ys, xs = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    # the level photo's row of each pixel (turned back about the mouth's centre)
    c = (60.0, 70.0)
    lx = math.cos(a) * (xs - c[0]) + math.sin(a) * (ys - c[1]) + c[0]
    ly = -math.sin(a) * (xs - c[0]) + math.cos(a) * (ys - c[1]) + c[1]
    image = torch.tensor(SKIN).expand(H, W, 3).clone()
    band = (lx >= 30) & (lx < 90)
    for (y0, y1), colour in {(50, 66): LIP, (66, 78): TOOTH, (78, 90): LIP}.items():
        image[band & (ly >= y0) & (ly < y1)] = torch.tensor(colour)
    face = face_mesh(upper=66.0, lower=71.0, turn_deg=20.0, about=c)
    out = refine_inner_lips(face, image)
    move = (out - face)[list(LOWER_INNER[1:-1]), :2]
    along = torch.tensor([-math.sin(a), math.cos(a)])                       # the face's down, in the photo
    assert float((move @ along).mean()) == pytest.approx(7.0, abs=1.0)
    assert float((move[:, 0] * math.cos(a) + move[:, 1] * math.sin(a)).abs().max()) < 1e-4   # none across


def test_a_closed_mouth_and_lips_the_teeth_colour_are_left_as_they_are():
    image = mouth_photo({(50, 70): LIP, (70, 90): LIP})
    closed = face_mesh(upper=70.0, lower=70.0)
    assert torch.equal(refine_inner_lips(closed, image), closed)
    pale = mouth_photo({(50, 66): TOOTH, (66, 78): TOOTH, (78, 90): TOOTH})       # nothing tells lip from teeth
    face = face_mesh(upper=66.0, lower=71.0)
    assert torch.equal(refine_inner_lips(face, pale), face)


def test_a_tiny_mouth_at_the_photos_edge_is_handled():
    """A lower lip 2 px high whose outer part holds no pixel centre (rows 67.9 .. 69.9: its outer 40% is 69.1 ..
    69.9), the mouth running off the photo's left edge: no error, the lower lip stays, and the upper moves no
    further than REACH of its height."""
    from engine.avatar.inner_lips import REACH
    image = mouth_photo({(60, 66): LIP, (66, 68): TOOTH, (68, 70): LIP})
    face = face_mesh(upper=66.0, lower=67.9, outer_up=60.0, outer_low=69.9)
    face[:, 0] -= 50.0                                                       # x -14 .. 34: half off the photo
    out = refine_inner_lips(face, image)
    assert torch.isfinite(out).all()
    assert torch.equal(out[list(LOWER_INNER), :2], face[list(LOWER_INNER), :2])
    assert float((out - face)[:, 1].abs().max()) <= REACH * 6.0 + 1e-6
