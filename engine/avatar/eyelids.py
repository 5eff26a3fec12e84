"""Eyelids that close: which Gaussians a blink moves, and how.

A blink (engine.motion.procedural) moves the upper-lid control particles (the upper arc of mediapipe's eye
contour, corners excepted) down onto their partners on the lower arc, and pushes each eye's "eyeball" particle
(an iris landmark, EYEBALLS) back, away from the camera. Plain nearest-particle skinning carries only part of the
lid's motion to the Gaussians: a lid Gaussian also follows brow, iris and lower-lid particles that stay where
they are, so the lid stops half way and smears the iris; skin below the eye, the brow or a glasses frame above
it follow the lid a little and bend. `eyelid_skinning` rebinds the Gaussians around each eye so that:

- the upper lash line is the top LASH share of the eye opening and a band LASH_ABOVE of its height above the
  contour: it goes with the lid, squeezed so that all of it lands on the lower lid's line
  (f = (y_lower - y) / (y_lower - y_upper), so 1 on the contour and a little over 1 above it), a thin line as
  on a closed eye.
- on the upper lid above that band, up to LID_TOP of the way to the brow's lower edge, a Gaussian follows the
  upper lid with the band's top weight on the lowest LID_RIGID of that zone (the lid itself moves as one), then
  the weight falls smoothly to 0 (the skin under the brow stretches). The rest of its weight goes to its
  nearest particles that a blink does not move (a weight over 1 leaves them a small negative one; rows still
  sum to 1). Nothing at or above the brow follows the lid.
- in the rest of the eye opening (the white, the iris, the lower lashes), a Gaussian follows its eye's eyeball
  particle alone. The lids do not drag it; a closing blink pushes it back behind the under-layer, and the lid
  slides down over it.
- every other Gaussian that the plain skinning tied to a lid or eyeball particle (skin below the eye, beyond
  the corners, the back of the head, the under-layer) is rebound to its nearest particles a blink does not move.

Only front-shell Gaussians of the face and eye regions are rebound to the lid or the eyeball. A lid row spends
two of its k slots on the two upper-lid particles that bracket the Gaussian's column (linear in x), with total
weight f, and the others on what holds it in place, with weight 1 - f; rows still sum to 1, so head motion
(which moves all face particles together) moves them rigidly as before.

The stretched lid thins out, and where it does the under-layer behind the face shows (engine.avatar.mouth
.under_layer, a blurred copy of the photo): behind the eye opening, that copy is the dark of the iris, blurred a
little beyond it. `cover_the_eyes` gives the under-layer behind each lid and eye opening the median colour of
that eye's upper lid, so a closed eye is lid-coloured all the way down to the lash line.

Positions are photo pixels (x right, y down).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from engine.avatar.regions import EYES, FACE
from engine.avatar.skinning import default_sigma, skin_weights
from engine.render.gaussians import Gaussians, rgb_to_sh_dc, sh_dc_to_rgb

# mediapipe face mesh, from the outer to the inner corner. Upper and lower arcs share the corners; each upper-lid
# vertex faces the lower-lid vertex at the same position of the other arc (its blink partner).
RIGHT_UPPER = (33, 246, 161, 160, 159, 158, 157, 173, 133)
RIGHT_LOWER = (33, 7, 163, 144, 145, 153, 154, 155, 133)
LEFT_UPPER = (263, 466, 388, 387, 386, 385, 384, 398, 362)
LEFT_LOWER = (263, 249, 390, 373, 374, 380, 381, 382, 362)
RIGHT_BROW_LOWER = (46, 53, 52, 65, 55)          # the brow's lower edge, outer to inner
LEFT_BROW_LOWER = (276, 283, 282, 295, 285)
EYES_ARCS = ((RIGHT_UPPER, RIGHT_LOWER, RIGHT_BROW_LOWER), (LEFT_UPPER, LEFT_LOWER, LEFT_BROW_LOWER))
EYEBALLS = ("face:468", "face:474")              # a canonical iris slot in each eye (right, left): the eyeball
LID_TOP = 0.8                                    # the lid zone ends this far from the lash line to the brow
LID_RIGID = 0.5                                  # and its lower part (the lid proper) moves with the lash line
LASH = 0.3                                       # the top of the opening (this share of its height) is lash line:
                                                 # it goes with the lid
LASH_ABOVE = 0.2                                 # and so is a band this high (x the opening's height) above the
                                                 # contour: a photo's upper lashes stand above the lid margin
                                                 # mediapipe traces, and would stay a second dark line on the
                                                 # closed eye instead of landing on the lower lid
COVER_MARGIN = 0.25                              # the under-layer is recoloured this far (x the eye's height) around
                                                 # the opening too: it is blurred, and its Gaussians are wide


def lid_partners() -> list[tuple[str, str]]:
    """(upper-lid slot, lower-lid slot) for each upper-lid vertex that a blink moves (corners excluded)."""
    return [(f"face:{u}", f"face:{lo}") for upper, lower, _ in EYES_ARCS for u, lo in zip(upper[1:-1], lower[1:-1])]


def _arc(face: Tensor, ids: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """x and y of an arc's vertices sorted by x, and the vertex ids in that order."""
    pts = face[list(ids), :2].double().numpy()
    order = np.argsort(pts[:, 0], kind="stable")
    return pts[order, 0], pts[order, 1], [ids[i] for i in order]


def _bracket(xs: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For columns x [M] on an arc with sorted vertex columns xs [P]: the left and right vertex positions in
    the arc and the linear weight s of the right one (x clamped to the arc's span)."""
    xc = np.clip(x, xs[0], xs[-1])
    right = np.clip(np.searchsorted(xs, xc, side="right"), 1, len(xs) - 1)
    left = right - 1
    span = np.maximum(xs[right] - xs[left], 1e-9)
    return left, right, np.clip((xc - xs[left]) / span, 0.0, 1.0)


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def lid_follow(face: Tensor, pixels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """For pixels [M, 2] (x, y): how much each follows its eye's upper lid, f [M] in [0, 1 + LASH_ABOVE] (0 in
    the opening; over 1 in the lash band above the contour, which overtakes the contour to land on its line),
    the eye it belongs to [M] (0 right, 1 left, -1 none: neither lid nor opening) and whether it lies in the
    eye opening [M] bool."""
    x, y = pixels[:, 0].double().numpy(), pixels[:, 1].double().numpy()
    f = np.zeros(len(x))
    which = np.full(len(x), -1)
    opening = np.zeros(len(x), dtype=bool)
    for e, (upper, lower, brow) in enumerate(EYES_ARCS):
        ux, uy, _ = _arc(face, upper)
        lx, ly, _ = _arc(face, lower)
        bx, by, _ = _arc(face, brow)
        y_up, y_low, y_brow = np.interp(x, ux, uy), np.interp(x, lx, ly), np.interp(x, bx, by)
        column = (x >= ux[0]) & (x <= ux[-1])
        top = y_up - LID_TOP * np.maximum(y_up - y_brow, 0.0)
        height = np.maximum(y_low - y_up, 1e-9)
        lash = y_up + LASH * height                   # the upper lashes lie just inside the contour ...
        above = np.minimum(LASH_ABOVE * height, 0.5 * np.maximum(y_up - top, 0.0))   # ... and just above it
        inside = column & (y >= lash) & (y <= y_low)
        lid = column & (y < lash) & (y > top)
        f_lash = (y_low - y) / height                 # the lash strip lands on the lower lid's line: 1 .. 1 + above
        peak = (y_low - (y_up - above)) / height
        band_top = y_up - above
        f_lid = peak * (1.0 - _smoothstep(((band_top - y) / np.maximum(band_top - top, 1e-9) - LID_RIGID)
                                          / (1 - LID_RIGID)))
        here = np.where(lid, np.where(y >= band_top, f_lash, f_lid), 0.0)
        take = (inside | lid) & (which < 0)
        f, which, opening = np.where(take, here, f), np.where(take, e, which), np.where(take, inside, opening)
    return torch.from_numpy(np.clip(f, 0, None)).float(), torch.from_numpy(which), torch.from_numpy(opening)


def project(K: Tensor, means: Tensor) -> Tensor:
    """Photo pixels [N, 2] (x, y) of points [N, 3] in the photo camera's frame."""
    z = means[:, 2].clamp(min=1e-6)
    return torch.stack([K[0, 0] * means[:, 0] / z + K[0, 2], K[1, 1] * means[:, 1] / z + K[1, 2]], 1)


def cover_the_eyes(face: Tensor, K: Tensor, g: Gaussians, regions: Tensor, is_front: Tensor, under: Tensor) -> int:
    """Recolour (in place) the under-layer Gaussians (`under` [N] bool) behind each eye's lid zone and opening
    (the opening widened by COVER_MARGIN of the eye's height) with the median colour of that eye's upper lid
    above the lash line (front-shell face Gaussians with f > 0; all front face Gaussians when there are too few
    of those). Returns how many were recoloured."""
    pixels = project(K, g.means)
    f, which, _ = lid_follow(face, pixels)
    rgb = sh_dc_to_rgb(g.sh[:, 0])
    skin = is_front & (regions == FACE)
    x, y = pixels[:, 0], pixels[:, 1]
    done = 0
    xs = x.double().numpy()
    for e, (upper, lower, _) in enumerate(EYES_ARCS):
        ux, uy, _ = _arc(face, upper)
        lx, ly, _ = _arc(face, lower)
        y_up = torch.from_numpy(np.interp(xs, ux, uy)).float()
        y_low = torch.from_numpy(np.interp(xs, lx, ly)).float()
        lid = skin & (which == e) & (f > 0) & (y < y_up)
        source = lid if int(lid.sum()) >= 5 else skin
        if not bool(source.any()):
            continue
        colour = rgb[source].median(0).values
        m = COVER_MARGIN * float(np.max(ly) - np.min(uy))
        near = (x >= ux[0] - m) & (x <= ux[-1] + m) & (y >= y_up - m) & (y <= y_low + m)
        behind = under & (near | (which == e))
        g.sh[behind, 0] = rgb_to_sh_dc(colour)
        done += int(behind.sum())
    return done


def rig_eyelids(face: Tensor, K: Tensor, g: Gaussians, regions: Tensor, is_front: Tensor, is_back: Tensor,
                particles: Tensor, particle_regions: Tensor, names: list[str], index: Tensor, weight: Tensor
                ) -> tuple[Tensor, Tensor]:
    """personalize's one call: the under-layer behind the eyes takes the lids' colour (`cover_the_eyes`, in
    place on g), and the skinning around the eyes is rebound (`eyelid_skinning`) -> (index, weight)."""
    cover_the_eyes(face, K, g, regions, is_front, ~is_front & ~is_back)
    return eyelid_skinning(face, K, g.means, regions, is_front, particles, particle_regions, names, index, weight)


def eyelid_skinning(face: Tensor, K: Tensor, means: Tensor, regions: Tensor, is_front: Tensor, particles: Tensor,
                    particle_regions: Tensor, names: list[str], index: Tensor, weight: Tensor
                    ) -> tuple[Tensor, Tensor]:
    """Rebind the Gaussians around the eyes (see the module docstring).

    face [478, >=2] photo pixels; K [3, 3] the photo camera; means [N, 3] (photo camera frame); regions [N];
    is_front [N] bool (the front shell); particles [P, 3], particle_regions [P], names [P]; index, weight [N, k]
    the plain skinning. Returns new (index, weight); unchanged when a lid vertex or an eyeball is not among
    the particles, or k < 3."""
    k = index.shape[1]
    where = {n: i for i, n in enumerate(names)}
    needed = [f"face:{i}" for upper, lower, _ in EYES_ARCS for i in upper + lower] + list(EYEBALLS)
    if k < 3 or not all(n in where for n in needed):
        return index, weight
    index, weight = index.clone(), weight.clone()
    moving = torch.tensor([where[u] for u, _ in lid_partners()] + [where[e] for e in EYEBALLS])
    pixels = project(K, means)
    f, which, opening = lid_follow(face, pixels)
    ours = is_front & torch.isin(regions, torch.tensor([FACE, EYES]))
    lid, opening = ours & (f > 0), ours & opening
    ties = ((weight > 0) & torch.isin(index, moving)).any(1)
    rows = (lid | opening | ties).nonzero().squeeze(1)
    if rows.numel() == 0:
        return index, weight
    # what holds a Gaussian in place: its nearest face or eye particles that a blink does not move
    still = torch.isin(particle_regions, torch.tensor([FACE, EYES])) & ~torch.isin(torch.arange(len(names)), moving)
    pool = still.nonzero().squeeze(1)
    sigma = default_sigma(particles)
    idx, w = skin_weights(means[rows], particles[pool], k, sigma)
    index[rows], weight[rows] = pool[idx], w.to(weight.dtype)
    for e, (upper, _, _) in enumerate(EYES_ARCS):
        ball = (opening & (which == e)).nonzero().squeeze(1)
        index[ball], weight[ball] = where[EYEBALLS[e]], 0.0
        weight[ball, 0] = 1.0
        on_lid = (lid & (which == e)).nonzero().squeeze(1)
        if on_lid.numel() == 0:
            continue
        ux, _, uids = _arc(face, upper)
        a, b, s = _bracket(ux, pixels[on_lid, 0].double().numpy())
        up = torch.tensor([[where[f"face:{uids[i]}"], where[f"face:{uids[j]}"]] for i, j in zip(a, b)])
        s, fe = torch.from_numpy(s).to(weight.dtype), f[on_lid].to(weight.dtype)
        rest_idx, rest_w = skin_weights(means[on_lid], particles[pool], k - 2, sigma)
        index[on_lid] = torch.cat([up, pool[rest_idx]], 1)
        held = (1 - fe)[:, None] * rest_w.to(weight.dtype)
        weight[on_lid] = torch.cat([torch.stack([fe * (1 - s), fe * s], 1), held], 1)
    return index, weight
