"""The inside of the mouth: upper and lower teeth and a tongue, which show when the jaw opens.

A photo of a closed mouth shows no teeth, so they are built, not sampled: two rows of Gaussians behind the
lips, along the split line between the inner lips (engine.avatar.mouth), curving back toward the mouth corners
like a dental arch so that the corners stay dark. The upper row hangs from the upper jaw (side 1: it stays with
the head), the lower row and the tongue ride on the jaw (side 2). When the lips meet they hide all of it.

Sizes are in eye widths (the outer eye corner distance in 3D, face-mesh points 33 and 263: `tooth_unit`, which a
face turned from the camera does not shorten), from adult proportions:
an upper central incisor is ~10.5 mm tall and the outer eye corners are ~90-100 mm apart (Proffit, Contemporary
Orthodontics, tooth dimensions; Farkas, Anthropometry of the Head and Face, ex-ex width), so a row is about
0.10 eye widths tall; the lower row shows less. The rows cross the split line (UPPER_SHOW, LOWER_SHOW): shut,
each lip hides the other row's edge; open, the lips part over the incisors' edges, as in speech. The upper row's
edge follows the smile arc (`upper_row_reach`): lowest at the central incisors, higher toward the canines.

The rows hang from where the closed rest mouth's lips rest (engine.avatar.mouth.resting_lip_edges). A smiling
photo shows its upper teeth below the upper lip; the upper lip comes down only a quarter of the gap to close the
mouth, so the upper row reaches down to the photo's lower lip and is painted with the photo's own teeth there:
when the jaw drops, the person's teeth show as the photo shows them. The lower incisors (and the tongue) stand
behind the upper ones (OVERJET).

Colours come from the photo: its own teeth when it shows them (light, low-chroma pixels between the inner lips),
otherwise a light ivory; gums and tongue are the photo's lip colour, darkened. A greyscale photo has no chroma,
and neither does its mouth.
"""
from __future__ import annotations

import torch
from torch import Tensor

from engine.avatar.mouth import (LOWER_INNER, LOWER_OUTER, UPPER_INNER, Level, arc_y, closed_line_y, closing_shift,
                                 inner_lip_contours, resting_lip_edges)
from engine.avatar.regions import polygon_mask
from engine.render.camera import unproject
from engine.render.gaussians import Gaussians, luma, rgb_to_sh_dc

IVORY = (0.90, 0.87, 0.80)     # an unstained tooth, lit
UPPER_ROW, LOWER_ROW = 0.10, 0.075   # crown heights above / below the split line, eye widths
UPPER_SHOW = 0.11              # the central incisors' edges hang this far below the split line (the lower lip and
                               # the chin's skin hide them when the mouth is shut): ~10 mm, an incisor's whole crown.
                               # Relaxed parted lips show 2-3.5 mm (Vig and Brundo, "The kinetics of anterior tooth
                               # display", J Prosthet Dent 1978), but a speaker's upper lip rises off the incisors and
                               # the avatar's barely does (0.036 eye widths at full loudness, engine.motion.procedural):
                               # the teeth hang lower instead. At 0.07 the open mouth of a closed-mouth photo showed a
                               # 2-3 px rim of teeth round a dark hole (tooth share 0.09-0.14 on three held-out
                               # portraits; 0.18-0.34 at 0.11 with `tooth_unit`, bench/person.py)
UPPER_SHOW_ENDS = 0.07         # ... and toward the row's ends less (the smile arc: canines and premolars stand higher
                               # than the central incisors); at the centre's height the ends hung as white fangs
LOWER_SHOW = 0.03              # the lower incisors' edges reach this far above it, behind the upper lip when shut
LOWER_SHADE = 0.8              # the lower row's light: it stands behind the upper one and under its shadow (built
                               # at the upper row's colour, the 2 px of it an open mouth shows read as a white seam)
CORNER_SHADE = 0.8             # toward the mouth's corners the teeth turn away into the dark between the cheeks
CORNER_FROM = 0.7              # (the buccal corridor, Frush and Fisher, J Prosthet Dent 1958): a built row keeps its
                               # light across the front teeth (|u| <= CORNER_FROM of the mouth's half-width) and fades
                               # into the mouth's shadow (colour "interior") toward its ends, CORNER_SHADE of the way
                               # there at the last tooth. Lit to the end, it stood as a white bar at each corner;
                               # dimmed to half its light, as grey fangs down the sides of the opening
ROW_SPAN, TONGUE_SPAN = 0.92, 0.62   # of the mouth's half-width, how far out from its middle the rows and the tongue go
LOWER_SPAN = 0.72              # the lower row's: the lower arch is narrower than the upper (intercanine widths ~26 vs
                               # ~34 mm, Bishara et al., Am J Orthod Dentofacial Orthop 1997), so an open mouth's lower
                               # corners show the dark behind, not a second white bar
SEAMS = (0.0, 0.34, 0.56, 0.74)  # where the crowns meet, in the mouth's half-widths from its middle: the midline
                               # between the central incisors, then the laterals and canines. Mesiodistal widths 8.5,
                               # 6.5 and 7.5 mm (Proffit, tooth dimensions), seen foreshortened by the arch (turned
                               # ~30 and ~55 degrees: 8.5, 5.6, 4.3 mm), over a 25 mm half mouth (Farkas, ch-ch ~50 mm)
SEAM_SHADE = 0.9               # a seam's light
ARCH = 0.05                    # how far back the row's ends sit behind its middle (eye widths)
BEHIND = 0.035                 # the row's middle behind the lips' surface (eye widths)
OVERJET = 0.025                # the lower row this much further back than the upper one: the upper incisors close
                               # in front of the lower (a normal overjet is 2-3 mm, Proffit), so where both rows
                               # show, the upper one is in front
TONGUE_TOP, TONGUE_BOTTOM = -0.07, 0.11   # the tongue's back rises above the lower incisors' edges, so an open
                               # mouth shows it over the lower row; shut, the upper row and the lips hide it
TONGUE_BEHIND = 0.05           # how much deeper than the teeth the tongue lies (eye widths)


def is_greyscale(image: Tensor) -> bool:
    """True when the photo has no colour: every pixel's channels agree within 2 grey levels."""
    return bool(float((image.max(-1).values - image.min(-1).values).max()) <= 2.0 / 255.0)


def inner_lip_mask(face: Tensor, height: int, width: int) -> Tensor:
    """[H, W] bool: inside the inner-lip contour (the visible mouth opening) of face [478, 3] pixels."""
    ring = list(UPPER_INNER) + list(reversed(LOWER_INNER[1:-1]))
    return polygon_mask([(float(face[i, 0]), float(face[i, 1])) for i in ring], height, width)


def tooth_like(image: Tensor) -> Tensor:
    """[H, W] bool: pixels of image [H, W, 3] that look like a tooth: light (luma >= 0.55) and of low chroma
    (channel spread <= 0.15)."""
    chroma = image.max(-1).values - image.min(-1).values
    return (luma(image) >= 0.55) & (chroma <= 0.15)


def mouth_colours(image: Tensor, lips: Tensor, opening: Tensor) -> dict[str, Tensor]:
    """Colours [3] for teeth, gums and tongue from the photo: image [H, W, 3], lips [H, W] bool (the lip
    region), opening [H, W] bool (between the inner lips)."""
    toothy = opening & tooth_like(image)
    grey = is_greyscale(image)
    if int(toothy.sum()) >= 12:
        tooth = image[toothy].median(0).values
    else:
        tooth = torch.tensor(IVORY)
    lip = image[lips].median(0).values if int(lips.sum()) else torch.tensor([0.6, 0.35, 0.35])
    if grey:
        tooth, lip = tooth.mean().expand(3).clone(), lip.mean().expand(3).clone()
    return {"tooth": tooth, "gum": 0.75 * lip, "tongue": 0.8 * lip, "interior": 0.3 * lip}


def tooth_unit(face: Tensor) -> float:
    """The eye width [px] the mouth's insides are sized in: the outer eye corners' distance in 3D (mediapipe's z is
    in x's pixels), so a face turned away from the camera keeps teeth of its size (the 2D distance was 0.62 of it
    on a man seen three-quarter on)."""
    return float((face[33] - face[263]).norm())


def mouth_middle(face: Tensor) -> tuple[float, float]:
    """(centre x, half-width) [px] of the upper inner lip of the level face [478, 3]: the line the rows are laid
    out across."""
    xs = face[list(UPPER_INNER), 0]
    left, right = float(xs.min()), float(xs.max())
    return (left + right) / 2, (right - left) / 2


def upper_row_reach(face: Tensor, x: Tensor, eye: float | None = None) -> Tensor:
    """How far [M] (px) below the resting upper lip (`resting_lip_edges`) the upper row reaches at columns x [M] of
    the level face [478, 3] (`Level`): the smile arc, UPPER_SHOW eye widths at the mouth's middle falling to
    UPPER_SHOW_ENDS at the row's ends, and at least down to the photo's lower lip (a smile shows its teeth there).
    Where the photo's lips are apart, the closed rest mouth brings the lower lip up (engine.avatar.mouth.
    closing_shift) and the chin's skin under it less far: the arc then ends 1 px above the lifted lip's outer edge
    (never shorter than UPPER_SHOW_ENDS, the reach before the arc), so that no built tooth lies where the chin's
    skin now is (its surface deeper than the lip's the row was laid behind: Megamind's laughing photo showed a
    white crescent under its closed lower lip)."""
    eye = tooth_unit(face) if eye is None else eye
    centre, half = mouth_middle(face)
    arc = ((x - centre) / (ROW_SPAN * max(half, 1e-6))).clamp(-1, 1) ** 2
    built = (UPPER_SHOW - (UPPER_SHOW - UPPER_SHOW_ENDS) * arc) * eye
    edge = resting_lip_edges(face, x)[0]
    outer = torch.from_numpy(arc_y(face, LOWER_OUTER, x)).float()                 # the lower lip's outer edge
    lift = closing_shift(face, torch.stack([x, outer], 1), torch.full(x.shape, 2))[:, 1]   # <= 0: up
    capped = torch.minimum(built, outer + lift - edge - 1.0).clamp(min=UPPER_SHOW_ENDS * eye)
    built = torch.where(lift < -1e-3, capped, built)
    return torch.maximum(built, inner_lip_contours(face, x)[1] - edge)


def mouth_insides(face: Tensor, front: Tensor, K: Tensor, z0: float, colours: dict[str, Tensor],
                  image: Tensor | None = None) -> tuple[Gaussians, Tensor, Tensor]:
    """Teeth and tongue for a face [478, 3] (pixels) whose front surface depth is front [H, W] (pixels,
    engine.avatar.depth) seen through K [3, 3] at distance z0; image [H, W, 3]: the photo, whose tooth-like
    pixels between the inner lips paint the upper row (None: the rows are plain). -> (Gaussians [M], pixels
    [M, 2] (x, y) each was laid out at, side [M]: 1 upper jaw (stays with the head), 2 lower jaw)."""
    H, W = front.shape
    eye = tooth_unit(face)
    shown = None if image is None else inner_lip_mask(face, H, W) & tooth_like(image)   # [H, W] the photo's teeth
    level = Level(face)          # laid out on the level face, then turned with the head: a tilted head's rows
    face = level.face            # run along its own mouth (hung straight down the photo's columns from a mouth
                                 # tilted 30 degrees, the lower row crossed its lower lip)
    centre, half = mouth_middle(face)
    if eye <= 0 or half < 1:
        raise ValueError("face: the mouth corners or eye corners coincide; cannot place the teeth")
    parts = []
    # rows of teeth: 1 px apart across the mouth, sloping back toward the corners
    for side, top, bottom, colour in ((1, -UPPER_ROW, UPPER_SHOW, "tooth"), (2, -LOWER_SHOW, LOWER_ROW, "tooth"),
                                      (2, TONGUE_TOP, TONGUE_BOTTOM, "tongue")):
        span = TONGUE_SPAN if colour == "tongue" else ROW_SPAN if side == 1 else LOWER_SPAN
        xs = torch.arange(centre - span * half, centre + span * half + 1e-3, 1.0)
        # a row of teeth is measured from its own lip's resting edge (the lips close a little over each other),
        # the tongue from the line where they meet
        upper_edge, lower_edge = resting_lip_edges(face, xs)
        mid = closed_line_y(face, xs) if colour == "tongue" else upper_edge if side == 1 else lower_edge
        reach = torch.full_like(xs, bottom * eye)                          # [X] how far below the line the row goes
        if side == 1:                                            # the upper teeth: the smile arc, or the photo's
            reach = upper_row_reach(face, xs, eye)               # own down to its lower lip
        rows = torch.arange(top * eye, float(reach.max()) + 1e-3, 1.0)
        keep = (rows[None, :] <= reach[:, None] + 1e-3).reshape(-1)
        X = xs[:, None].expand(-1, len(rows)).reshape(-1)[keep]
        Y = (mid[:, None] + rows[None, :]).reshape(-1)[keep]
        u = ((X - centre) / half).clamp(-1, 1)                               # -1 .. 1 across the mouth
        back = (BEHIND + (TONGUE_BEHIND if colour == "tongue" else 0.0) + (OVERJET if side == 2 else 0.0)
                + ARCH * u ** 2) * eye
        rgb = colours[colour].expand(len(X), 3).clone()
        if colour == "tooth":
            depth_in_row = ((Y - mid.repeat_interleave(len(rows))[keep]) / eye - (top if side == 1 else bottom))
            gum = (depth_in_row.abs() < 0.012)                                # the row's root edge: gum
            rgb[gum] = colours["gum"]
            at = centre + torch.tensor(SEAMS + tuple(-s for s in SEAMS[1:])) * half   # both sides of the middle
            gaps = torch.isin(torch.round(X - xs[0]), torch.round(at - xs[0]))  # the column nearest each seam
            rgb[gaps & ~gum] *= SEAM_SHADE
            lit_to = CORNER_FROM * span / ROW_SPAN              # the narrower lower row: its lit part in proportion
            t = ((u.abs() - lit_to) / (span - lit_to)).clamp(0, 1)
            shade = (CORNER_SHADE * t * t * (3 - 2 * t))[:, None]
            rgb = (rgb * (1 - shade) + colours["interior"] * shade) * (LOWER_SHADE if side == 2 else 1.0)
            if side == 1 and shown is not None:                  # the photo's own teeth, where it shows them
                px = level.back(torch.stack([X, Y], 1)).long()
                px[:, 0].clamp_(0, W - 1)
                px[:, 1].clamp_(0, H - 1)
                own = shown[px[:, 1], px[:, 0]]
                rgb[own] = image[px[own, 1], px[own, 0]]
        parts.append((X, Y, back, rgb, torch.full((len(X),), side)))
    X, Y, back, rgb, side = (torch.cat(p) for p in zip(*parts))
    X, Y = level.back(torch.stack([X, Y], 1)).unbind(1)
    xi, yi = X.long().clamp(0, W - 1), Y.long().clamp(0, H - 1)
    fx = float(K[0, 0])
    z = z0 - front[yi, xi] * z0 / fx + back * z0 / fx
    means = unproject(X, Y, z, K)
    sigma = 0.75 * z / fx                                                  # 1 px apart: no gaps
    n = len(X)
    g = Gaussians(means.float(), torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1),
                  torch.stack([sigma, sigma, 0.5 * sigma], -1).float(), torch.ones(n),
                  rgb_to_sh_dc(rgb.clamp(0, 1))[:, None, :].float().contiguous())
    return g, torch.stack([X, Y], -1), side.long()
