"""The inner lip edges where the photo shows them: mediapipe's inner-lip contour moved onto the lips' real edge.

On a smile that shows the teeth, mediapipe's face mesh often lays the inner lower lip (or the upper) on the
teeth instead of on the lip: the row of teeth below the contour then counts as lip. Everything the mouth does
rests on that contour (engine.avatar.mouth: the split line, the closed rest mouth, the gap's pixels left out
of the skin; engine.avatar.teeth: the photo's own teeth), so the closed rest mouth kept a strip of teeth between
its lips, the lips never met, and no /p b m/ could be shown (Megamind's glasses photo: a 0.040 eye-width gap
at its most closed, every frame).

`refine_inner_lips` walks each inner-lip vertex (corners excepted) away from the gap, down the lower lip or up
the upper one, on the level face (engine.avatar.mouth.Level), over the pixels that look like the gap rather
than the lip, and stops at the first one that looks like the lip. A pixel looks like the gap when it
- looks like teeth: it is nearer (RGB distance) the teeth's colour than the lip's, by LIP_MARGIN of the two
  colours' distance. The teeth's colour is the median of the lighter half of the pixels between mediapipe's
  contours; the lip's is the median of the outer part of that lip (its outer OUTER_PART, between the inner and
  the outer contour), which the teeth do not reach. A lip whose colour is not MIN_APART from the teeth's, or
  is as light, has no teeth to tell from it;
- or is the mouth's dark: under DARK x the lip's mean grey (the shadow under the upper lip: mediapipe may lay
  the contour in the middle of that dark band, 2 px below the lip on Megamind's glasses photo).
A vertex moves at most REACH of the way to the outer contour, and the moves are smoothed along the lip (a median
of three), so one light or dark pixel on the lip does not tear it. A mouth that mediapipe reads closed (the
median gap under MIN_GAP_PX) is left as it is: there is no gap to learn the teeth's colour from, and a closed
photo mouth needs nothing.

Works the same on a greyscale photo (the teeth are lighter than the lips there too).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from engine.avatar.mouth import LOWER_INNER, OUTER_LIPS, UPPER_INNER, Level, arc_y

OUTER_UPPER = OUTER_LIPS[:11]                    # 61 .. 291 over the upper lip
OUTER_LOWER = OUTER_LIPS[10:] + OUTER_LIPS[:1]   # 291 .. 61 under the lower lip
MIN_GAP_PX = 1.0       # a median inner-lip gap under this: the photo's mouth is closed, nothing to refine
OUTER_PART = 0.4       # the lip's colour: its outer 40% between the inner and the outer contour
REACH = 0.6            # a vertex moves at most this share of the way to the outer contour
LIP_MARGIN = 0.15      # a tooth-like pixel is nearer the teeth's colour by this x the teeth-lip colour distance
MIN_APART = 0.1        # the teeth's and the lip's colours at least this far apart (RGB distance), teeth lighter
DARK = 0.4             # a pixel under this x the lip's mean grey is the mouth's dark (its shadow under a lip)


def _sample(image: Tensor, level: Level, x: np.ndarray, y: np.ndarray) -> Tensor:
    """Colours [M, 3] of the photo at level-face points (x, y) [M]: the pixel each lies in (pixel i spans i .. i + 1),
    clamped to the image."""
    H, W = image.shape[:2]
    xy = level.back(torch.from_numpy(np.stack([x, y], 1)).double()).floor().long()     # the pixel holding it
    return image[xy[:, 1].clamp(0, H - 1), xy[:, 0].clamp(0, W - 1)]


def _column_samples(x: np.ndarray, y0: np.ndarray, y1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points 1 px apart down each column x [C] from y0 to y1 [C] (y0 < y1; none where the span is empty)."""
    xs, ys = [], []
    for c in range(len(x)):
        r = np.arange(np.ceil(y0[c]), np.floor(y1[c]) + 1)
        xs.append(np.full(len(r), x[c]))
        ys.append(r)
    return np.concatenate(xs), np.concatenate(ys)


def refine_inner_lips(face: Tensor, image: Tensor) -> Tensor:
    """face [478, >=2] (photo pixels), image [H, W, 3] in [0, 1] -> the face with its inner-lip vertices
    (UPPER_INNER, LOWER_INNER, corners excepted) moved onto the lips' edges the photo shows (module docstring);
    the face itself when mediapipe reads the mouth closed. Other columns (z) are kept."""
    level = Level(face)
    lf = level.face.double().numpy()                                             # [478, 2] level face
    up_ids, low_ids = list(UPPER_INNER[1:-1]), list(LOWER_INNER[1:-1])
    x = (lf[up_ids, 0] + lf[low_ids, 0]) / 2                                     # each pair's column [P]
    y_up, y_low = lf[up_ids, 1], lf[low_ids, 1]
    gap = y_low - y_up
    if float(np.median(gap)) < MIN_GAP_PX:
        return face
    gap_rgb = _sample(image, level, *_column_samples(x, y_up + 0.5, y_low - 0.5))
    if len(gap_rgb) < 4:
        return face
    lum = gap_rgb.mean(1)
    teeth = gap_rgb[lum >= lum.median()].median(0).values                      # [3]
    out = face.clone()
    for ids, y_in, outer, sign in ((low_ids, y_low, OUTER_LOWER, 1.0), (up_ids, y_up, OUTER_UPPER, -1.0)):
        y_out = arc_y(level.face, outer, torch.from_numpy(x))
        depth = sign * (y_out - y_in)                                             # the lip's height per column
        if float(np.median(depth)) < 2.0:
            continue
        a, b = y_in + sign * (1 - OUTER_PART) * depth, y_out
        lip_rgb = _sample(image, level, *_column_samples(x, np.minimum(a, b), np.maximum(a, b)))
        if len(lip_rgb) < 3:
            continue                                                              # too thin a lip to tell its colour
        lip = lip_rgb.median(0).values
        apart = float((teeth - lip).norm())
        has_teeth = apart >= MIN_APART and float(teeth.mean()) > float(lip.mean())
        margin, dark = LIP_MARGIN * apart, DARK * float(lip.mean())
        steps = np.zeros(len(x))
        for c in range(len(x)):
            for s in np.arange(0.5, REACH * max(depth[c], 0.0), 1.0):           # pixel centres past the contour
                rgb = _sample(image, level, x[c:c + 1], np.array([y_in[c] + sign * s]))[0]
                toothy = has_teeth and float((teeth - rgb).norm()) + margin < float((lip - rgb).norm())
                if toothy or float(rgb.mean()) < dark:
                    steps[c] = s + 0.5                                            # this pixel is gap: past it
                else:
                    break
        smooth = np.array([np.median(steps[max(c - 1, 0):c + 2]) for c in range(len(steps))])
        move = torch.from_numpy(np.stack([np.zeros(len(x)), sign * smooth], 1))     # [P, 2] on the level face
        out[ids, :2] += level.back(move, about=False).to(out.dtype)               # a vertex not moved: exactly 0
    return out
