"""The mouth: where the face tears open when the jaw drops, and what shows through.

A photo shows a closed (or smiling) mouth as one continuous surface, so linear-blend skinning would stretch
it like rubber when the jaw opens: the lower lip drags the upper teeth along, and gaps open up in random
places. Two fixes, both made from mediapipe's inner-lip contour (face-mesh indices from its FACEMESH_LIPS table):

- a split line between the inner upper and inner lower lip. Inside the mouth's column (between the mouth
  corners, from below the nose to the chin) a Gaussian above the line binds only to control particles above it,
  and one below binds only to particles below it. So the upper lip and teeth stay with the head and the lower
  lip, teeth and chin go with the jaw (engine.avatar.skinning, through the side ids below). Skinning splits
  only the lips' band (`lip_band`): the chin below it binds to its particles whole, so no seam under the
  mouth corners tears open as the jaw drops.
- an under-layer behind the face (`under_layer`): dark inside the lips (the mouth interior, which shows when
  they part) and a blurred, softer copy of the skin elsewhere, which shows wherever the jaw stretches the
  front shell thin, instead of the hair-coloured back of the head.

- lips that can close (`closing_shift`): a photo that smiles with parted lips would otherwise keep its gap as
  the rest pose, so no /p b m/ could ever be shown. The avatar's rest mouth is closed instead: the upper lip
  slides down by a quarter of the gap and the lower lip up by the rest (UPPER_SHARE), each half a pixel past
  the line where they meet (OVERLAP_PX), fading to nothing at the nose and the chin, and the photo's own
  pixels between the lips are left out of the skin (engine.avatar.teeth builds what is behind). The lower lip
  moves as one, down to its outer edge (`_lift_weight`), and the shift fades from there to the chin; the upper
  one fades from its inner edge to the nose. So the upper lip and the skin under the lower lip stretch, and
  personalize grows their splats by the stretch. The lower side
  also comes forward to the upper lip's depth (`closing_depth`): a wide-open photo mouth has the lower lip
  well behind the upper, where it would close behind the teeth.

All of it is laid out on the level face (`Level`): the photo's face turned about the mouth's centre until its
eye line is level, so that on a tilted head "above", "below" and "between the corners" follow the head, not the
photo's rows and columns (on a head tilted 30 degrees the split line and the closing shift in photo columns cut
across the lips, and the lower lip, stretched the wrong way, turned porous over the teeth).

Pixels are (x, y) in the photo; sides are 0 = not split, 1 = upper, 2 = lower.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from engine.avatar.regions import convex_hull, polygon_mask
from engine.render.camera import unproject
from engine.render.gaussians import Gaussians, rgb_to_sh_dc

UPPER_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)   # mediapipe face mesh, left to right corner
LOWER_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
OUTER_LIPS = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)
# The lips by name, without the corners (61/291 outer, 78/308 inner). On a closed mouth both inner lips lie on one
# line, where a point's height cannot tell upper from lower: the name can.
UPPER_LIP = OUTER_LIPS[1:10] + UPPER_INNER[1:-1]
LOWER_OUTER = (OUTER_LIPS[0],) + OUTER_LIPS[10:]     # the lower lip's outer contour, its corners included
LOWER_LIP = OUTER_LIPS[11:] + LOWER_INNER[1:-1]
NOSE_BOTTOM, CHIN = 2, 152
BAND_MARGIN = 0.05       # eye widths below the lower lip's outer edge that skinning still splits (lip_band)
JAW_REACH = 0.4          # eye widths below the lips the dark interior reaches (the widest jaw drop is ~0.35)
INTERIOR_RGB = (0.20, 0.07, 0.08)
OVERLAP_PX = 0.5         # each lip closes this far past the line where they meet (at most half the gap): lips
                         # that only touched left a seam of half-covered pixels; the teeth behind showed through
FORWARD_GAP_PX = 2.0     # a photo lip gap this wide (px) or wider brings the lower lip all the way forward to the
                         # upper's depth as it closes (`closing_depth`); a closed photo mouth's lips stay where they meet
UPPER_SHARE = 0.25       # of the photo's lip gap, the share the upper lip comes down to close it (the lower lip
                         # comes up the rest). Under a half, so that the photo's own upper teeth, which a smile shows
                         # below the upper lip, still show when the jaw drops (engine.avatar.teeth paints them)
CORNER_INSET = 0.15      # of the inner lips' width: below the lips the interior is dark only this far inside the corners


class Level:
    """The level face: face [478, >=2] pixels turned about the mouth's centre (the mean of the inner lips) by
    minus the eye line's angle (33 -> 263), so that the eye line is level. `face` is the turned face [478, 2];
    points() turns photo points [M, 2] onto it and back() turns points or, with about=False, vectors [M, 2]
    laid out on it back into the photo. An upright face is turned by 0 (to float rounding)."""

    def __init__(self, face: Tensor):
        d = (face[263, :2] - face[33, :2]).double()
        angle = float(torch.atan2(d[1], d[0]))
        self.cos, self.sin = float(np.cos(angle)), float(np.sin(angle))
        self.centre = face[list(UPPER_INNER) + list(LOWER_INNER), :2].double().mean(0)
        self.face = self.points(face[:, :2])

    def _turn(self, xy: Tensor, sin: float, about: bool) -> Tensor:
        v = xy.double() - self.centre if about else xy.double()
        out = torch.stack([self.cos * v[:, 0] - sin * v[:, 1], sin * v[:, 0] + self.cos * v[:, 1]], 1)
        return (out + self.centre if about else out).to(xy.dtype if xy.is_floating_point() else torch.float32)

    def points(self, xy: Tensor) -> Tensor:
        """Photo points [M, 2] -> the same points on the level face [M, 2]."""
        return self._turn(xy, -self.sin, True)

    def back(self, xy: Tensor, about: bool = True) -> Tensor:
        """Points [M, 2] on the level face -> the photo (about=False: vectors, turned only)."""
        return self._turn(xy, self.sin, about)


def arc_y(face: Tensor, ids: tuple[int, ...], x: Tensor) -> np.ndarray:
    """y [M] (float64) of the face-mesh arc through points ids, linearly interpolated at columns x [M] (clamped
    to the arc's ends)."""
    pts = face[list(ids), :2].double().numpy()
    order = np.argsort(pts[:, 0])
    return np.interp(x.double().numpy(), pts[order, 0], pts[order, 1])


def split_line_y(face: Tensor, x: Tensor) -> Tensor:
    """y of the split line [M] at pixel columns x [M] (clamped to the mouth corners): the mean of the inner
    upper and inner lower lip contours, each linearly interpolated."""
    return torch.from_numpy((arc_y(face, UPPER_INNER, x) + arc_y(face, LOWER_INNER, x)) / 2).float()


def closed_line_y(face: Tensor, x: Tensor) -> Tensor:
    """y [M] where the inner lips meet in the avatar's closed rest mouth (`closing_shift`), at pixel columns x
    [M] (clamped to the mouth corners): UPPER_SHARE of the way from the inner upper to the inner lower lip."""
    upper, lower = inner_lip_contours(face, x)
    return upper + UPPER_SHARE * (lower - upper)


def _overlap(gap: Tensor) -> Tensor:
    """How far [M] each lip closes past the line where they meet, for the photo's lip gap [M] (px, >= 0):
    OVERLAP_PX, at most half the gap (a closed photo mouth does not move)."""
    return gap.clamp(0, 2 * OVERLAP_PX) / 2


def resting_lip_edges(face: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """y [M] of the inner upper and the inner lower lip's edge in the closed rest mouth (`closing_shift`), at
    pixel columns x [M]: each `_overlap` past `closed_line_y`, over the other."""
    upper, lower = inner_lip_contours(face, x)
    line, lap = closed_line_y(face, x), _overlap(lower - upper)
    return line + lap, line - lap


def mouth_sides(face: Tensor, pixels: Tensor, restrict: Tensor | None = None) -> Tensor:
    """Side [M] (0 not split, 1 upper, 2 lower) of pixels [M, 2] (x, y). Only pixels in the mouth column are
    split, and of those only where `restrict` [M] bool is set (default: all). On the level face (`Level`)."""
    level = Level(face)
    face, pixels = level.face, level.points(pixels.float())
    x, y = pixels[:, 0].float(), pixels[:, 1].float()
    left, right = float(face[list(UPPER_INNER), 0].min()), float(face[list(UPPER_INNER), 0].max())
    top, bottom = float(face[NOSE_BOTTOM, 1]), float(face[CHIN, 1])
    column = (x >= left) & (x <= right) & (y >= top) & (y <= bottom)
    if restrict is not None:
        column &= restrict
    below = y > split_line_y(face, x)
    side = torch.where(below, 2, 1)
    return torch.where(column, side, torch.zeros_like(side))


def lip_band(face: Tensor, pixels: Tensor) -> Tensor:
    """[M] bool: pixels [M, 2] (x, y) no lower than BAND_MARGIN eye widths below the lower lip's outer contour
    (the corners' height beyond them). Skinning splits upper from lower only here: below it the chin binds to
    its particles whole, so the column's side edge under the mouth corners is no seam that tears as the jaw
    drops (the closing of the rest mouth still uses the whole column). On the level face (`Level`)."""
    eye = float((face[33, :2] - face[263, :2]).norm())
    level = Level(face)
    face, pixels = level.face, level.points(pixels.float())
    bottom = arc_y(face, LOWER_OUTER, pixels[:, 0])                       # 61, 291 .. 146: the lower outer lip
    return pixels[:, 1].double() <= torch.from_numpy(bottom) + BAND_MARGIN * eye


def particle_sides(face: Tensor, pixels: Tensor, names: list[str] | None = None) -> Tensor:
    """Side [K] (1 upper, 2 lower) of every particle at pixels [K, 2], by the split line extended flat beyond
    the mouth corners; a particle named for a lip landmark ("face:I", I in UPPER_LIP / LOWER_LIP) takes its
    lip's side whatever its height (names [K], optional). On the level face (`Level`)."""
    level = Level(face)
    face, pixels = level.face, level.points(pixels.float())
    side = torch.where(pixels[:, 1].float() > split_line_y(face, pixels[:, 0].float()), 2, 1)
    for k, name in enumerate(names or []):
        kind, _, i = name.partition(":")
        if kind == "face" and i.isdigit():
            side[k] = 1 if int(i) in UPPER_LIP else 2 if int(i) in LOWER_LIP else side[k]
    return side


def inner_lip_contours(face: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """y of the inner upper and inner lower lip contours [M] at columns x [M] (clamped to the mouth corners)."""
    upper, lower = (torch.from_numpy(arc_y(face, ids, x)).float() for ids in (UPPER_INNER, LOWER_INNER))
    return upper, lower


def in_gap(face: Tensor, pixels: Tensor) -> Tensor:
    """[M] bool: pixels [M, 2] (x, y) strictly between the inner upper and inner lower lip (the photo's open
    mouth), between the mouth corners, on the level face (`Level`)."""
    level = Level(face)
    face, pixels = level.face, level.points(pixels.float())
    x, y = pixels[:, 0].float(), pixels[:, 1].float()
    left, right = float(face[list(UPPER_INNER), 0].min()), float(face[list(UPPER_INNER), 0].max())
    upper, lower = inner_lip_contours(face, x)
    return (x > left) & (x < right) & (y > upper + 0.5) & (y < lower - 0.5)


def _lift_weight(face: Tensor, x: Tensor, y: Tensor, lower: Tensor) -> Tensor:
    """The share [M] of the lower lip's closing lift that points (x, y) [M] of the level face take, the inner
    lower lip at rows lower [M]: all of it over the whole lower lip, down to its outer contour (the jaw carries
    the lip as one), then less and less to none at the chin, where the skin between stretches. (A lift fading
    from the inner lip stretched the lip itself: on a speaker's wide-open photo mouth by 40%, a lower lip twice
    the upper's height, which the face tracker read as a mouth 0.09 eye widths open.)"""
    chin = float(face[CHIN, 1])
    outer = torch.from_numpy(arc_y(face, LOWER_OUTER, x)).float().clamp(min=lower)
    return ((chin - y) / (chin - outer).clamp(min=1.0)).clamp(0, 1)


def closing_shift(face: Tensor, pixels: Tensor, sides: Tensor) -> Tensor:
    """Shift [M, 2] (dx, dy pixels) that closes the photo's lip gap, for points at pixels [M, 2] on mouth side
    sides [M] (engine.avatar.mouth_sides; 0 never moves). On the level face (`Level`) the upper side moves down
    by UPPER_SHARE of the gap at its column, times a weight that is 1 at the inner lip and 0 at the nose bottom,
    and the lower side moves up by the rest of it, the whole lower lip as one, fading to 0 from its outer edge to
    the chin (`_lift_weight`); both meet on `closed_line_y`, each OVERLAP_PX past it. The shift is that, turned
    back into the photo (straight down the photo's columns for an upright face, along the face's own up-down for
    a tilted one)."""
    level = Level(face)
    face, pixels = level.face, level.points(pixels.float())
    x, y = pixels[:, 0].float(), pixels[:, 1].float()
    upper, lower = inner_lip_contours(face, x)
    gap = (lower - upper).clamp(min=0)
    nose = float(face[NOSE_BOTTOM, 1])
    w_up = ((y - nose) / (upper - nose).clamp(min=1.0)).clamp(0, 1)
    w_low = _lift_weight(face, x, y, lower)
    lap = _overlap(gap)                                       # each lip this far past the line: no seam
    dy = torch.where(sides == 1, (UPPER_SHARE * gap + lap) * w_up,
                     torch.where(sides == 2, -((1.0 - UPPER_SHARE) * gap + lap) * w_low, torch.zeros_like(x)))
    return level.back(torch.stack([torch.zeros_like(dy), dy], 1), about=False)


def closing_depth(face: Tensor, pixels: Tensor, sides: Tensor, front: Tensor) -> Tensor:
    """How far [M] (pixels of depth, toward the camera) closing the photo's lips brings points at pixels [M, 2] on
    mouth side sides [M] forward, given the photo's front surface depth front [H, W] (pixels, larger = nearer,
    engine.avatar.depth). A wide-open photo mouth has its lower lip well behind the upper (the jaw swings down
    and back): lifted by `closing_shift` alone, it stayed that far back and the teeth laid behind the upper lip
    stood in front of it (a speaker's photo: teeth between the lips at rest, whose inner-lip gap never went under
    0.10 eye widths). So the lower side comes forward by the depth between the two inner lips at its column (the
    upper lip's surface 1 px above its inner edge, the lower's 1 px below), with the lift's own weight
    (`_lift_weight`: 1 over the lower lip, 0 at the chin), in full where the photo's gap is FORWARD_GAP_PX or
    wider and not at all where its lips meet; never back, and the upper side not at all."""
    H, W = front.shape
    level = Level(face)
    lface, lpx = level.face, level.points(pixels.float())
    x, y = lpx[:, 0].float(), lpx[:, 1].float()
    upper, lower = inner_lip_contours(lface, x)
    def depth_at(yy: Tensor) -> Tensor:
        p = level.back(torch.stack([x, yy], 1)).floor().long()
        return front[p[:, 1].clamp(0, H - 1), p[:, 0].clamp(0, W - 1)].float()
    ahead = (depth_at(upper - 1.0) - depth_at(lower + 1.0)).clamp(min=0)
    ahead = ahead * ((lower - upper) / FORWARD_GAP_PX).clamp(0, 1)     # lips that already meet stay as they are
    return torch.where(sides == 2, ahead * _lift_weight(lface, x, y, lower), torch.zeros_like(x))


def under_layer(face: Tensor, image: Tensor, facial: Tensor, front: Tensor, K: Tensor, z0: float,
                depth_behind: float, interior_rgb: Tensor | None = None,
                mouth_behind: float | None = None) -> tuple[Gaussians, Tensor, Tensor]:
    """A second, softer skin behind the face: Gaussians depth_behind (world units) behind the front surface
    (front [H, W] in pixels, engine.avatar.depth), dark red on every pixel of the outer-lip hull and JAW_REACH below
    it (the mouth interior),
    blurred photo colours on every 2nd pixel of the rest of `facial` [H, W] with twice the footprint. When the
    jaw stretches the front shell, this layer shows through its gaps instead of the back of the head.
    interior_rgb [3] colours the mouth interior (default INTERIOR_RGB) and mouth_behind (world units, default
    depth_behind) sets it deeper than the skin, to leave room for the teeth (engine.avatar.teeth).
    Below the lips and beside the corners the layer lies as deep but skin-coloured, and is skin (not mouth).
    -> (Gaussians [M], pixels [M, 2] (x, y), inside_mouth [M] bool (the dark interior), behind_mouth [M] bool (the
    interior and the skin-coloured part beside the corners: what an open mouth shows behind it, which stays with
    the head; skinned with the jaw, the part beside the corners went down with the lower lip and left a hole to
    the background at each corner of the open mouth))."""
    H, W = front.shape
    hull = polygon_mask(convex_hull(face[list(OUTER_LIPS), :2]), H, W)
    # the interior reaches below the lips as far as the jaw drops (JAW_REACH eye widths), behind the chin: a
    # lower lip that drops further than its own height uncovers it, not the background. Below is the face's own
    # down (`Level`), and so is beside the corners.
    eye = float((face[33, :2] - face[263, :2]).norm())
    level = Level(face)
    below = torch.zeros_like(hull)
    for d in range(1, max(int(JAW_REACH * eye), 1) + 1):
        below |= _shifted(hull, round(-level.sin * d), round(level.cos * d))
    mouth = hull | (below & facial)                                     # never outside the face
    # below the corners the cheek stretches thin over it as the jaw drops: there it is skin-coloured (still deep,
    # behind the teeth), or it shows through as dark specks beside the mouth
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    lx = level.points(torch.stack([xx.reshape(-1), yy.reshape(-1)], 1).float() + 0.5)[:, 0].reshape(H, W)
    x0, x1 = sorted((float(level.face[UPPER_INNER[0], 0]), float(level.face[UPPER_INNER[-1], 0])))
    inset = CORNER_INSET * (x1 - x0)
    cheek = mouth & ~hull & ((lx < x0 + inset) | (lx > x1 - inset))
    skin = facial & ~hull & (yy % 2 == 0) & (xx % 2 == 0)
    ys, xs = torch.nonzero(mouth | skin, as_tuple=True)
    if ys.numel() == 0:
        raise ValueError("face: the face and lip hull cover no pixel")
    inside = mouth[ys, xs]
    extra_ys, extra_xs = torch.nonzero(mouth & skin, as_tuple=True)     # below the lips: skin in front as well
    ys, xs = torch.cat([ys, extra_ys]), torch.cat([xs, extra_xs])
    inside = torch.cat([inside, torch.zeros(len(extra_ys), dtype=torch.bool)])
    fx = float(K[0, 0])
    deep = depth_behind if mouth_behind is None else mouth_behind
    z = z0 - front[ys, xs] * z0 / fx + torch.where(inside, deep, depth_behind)
    means = unproject(xs + 0.5, ys + 0.5, z, K)
    sigma = torch.where(inside, 0.8, 1.6) * z / fx
    blurred = _box_blur(image, 2)[ys, xs]
    interior = torch.tensor(INTERIOR_RGB) if interior_rgb is None else interior_rgb
    dark = inside & ~cheek[ys, xs]
    rgb = torch.where(dark[:, None], interior, blurred)
    n = means.shape[0]
    g = Gaussians(means.float(), torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1),
                  torch.stack([sigma, sigma, 0.3 * sigma], -1).float(), torch.ones(n),
                  rgb_to_sh_dc(rgb)[:, None, :].float().contiguous())
    return g, torch.stack([xs, ys], -1), dark, inside


def _shifted(mask: Tensor, dx: int, dy: int) -> Tensor:
    """mask [H, W] bool moved by (dx, dy) pixels, what moves in from the edge False."""
    H, W = mask.shape
    out = torch.zeros_like(mask)
    if abs(dx) < W and abs(dy) < H:
        out[max(dy, 0):H + min(dy, 0), max(dx, 0):W + min(dx, 0)] = \
            mask[max(-dy, 0):H + min(-dy, 0), max(-dx, 0):W + min(-dx, 0)]
    return out


def _box_blur(image: Tensor, r: int) -> Tensor:
    """image [H, W, 3] averaged over (2r+1)^2 windows (edges replicated)."""
    x = torch.nn.functional.pad(image.permute(2, 0, 1)[None], (r, r, r, r), mode="replicate")
    return torch.nn.functional.avg_pool2d(x, 2 * r + 1, 1)[0].permute(1, 2, 0)
