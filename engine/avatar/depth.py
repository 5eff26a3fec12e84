"""How far the photographed person's surface lies in front of and behind the middle plane, in pixels.

engine.avatar.shell places the front shell at z0 - front and the back shell at z0 + back, for each pixel [H, W].
Both are a half-thickness around a middle: front = half - middle, back = half + middle (middle: pixels behind z0).

- Body, without a template (a face crop, or PersonalizeConfig.body_template off): the inflated silhouette
  (engine.avatar.inflate, open at the photo's frame: a body cut off by the frame goes on past it) times
  ShellConfig.thickness is the half-thickness, around z0. This is a flattened round body.
- Body, from the fitted template (engine.avatar.body_fit, when the photo shows a body): the template's nearest and
  farthest surface per pixel give the body's own thickness and its place along the view axis (a leg kicked
  forward, a torso leaning back). The silhouette stays the photo's, and so does the relief's round rim: the
  half-thickness is the inflated relief times the template's half-thickness over it (smoothed, RATIO_SIGMA).
  Where the person reaches past the template (clothes, hair, a fit a few pixels off) both the ratio and the
  middle come from the nearest template pixel, the middle fading to the template's median with the distance.
  The middle is smoothed too (MIDDLE_SIGMA) and its slope limited (MIDDLE_SLOPE): the two shells cannot show a
  limb standing free of the torso, and a cliff in them opens gaps that an orbiting camera sees through.
- Limbs, with the template: a sleeve or a trouser leg is a tube of cloth, about as deep as it is wide, but the
  template's bare limb inside it is thinner than the photo's clothed one (basketball1's jeans: a shin 0.67 as
  deep as wide, so from the side the legs only just touched and the orbit saw between them). Each arm and leg
  (the pose's bones, engine.avatar.limbs.body_parts; body pixels only) is inflated on its own, cut from the
  torso and the other limbs, which for a strip is exactly a round tube's profile (engine.avatar.inflate), and
  its half-thickness is at least LIMB_ROUND of that.
- Head: a head is about as deep as it is wide. So the head region (face, lips, eyes, hair) is inflated on its own
  and scaled to a ball: sqrt(2) * relief is exactly the sphere for a disc (engine.avatar.inflate's identity), times
  ShellConfig.head_roundness. Where the head and the body overlap, the larger half-thickness wins, so the head
  never sinks into the neck; the ball rides the same middle as the body.
- Face front: mediapipe's face mesh gives every one of its 478 points a relative depth z. z is on the same scale
  as x (pixels here, engine.avatar.landmarks), and a more negative z is nearer the camera. Inside the face the front
  surface follows it: -z is interpolated from the 4 nearest mesh points (inverse squared distance), then shifted
  so that the face oval sits on the head ball on average. The nose comes forward and the eye sockets sit back.
  The back of the head stays on the ball.
- Around the face: the mesh's face stands out of the ball (or sinks into it) by a different amount at each point
  of its oval, most on a turned face, and a cliff there is a crack that walls must close (engine.avatar.shell)
  and that shows as specks along the cheek when the head moves. So the skin, hair and neck around the face meet
  it: the face's offset from the ball spreads outward from the oval, ring by ring, fading linearly to nothing
  over FACE_BLEND of the face's width. The face itself keeps the mesh's shape.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.avatar.inflate import inflate_open
from engine.avatar.knn import knn
from engine.avatar.limbs import ARMS, BONES
from engine.avatar.regions import BODY, EYES, FACE, HAIR, LIPS, face_index_sets
from engine.render.camera import unproject

MIDDLE_SIGMA = 6.0         # pixels: the blur of the template's middle depth
MIDDLE_SLOPE = 1.0         # its slope limit (depth pixels per image pixel; a cliff ramps at half of it), _limit_slope
FADE = 0.05                # past the template its middle fades to the median over this share of the photo's side
RATIO_SIGMA = 6.0          # pixels: the blur of the template's thickness over the relief's
RATIO_RANGE = (0.25, 4.0)  # the template may thin the relief to a quarter or thicken it four times
FACE_BLEND = 0.35          # the skin and hair around the face meet it over this share of its width (mesh x extent)
BLEND_SWEEPS = 200         # Jacobi sweeps that smooth that blend (_relax)
LIMB_ROUND = 0.9           # a clothed limb's half-thickness is at least this x a round tube's of its width


def face_front_depth(face: Tensor, pixels: Tensor, k: int = 4) -> Tensor:
    """-z of the face mesh face [P, 3] (x, y, z pixels) at pixels [M, 2] (x, y): inverse-squared-distance
    weights over the k nearest mesh points in the image plane. -> [M]"""
    flat = lambda xy: torch.cat([xy.float(), torch.zeros(xy.shape[0], 1)], 1)   # noqa: E731 (knn is 3-D)
    d2, idx = knn(flat(pixels), flat(face[:, :2]), k)
    w = 1.0 / (d2 + 0.25)
    return (w * -face[idx, 2]).sum(1) / w.sum(1)


def _fill_nearest(value: Tensor, known: Tensor, inside: Tensor, max_rings: int | None = None) -> tuple[Tensor, Tensor]:
    """value [H, W] spread from the `known` pixels to every `inside` pixel, ring by ring (each new pixel takes
    the mean of its known 3x3 neighbours), at most max_rings rings out (default: all the way). -> (filled [H, W],
    rings [H, W]: how many rings out each pixel is, 0 on the known ones and on those never reached)."""
    value, known = torch.where(known, value, torch.zeros_like(value)), known.clone()
    rings = torch.zeros_like(value)
    for ring in range(1, (max_rings or max(value.shape)) + 1):
        todo = inside & ~known
        if not bool(todo.any()):
            break
        s = F.avg_pool2d((value * known)[None, None], 3, 1, 1)[0, 0]
        n = F.avg_pool2d(known.float()[None, None], 3, 1, 1)[0, 0]
        new = todo & (n > 0)
        value = torch.where(new, s / n.clamp(min=1e-9), value)
        rings = torch.where(new, float(ring), rings)
        known = known | new
    return value, rings


def _blur_inside(value: Tensor, inside: Tensor, sigma: float) -> Tensor:
    """Normalised Gaussian blur of value [H, W] over the `inside` pixels only."""
    r = max(1, int(3 * sigma))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float32) / sigma) ** 2)
    def sep(t: Tensor) -> Tensor:
        t = F.conv2d(t[None, None], k.view(1, 1, 1, -1), padding=(0, r))
        return F.conv2d(t, k.view(1, 1, -1, 1), padding=(r, 0))[0, 0]
    m = inside.float()
    return torch.where(inside, sep(value * m) / sep(m).clamp(min=1e-9), value)


def _limit_slope(value: Tensor, inside: Tensor, slope: float) -> Tensor:
    """value [H, W] made `slope`-Lipschitz over the `inside` pixels (per pixel step, 8 neighbours): the mean of
    its largest slope-limited function below it and smallest above it (both by repeated 3x3 min / max pooling).
    A cliff becomes a ramp centred on it, twice as wide as either envelope's, rising at half the slope (the one
    step across the cliff at the full slope); parts already gentler than `slope` stay as they are."""
    big = float(value[inside].abs().max()) + 1e6 if bool(inside.any()) else 1e6
    upper = torch.where(inside, value, torch.full_like(value, big))
    lower = torch.where(inside, value, torch.full_like(value, -big))
    for _ in range(max(value.shape)):
        up = torch.minimum(upper, -F.max_pool2d(-upper[None, None], 3, 1, 1)[0, 0] + slope)
        lo = torch.maximum(lower, F.max_pool2d(lower[None, None], 3, 1, 1)[0, 0] - slope)
        up, lo = torch.where(inside, up, upper), torch.where(inside, lo, lower)
        if torch.equal(up, upper) and torch.equal(lo, lower):
            break
        upper, lower = up, lo
    return torch.where(inside, (upper + lower) / 2, value)


def template_body(person: Tensor, relief: Tensor, front: Tensor, back: Tensor, covered: Tensor) -> tuple[Tensor, Tensor]:
    """The body's (half-thickness [H, W], middle [H, W]: pixels behind z0) from the template's depths
    (engine.avatar.body_fit.body_depth) over the person [H, W]; relief [H, W] is the inflated silhouette (the shape
    of the rim). Its front surface is half - middle in front of z0, its back half + middle behind it."""
    covered = covered & person
    if not bool(covered.any()):
        return relief.clone(), torch.zeros_like(relief)
    middle, rings = _fill_nearest((back - front) / 2, covered, person)
    # past the template (another person at the edge, a prop, loose clothes) the middle fades to the body's own
    fade = torch.exp(-rings / (FADE * max(person.shape)))
    middle = fade * middle + (1 - fade) * float(((back - front) / 2)[covered].median())
    middle = _blur_inside(middle, person, MIDDLE_SIGMA)
    middle = _limit_slope(middle, person, MIDDLE_SLOPE)
    # the template's half-thickness as a multiple of the relief: smooth, so the silhouette keeps its round rim
    sure = covered & (relief > 2.0)
    ratio = ((front + back) / 2 / relief.clamp(min=1e-6)).clamp(RATIO_RANGE[0], RATIO_RANGE[1])
    ratio = _blur_inside(_fill_nearest(ratio, sure, person)[0], person, RATIO_SIGMA) if bool(sure.any()) \
        else torch.ones_like(relief)
    zero = torch.zeros_like(relief)
    return torch.where(person, relief * ratio, zero), torch.where(person, middle, zero)


def _limb_groups() -> list[list[int]]:
    """The bone ids (engine.avatar.limbs.BONES) of each arm and each leg: one list per side and kind."""
    groups: dict[tuple[str, bool], list[int]] = {}
    for i, (name, _, _) in enumerate(BONES):
        groups.setdefault((name.split("_")[0], i in ARMS), []).append(i)
    return list(groups.values())


def limb_tubes(person: Tensor, regions: Tensor, parts: Tensor) -> Tensor:
    """[H, W] LIMB_ROUND x the half-thickness of each arm and leg as a round tube (0 elsewhere): parts [H, W] the
    body part of each pixel (engine.avatar.limbs.body_parts: a bone id, or TORSO); only BODY pixels of the
    person count, and a pixel touching (4 neighbours) another limb or anything else of the person is cut, so
    that each limb is inflated on its own."""
    group = torch.full_like(parts, -1)
    for k, bones in enumerate(_limb_groups()):
        group[torch.isin(parts, torch.tensor(bones))] = k
    group[~(person & (regions == BODY))] = -1
    H, W = group.shape
    g_pad = F.pad(group[None, None], (1, 1, 1, 1), value=-1)[0, 0]
    p_pad = F.pad(person[None, None].float(), (1, 1, 1, 1))[0, 0] > 0.5      # off the photo: no neighbour
    own = group >= 0
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):                            # up, down, left, right
        own &= ~(p_pad[dy:dy + H, dx:dx + W] & (g_pad[dy:dy + H, dx:dx + W] != group))
    if not bool(own.any()):
        return torch.zeros(person.shape)
    return LIMB_ROUND * inflate_open(own)


def surface_depth(person: Tensor, regions: Tensor, face: Tensor | None, thickness: float,
                  head_roundness: float, progress: bool = False,
                  body: tuple[Tensor, Tensor, Tensor] | None = None, parts: Tensor | None = None
                  ) -> tuple[Tensor, Tensor]:
    """person [H, W] bool, regions [H, W] (engine.avatar.regions labels), face [478, 3] or None, body: the fitted
    template's (front, back, covered) [H, W] (engine.avatar.body_fit.body_depth) or None (the inflated relief
    alone), parts [H, W] each pixel's body part (engine.avatar.limbs.body_parts) or None: with the template, the
    limbs are at least round tubes (`limb_tubes`) -> (front [H, W], back [H, W]) depths in pixels in front of /
    behind z0, zero outside the person. Without a template both are >= 0; with one, a body part that lies wholly
    behind z0 has a negative front."""
    if person.shape != regions.shape:
        raise ValueError(f"person/regions: shapes differ, {list(person.shape)} vs {list(regions.shape)}")
    relief = thickness * inflate_open(person, progress=progress)
    half, middle = (relief, torch.zeros_like(relief)) if body is None else template_body(person, relief, *body)
    if body is not None and parts is not None:
        half = torch.maximum(half, limb_tubes(person, regions, parts))
    head = person & torch.isin(regions, torch.tensor([FACE, LIPS, EYES, HAIR]))
    if int(head.sum()) > 0:
        ball = head_roundness * math.sqrt(2.0) * inflate_open(head)
        half = torch.where(head, torch.maximum(half, ball), half)
    front, back = half - middle, half + middle                         # the head's ball rides the middle too
    if int(head.sum()) == 0:
        return front, back
    facial = person & torch.isin(regions, torch.tensor([FACE, LIPS, EYES]))
    if face is None or int(facial.sum()) == 0:
        return front, back
    ys, xs = torch.nonzero(facial, as_tuple=True)
    mesh = face_front_depth(face, torch.stack([xs, ys], 1))
    oval = face[face_index_sets()["oval"]]
    ox = oval[:, 0].long().clamp(0, person.shape[1] - 1)
    oy = oval[:, 1].long().clamp(0, person.shape[0] - 1)
    shift = float(front[oy, ox].mean() + oval[:, 2].mean())            # the oval's -z lands on the ball
    offset = torch.zeros_like(front)
    offset[ys, xs] = torch.maximum(mesh + shift, -middle[ys, xs]) - front[ys, xs]   # never behind the middle
    front = front + offset
    # the skin, hair and neck around the face meet its edge, fading back to their own depth over `reach` rings
    reach = round(FACE_BLEND * float(face[:, 0].max() - face[:, 0].min()))
    if reach < 1:
        return front, back
    spread, rings = _fill_nearest(offset, facial, person, max_rings=reach)
    around = person & ~facial & (rings > 0)
    fade = (1.0 - rings / (reach + 1)).clamp(min=0.0)
    blend = _relax(fade * spread, around, person, BLEND_SWEEPS)
    front = torch.where(around, torch.maximum(front + blend, -middle), front)
    return front, back


def _relax(value: Tensor, free: Tensor, inside: Tensor, sweeps: int) -> Tensor:
    """value [H, W] with its `free` pixels relaxed toward a harmonic function (Jacobi sweeps: each takes the mean
    of its 4 neighbours inside `inside`; the other pixels hold their values). The rays of a ring-by-ring fill from
    an edge whose values vary are smoothed out, and the free pixels still meet the held ones without a step."""
    if not bool(free.any()):
        return value
    ys, xs = torch.nonzero(free, as_tuple=True)                # work in the free pixels' box, one pixel wider
    y0, y1 = max(int(ys.min()) - 1, 0), min(int(ys.max()) + 2, value.shape[0])
    x0, x1 = max(int(xs.min()) - 1, 0), min(int(xs.max()) + 2, value.shape[1])
    v, f, m = value[y0:y1, x0:x1].clone(), free[y0:y1, x0:x1], inside[y0:y1, x0:x1].float()
    cross = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])[None, None]
    n = F.conv2d(m[None, None], cross, padding=1)[0, 0].clamp(min=1.0)
    for _ in range(sweeps):
        v = torch.where(f, F.conv2d((v * m)[None, None], cross, padding=1)[0, 0] / n, v)
    out = value.clone()
    out[y0:y1, x0:x1] = v
    return out


def surface_z(depth: Tensor, side: float, K: Tensor, z0: float) -> Tensor:
    """Camera-frame z of a shell's surface at depth [...] (pixels, surface_depth): z0 + side * depth * z0 / fx;
    side -1 the front surface, +1 the back."""
    return z0 + side * depth * z0 / float(K[0, 0])


def surface_normals(depth: Tensor, K: Tensor, z0: float, side: float) -> Tensor:
    """Outward unit normals [H, W, 3] of the surface z = z0 + side * depth * z0 / fx through the photo camera
    (side -1: the front surface, facing the camera; +1: the back). depth [H, W] in pixels (surface_depth).
    Normals come from the cross product of the surface's pixel derivatives (central differences), so near the
    rim of the silhouette, where the inflated relief is steep, they turn sideways. engine.render.splat culls by them."""
    H, W = depth.shape
    z = surface_z(depth.double(), side, K, z0)
    yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float64) + 0.5, torch.arange(W, dtype=torch.float64) + 0.5,
                            indexing="ij")
    P = unproject(xx, yy, z, K)                                           # [H, W, 3]
    dv, du = torch.gradient(P, dim=(0, 1))
    n = torch.linalg.cross(du, dv)
    n = torch.where((n[..., 2:3] * side) < 0, -n, n)                        # outward: the front faces -z, the back +z
    return (n / n.norm(dim=-1, keepdim=True).clamp(min=1e-12)).float()
