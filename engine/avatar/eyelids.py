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
- unless that fold is dark (`_dark_fold`: under DARK_FOLD of the lid skin's luminance: eye make-up, a deep-set
  eye, the far eye of a three-quarter face). Slid down, a dark fold made a dark almond of a "closed" eye, which
  a face tracker read as open. Such an eye gets a **lid sheet** instead (`lid_sheets`), as a real lid unfolds
  from under its fold: skin-coloured Gaussians (`lid_skin`: the face skin close around the eye, its darkest
  share left out), shaded a little toward the lash line, SHEET_BEHIND behind the face's surface and above the
  opening, hidden behind the fold while the eye is open. They ride the upper lid with full weight, so a blink
  slides them down over the opening, exactly onto it when shut, with the lash strip along their lower edge as
  the lid's margin; the fold stays where it is. (A light fold keeps sliding: where a photo's lashes or crease
  stand above the lash band, a sheet under a fold that stayed left them as a second lid line.)
- in the rest of the eye opening (the white, the iris, the lower lashes), a Gaussian follows its eye's eyeball
  particle alone. The lids do not drag it; a closing blink pushes it back behind the under-layer (and a
  sheet), and the lid slides down over it.
- every other Gaussian that the plain skinning tied to a lid or eyeball particle (skin below the eye, beyond
  the corners, the back of the head, the under-layer) is rebound to its nearest particles a blink does not move.

Only front-shell Gaussians of the face and eye regions are rebound to the lid or the eyeball, and the sheets
to the lid. A lid row spends two of its k slots on the two upper-lid particles that bracket the Gaussian's
column (linear in x), with total weight f, and the others on what holds it in place, with weight 1 - f; rows
still sum to 1, so head motion (which moves all face particles together) moves them rigidly as before.

Behind the eye opening the under-layer (engine.avatar.mouth.under_layer, a blurred copy of the photo) is the
dark of the iris. `cover_the_eyes` gives it the lid skin's colour too, so nothing dark shows at a sheet's
edges.

Positions are photo pixels (x right, y down), turned level first (`Level`: the head's roll undone, the line
between the outer eye corners along a row), so that on a tilted head too the lids lie along rows and a column
runs from the upper lid down to the lower one, the way a blink moves it. (Each eye turned by its own corners
instead was worse on the photos measured: mediapipe's lid partners pair up along the face's vertical, not
square to each eye's tilted axis.)
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from engine.avatar.particles import turn_xy
from engine.avatar.regions import EYES, FACE
from engine.avatar.skinning import default_sigma, skin_weights
from engine.render.camera import unproject
from engine.render.gaussians import Gaussians, luma, rgb_to_sh_dc, sh_dc_to_rgb

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
SHEET_BEHIND = 0.04                              # the lid sheet lies this far (eye widths, 33-263) behind the
                                                 # surface: behind the fold, in front of the under-layer (0.08)
                                                 # and of the eyeball a blink pushes back
SKIN_RING = (0.3, 0.8)                           # lid skin is sampled this far from the eye's centre (x its length)
SKIN_DARKEST = 0.4                               # leaving out this darkest share of the samples there
LID_SHADE = 0.9                                  # a shut lid darkens to this x its colour at the lash line
DARK_FOLD = 0.65                                 # a fold darker than this x the lid skin (median luminance) gets a
FOLD_SAMPLES = 20                                # sheet; fewer skin pixels on the fold than this: no sheet
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


class Level:
    """Photo pixels turned about the midpoint of the outer eye corners (33, on the image's left on an upright
    face, and 263) by minus the angle of the line between them (the head's roll, as particles.head_roll reads it
    from the particles): the roll undone. A level face (33 and 263 on one row) is left where it is."""

    def __init__(self, face: Tensor):
        a, b = face[33, :2].double(), face[263, :2].double()
        d = b - a
        self.centre, self.roll = (a + b) / 2, float(torch.atan2(d[1], d[0]))

    def points(self, p: Tensor) -> Tensor:
        """Photo pixels [M, 2] -> level ones [M, 2] (same dtype)."""
        return (turn_xy(p.double() - self.centre, -self.roll) + self.centre).to(p.dtype)

    def back(self, p: Tensor) -> Tensor:
        """Level pixels [M, 2] -> photo ones [M, 2] (same dtype)."""
        return (turn_xy(p.double() - self.centre, self.roll) + self.centre).to(p.dtype)

    def vector_back(self, v: Tensor) -> Tensor:
        """Level displacements [M, 2] -> photo ones [M, 2] (same dtype)."""
        return turn_xy(v.double(), self.roll).to(v.dtype)

    def face(self, face: Tensor) -> Tensor:
        """The face mesh [478, >=2] with its x, y levelled (other columns kept)."""
        out = face.clone()
        out[:, :2] = self.points(face[:, :2])
        return out


def lid_follow(face: Tensor, pixels: Tensor, fold_stays: tuple[bool, bool] = (False, False)
               ) -> tuple[Tensor, Tensor, Tensor]:
    """For pixels [M, 2] (x, y): how much each follows its eye's upper lid, f [M] in [0, 1 + LASH_ABOVE] (0 in
    the opening; over 1 in the lash band above the contour, which overtakes the contour to land on its line),
    the eye it belongs to [M] (0 right, 1 left, -1 none: neither lid nor opening) and whether it lies in the
    eye opening [M] bool. Above the lash band, an eye whose fold stays (it has a lid sheet) gives f 0; any
    other slides its fold down: the lid proper (LID_RIGID of the zone) as one with the band's top, then less
    and less up to the zone's top (the skin under the brow stretches). Worked out in the level frame (`Level`)."""
    level = Level(face)
    face, pixels = level.face(face), level.points(pixels)
    x, y = pixels[:, 0].double().numpy(), pixels[:, 1].double().numpy()
    f = np.zeros(len(x))
    which = np.full(len(x), -1)
    opening = np.zeros(len(x), dtype=bool)
    for e in range(len(EYES_ARCS)):
        y_up, y_low, band_top, top, column = _lid_lines(face, e, x)
        height = np.maximum(y_low - y_up, 1e-9)
        lash = y_up + LASH * height                   # the upper lashes lie just inside the contour ...
        inside = column & (y >= lash) & (y <= y_low)
        lid = column & (y < lash) & (y > top)
        f_lash = (y_low - y) / height                 # ... and just above it: they land on the lower line, 1 .. peak
        peak = (y_low - band_top) / height
        f_fold = 0.0 if fold_stays[e] else peak * (1.0 - _smoothstep(
            ((band_top - y) / np.maximum(band_top - top, 1e-9) - LID_RIGID) / (1 - LID_RIGID)))
        here = np.where(lid, np.where(y >= band_top, f_lash, f_fold), 0.0)
        take = (inside | lid) & (which < 0)
        f, which, opening = np.where(take, here, f), np.where(take, e, which), np.where(take, inside, opening)
    return torch.from_numpy(np.clip(f, 0, None)).float(), torch.from_numpy(which), torch.from_numpy(opening)


def _lid_lines(face: Tensor, e: int, x: np.ndarray) -> tuple[np.ndarray, ...]:
    """At columns x [M] of eye e (face and columns levelled, `Level`): the upper and lower contour's rows, the
    lash band's top (LASH_ABOVE of the opening above the contour, at most half way to the lid zone's top), the
    lid zone's top (LID_TOP of the way to the brow's lower edge) and whether the column is within the eye's
    corners [M] bool."""
    upper, lower, brow = EYES_ARCS[e]
    ux, uy, _ = _arc(face, upper)
    lx, ly, _ = _arc(face, lower)
    bx, by, _ = _arc(face, brow)
    y_up, y_low, y_brow = np.interp(x, ux, uy), np.interp(x, lx, ly), np.interp(x, bx, by)
    top = y_up - LID_TOP * np.maximum(y_up - y_brow, 0.0)
    above = np.minimum(LASH_ABOVE * np.maximum(y_low - y_up, 0.0), 0.5 * np.maximum(y_up - top, 0.0))
    return y_up, y_low, y_up - above, top, (x >= ux[0]) & (x <= ux[-1])


def lid_skin(face: Tensor, pixels: Tensor, rgb: Tensor, skin: Tensor) -> list[Tensor | None]:
    """The colour [3] of each eye's closed lid (right, left; None without skin near it): the median of the skin
    samples (pixels [M, 2] (x, y) with colours rgb [M, 3], those where skin [M] is set) in a ring SKIN_RING
    around the eye, leaving out the darkest SKIN_DARKEST of them by luminance: the fold's shadow, lashes, brow,
    make-up and a glasses frame, which would outvote the skin around a deep-set or made-up eye."""
    out = []
    lum = luma(rgb)
    for upper, lower, _ in EYES_ARCS:
        corners = face[[upper[0], upper[-1]], :2]
        length = float((corners[0] - corners[1]).norm())
        centre = face[list(upper) + list(lower), :2].mean(0)
        d = (pixels.float() - centre).norm(dim=1) / max(length, 1e-6)
        near = skin & (d >= SKIN_RING[0]) & (d <= SKIN_RING[1])
        if int(near.sum()) < 4:
            out.append(None)
            continue
        lit = near & (lum >= torch.quantile(lum[near], SKIN_DARKEST))
        out.append(rgb[lit].median(0).values)
    return out


def _dark_fold(face: Tensor, e: int, x: np.ndarray, y: np.ndarray, lum: Tensor, skin_lum: float) -> bool:
    """Whether eye e's fold (the skin pixels at x, y [M] with luminance lum [M] between the lid zone's top and
    the lash band; face and pixels levelled, `Level`) is darker than DARK_FOLD x the lid skin's luminance: a
    fold that slid down over the eye would make a dark closed lid. Fewer than FOLD_SAMPLES pixels there (a small
    face): False."""
    _, _, band_top, top, column = _lid_lines(face, e, x)
    fold = torch.from_numpy(column & (y >= top) & (y < band_top))
    if int(fold.sum()) < FOLD_SAMPLES:
        return False
    return float(lum[fold].median()) < DARK_FOLD * skin_lum


def lid_sheets(face: Tensor, image: Tensor, skin: Tensor, front: Tensor, K: Tensor, z0: float
               ) -> tuple[Gaussians, Tensor, Tensor]:
    """The lid sheet (module docstring) of each eye whose fold is dark (`_dark_fold`), for a face [478, >=2]
    (photo pixels) whose front surface depth is front [H, W] (pixels, engine.avatar.depth), in the photo image
    [H, W, 3] with skin [H, W] bool (the face's skin pixels), seen through K at distance z0 -> (Gaussians [M],
    pixels [M, 2] (x, y, int) each rests at, eye [M] 0 right / 1 left). Shut, the sheet covers each column from
    the lash band's top to the lower contour at 1 px spacing; it rests shifted back by the blink's own
    displacement of the upper lid there (each upper-lid vertex onto its lower partner, linear in x between
    vertices), so that riding the lid it lands there exactly. Columns and rows are 1 px apart in the level
    frame (`Level`), turned back to photo pixels."""
    H, W = front.shape
    ys, xs = skin.nonzero(as_tuple=True)
    centres, rgb = torch.stack([xs, ys], 1).double() + 0.5, image[ys, xs]       # the skin's pixels [S, 2], [S, 3]
    colours = lid_skin(face, centres.float(), rgb, torch.ones(len(xs), dtype=torch.bool))
    eye_px = float((face[33, :2] - face[263, :2]).norm())
    fx = float(K[0, 0])
    parts = []
    lum = luma(rgb)
    level = Level(face)
    lface, lcentres = level.face(face), level.points(centres)            # level pixels from here on
    cx, cy = lcentres[:, 0].numpy(), lcentres[:, 1].numpy()
    for e, (upper, lower, _) in enumerate(EYES_ARCS):
        if colours[e] is None or not _dark_fold(lface, e, cx, cy, lum, float(luma(colours[e]))):
            continue
        ux, _, uids = _arc(lface, upper)
        partner = dict(zip(upper, lower))
        move = np.array([(lface[partner[i], :2] - lface[i, :2]).double().numpy() for i in uids])  # [P, 2] per vertex
        x = np.arange(np.ceil(ux[0] - 0.5), np.floor(ux[-1] - 0.5) + 1) + 0.5                 # 1 px apart
        if len(x) == 0:
            continue
        _, y_low, band_top, _, _ = _lid_lines(lface, e, x)
        a, b, s = _bracket(ux, x)
        shift = (1 - s)[:, None] * move[a] + s[:, None] * move[b]                              # [C, 2]
        cols, rows = [], []
        for c in range(len(x)):
            r = np.arange(np.ceil(band_top[c] - 1.0), np.floor(y_low[c]) + 1) + 0.5   # centres within half a px
            cols.append(np.full(len(r), c))
            rows.append(r)
        c, r = np.concatenate(cols), np.concatenate(rows)
        # the lid curves away from the light toward its margin: darker down to the lash line
        t = np.clip((r - band_top[c]) / np.maximum(y_low[c] - band_top[c], 1e-6), 0.0, 1.0)
        shade = torch.from_numpy(1.0 - (1.0 - LID_SHADE) * t).float()[:, None]
        xy = level.back(torch.from_numpy(np.stack([x[c], r], 1)))                             # photo pixels
        parts.append((xy[:, 0].float(), xy[:, 1].float(), level.vector_back(torch.from_numpy(shift[c])).float(),
                      torch.full((len(c),), e), colours[e] * shade))
    if not parts:
        parts.append((torch.zeros(0), torch.zeros(0), torch.zeros(0, 2), torch.zeros(0, dtype=torch.long),
                      torch.zeros(0, 3)))
    X, Y, shift, eye, rgb = (torch.cat(p) for p in zip(*parts))
    # where each lands, SHEET_BEHIND behind the surface there; it rests back up by the lid's displacement, which
    # the lid particles (on the surface, depth z_surface) make in world units, not in pixels at the sheet's depth
    xi, yi = X.long().clamp(0, W - 1), Y.long().clamp(0, H - 1)
    z_surface = z0 - front[yi, xi] * z0 / fx
    z = z_surface + SHEET_BEHIND * eye_px * z0 / fx
    means = unproject(X, Y, z, K)
    focal = K.diagonal()[:2].float()                                       # fx, fy
    means[:, :2] -= shift * z_surface[:, None] / focal
    rest = (means[:, :2] / means[:, 2:] * focal + K[:2, 2]).long()
    xi, yi = rest[:, 0].clamp(0, W - 1), rest[:, 1].clamp(0, H - 1)
    sigma = 0.75 * z / fx                                                  # 1 px apart: no gaps
    n = len(X)
    g = Gaussians(means.float(), torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1),
                  torch.stack([sigma, sigma, 0.5 * sigma], -1).float(), torch.ones(n),
                  rgb_to_sh_dc(rgb.clamp(0, 1))[:, None, :].float().contiguous())
    return g, torch.stack([xi, yi], 1), eye.long()


def project(K: Tensor, means: Tensor) -> Tensor:
    """Photo pixels [N, 2] (x, y) of points [N, 3] in the photo camera's frame."""
    z = means[:, 2].clamp(min=1e-6)
    return torch.stack([K[0, 0] * means[:, 0] / z + K[0, 2], K[1, 1] * means[:, 1] / z + K[1, 2]], 1)


def cover_the_eyes(face: Tensor, K: Tensor, g: Gaussians, regions: Tensor, is_front: Tensor, under: Tensor) -> int:
    """Recolour (in place) the under-layer Gaussians (`under` [N] bool) behind each eye's lid zone and opening
    (the opening widened by COVER_MARGIN of the eye's height) with that eye's lid skin (`lid_skin` of the
    front-shell face Gaussians). Returns how many were recoloured."""
    pixels = project(K, g.means)
    _, which, _ = lid_follow(face, pixels)
    rgb = sh_dc_to_rgb(g.sh[:, 0])
    colours = lid_skin(face, pixels, rgb, is_front & (regions == FACE))
    level = Level(face)
    lface, lpx = level.face(face), level.points(pixels)
    x, y = lpx[:, 0], lpx[:, 1]
    done = 0
    for e, (upper, lower, _) in enumerate(EYES_ARCS):
        if colours[e] is None:
            continue
        ux, uy, _ = _arc(lface, upper)
        _, ly, _ = _arc(lface, lower)
        y_up, y_low, _, _, _ = (torch.from_numpy(v).float() for v in _lid_lines(lface, e, x.double().numpy()))
        m = COVER_MARGIN * float(np.max(ly) - np.min(uy))
        near = (x >= ux[0] - m) & (x <= ux[-1] + m) & (y >= y_up - m) & (y <= y_low + m)
        behind = under & (near | (which == e))
        g.sh[behind, 0] = rgb_to_sh_dc(colours[e])
        done += int(behind.sum())
    return done


def rig_eyelids(face: Tensor, K: Tensor, g: Gaussians, regions: Tensor, is_front: Tensor, is_back: Tensor,
                particles: Tensor, particle_regions: Tensor, names: list[str], index: Tensor, weight: Tensor,
                sheet_eye: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """personalize's one call: the under-layer behind the eyes takes the lid skin's colour (`cover_the_eyes`,
    in place on g), and the skinning around the eyes is rebound (`eyelid_skinning`) -> (index, weight).
    sheet_eye [N]: the eye of each lid-sheet Gaussian (`lid_sheets`), -1 elsewhere."""
    sheet = torch.zeros(len(g), dtype=torch.bool) if sheet_eye is None else sheet_eye >= 0
    cover_the_eyes(face, K, g, regions, is_front, ~is_front & ~is_back & ~sheet)
    return eyelid_skinning(face, K, g.means, regions, is_front, particles, particle_regions, names, index, weight,
                           sheet_eye)


def eyelid_skinning(face: Tensor, K: Tensor, means: Tensor, regions: Tensor, is_front: Tensor, particles: Tensor,
                    particle_regions: Tensor, names: list[str], index: Tensor, weight: Tensor,
                    sheet_eye: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Rebind the Gaussians around the eyes (see the module docstring).

    face [478, >=2] photo pixels; K [3, 3] the photo camera; means [N, 3] (photo camera frame); regions [N];
    is_front [N] bool (the front shell); particles [P, 3], particle_regions [P], names [P]; index, weight [N, k]
    the plain skinning; sheet_eye [N] the eye (0, 1) of each lid-sheet Gaussian, -1 elsewhere: those ride
    their eye's upper lid with full weight. Returns new (index, weight); unchanged when a lid vertex or an
    eyeball is not among the particles, or k < 3."""
    k = index.shape[1]
    where = {n: i for i, n in enumerate(names)}
    needed = [f"face:{i}" for upper, lower, _ in EYES_ARCS for i in upper + lower] + list(EYEBALLS)
    if k < 3 or not all(n in where for n in needed):
        return index, weight
    index, weight = index.clone(), weight.clone()
    moving = torch.tensor([where[u] for u, _ in lid_partners()] + [where[e] for e in EYEBALLS])
    pixels = project(K, means)
    fold_stays = tuple(sheet_eye is not None and bool((sheet_eye == e).any()) for e in range(len(EYES_ARCS)))
    f, which, opening = lid_follow(face, pixels, fold_stays)
    level = Level(face)
    face, pixels = level.face(face), level.points(pixels)                       # level pixels from here on
    ours = is_front & torch.isin(regions, torch.tensor([FACE, EYES]))
    lid, opening = ours & (f > 0), ours & opening
    ties = ((weight > 0) & torch.isin(index, moving)).any(1)
    rows = (lid | opening | ties).nonzero().squeeze(1)
    if rows.numel() == 0:
        _bind_sheets(face, pixels, sheet_eye, where, index, weight)
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
    _bind_sheets(face, pixels, sheet_eye, where, index, weight)
    return index, weight


def _bind_sheets(face: Tensor, pixels: Tensor, sheet_eye: Tensor | None, where: dict[str, int], index: Tensor,
                 weight: Tensor) -> None:
    """In place: each lid-sheet Gaussian (sheet_eye [N] >= 0) rides the two upper-lid vertices of its eye that
    bracket its column (face and pixels [N, 2] levelled, `Level`; linear in x), with all its weight; its other
    slots weigh 0."""
    if sheet_eye is None:
        return
    k = index.shape[1]
    for e, (upper, _, _) in enumerate(EYES_ARCS):
        rows = (sheet_eye == e).nonzero().squeeze(1)
        if rows.numel() == 0:
            continue
        ux, _, uids = _arc(face, upper)
        a, b, s = _bracket(ux, pixels[rows, 0].double().numpy())
        ids = torch.tensor([[where[f"face:{uids[i]}"], where[f"face:{uids[j]}"]] for i, j in zip(a, b)])
        index[rows] = torch.cat([ids, ids[:, 1:].expand(-1, k - 2)], 1)
        s = torch.from_numpy(s).to(weight.dtype)
        weight[rows] = torch.cat([torch.stack([1 - s, s], 1), torch.zeros(len(rows), k - 2, dtype=weight.dtype)], 1)
