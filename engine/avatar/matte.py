"""The photo's soft edge pulled apart: along the person's silhouette, how much of each pixel is the person and what
colour the person has there.

A pixel on the silhouette, or between the loose strands of hair at its edge, mixes the person's colour F with the
background's B: I = a F + (1 - a) B (the compositing equation that natural-image matting inverts). Built from I
alone, a surfel there carries B's share in its colour: from the front it reproduces the photo, but an orbiting
camera sees the old silhouette as a pale (or dark) line across the side of the head. Given F and B, a is the
projection of I - B onto F - B. personalize paints the walls and the back from the unmixed colour, and gives the
front edge's surfels F as the colour they show away from the photo camera (engine.render.away).

F is read deeper inside the person, B just outside, each as a local mean (a normalised Gaussian blur); where either
is missing (a body cut by the frame, a finger thinner than the band) or the two are too alike to tell apart (a white
shirt on a white wall), the pixel stays whole: a = 1 and its own colour.

A segmenter's mask also takes in whole strips of backdrop next to the person, wider than that ring: on the bundled
photo a 10 px sliver of the grey wall beside the shoulder, which the walls and the back carried round the side as
a grey block. `background_like` finds such pixels (up to REACH of the person's size inside the silhouette) with
GrabCut (Rother, Kolmogorov and Blake, "GrabCut: interactive foreground extraction using iterated graph cuts",
SIGGRAPH 2004; OpenCV's cv2.grabCut), seeded by the mask: deeper in is the person, beyond the reach outside is
backdrop. A pixel it calls backdrop counts as such only when its colour differs from the person's nearby by
MIN_CONTRAST or more (its colour models are the whole photo's: beside the grey wall's sliver lies a black stand, so
no local mean of the backdrop would do). Such a pixel gets a = 0 and the person's colour nearby (read as far in
as it takes). The mask itself is not changed: the photo camera still shows the pixel as the photo has it, and a
misjudged pixel costs only a side view's colour near the edge, never a piece of the person.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from engine.avatar.shell import erode

BAND = 4            # pixels in from the silhouette that may mix in the background (a 2 px ring, plus stray hair)
SIGMA = 3.0         # the local means' blur, pixels
MIN_WEIGHT = 0.005  # a local mean needs this much of its kernel on its own side (the band's outer edge: ~0.02)
MIN_CONTRAST = 0.15  # |F - B| (RGB in [0, 1]) under which the two are not told apart
REACH = 0.03        # background_like looks this far inside the silhouette (x the root of the person's pixel count;
                    # the bundled photo's shoulder sliver is 10 px of 379)
GRABCUT_ROUNDS = 5  # GrabCut's iterations (its colour models and cut re-estimated)


def _local(image: Tensor, mask: Tensor, sigma: float) -> tuple[Tensor, Tensor]:
    """Normalised Gaussian blur of image [H, W, 3] within mask [H, W] -> (mean [H, W, 3], weight [H, W]: the
    share of the kernel that fell in the mask)."""
    r = int(3 * sigma)
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    def sep(t: Tensor) -> Tensor:                                       # [C, H, W], zero outside the frame
        t = F.conv2d(F.pad(t[:, None], (r, r, 0, 0)), k.view(1, 1, 1, -1))
        return F.conv2d(F.pad(t, (0, 0, r, r)), k.view(1, 1, -1, 1))[:, 0]
    m = mask.float()[None]
    num, den = sep(image.permute(2, 0, 1) * m), sep(m)[0]
    return (num / den.clamp(min=1e-6)).permute(1, 2, 0), den


def edge_band(person: Tensor, band: int = BAND) -> Tensor:
    """[H, W] bool: the person pixels within `band` pixels of the silhouette, the ones edge_matte unmixes (the
    photo's frame counts as inside, as in shell.edge_ring)."""
    return person & ~erode(person, band)


def reach_px(person: Tensor) -> int:
    """How far inside the silhouette (px) background_like looks, for a person mask [H, W]: REACH of the person's
    size, at least BAND."""
    return max(BAND, int(round(REACH * float(person.sum()) ** 0.5)))


def _grabcut_backdrop(image: Tensor, person: Tensor, reach: int) -> Tensor:
    """[H, W] bool: the person pixels within reach px of the silhouette that GrabCut, seeded by the mask (deeper
    in: the person; within reach outside: probably backdrop; beyond: backdrop), assigns to the backdrop."""
    rgb = np.ascontiguousarray((image.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy())
    inner, outer = erode(person, reach).numpy(), (~erode(~person, reach)).numpy()
    p = person.numpy()
    seeds = np.full(p.shape, cv2.GC_BGD, np.uint8)
    seeds[outer & ~p] = cv2.GC_PR_BGD
    seeds[p & ~inner] = cv2.GC_PR_FGD
    seeds[inner] = cv2.GC_FGD
    if not (seeds == cv2.GC_BGD).any() or not inner.any():
        return torch.zeros_like(person)                      # nothing outside (or inside) to learn colours from
    cv2.setRNGSeed(0)                                         # its colour models start from k-means: the same cut
    cv2.grabCut(rgb, seeds, None, np.zeros((1, 65)), np.zeros((1, 65)), GRABCUT_ROUNDS, cv2.GC_INIT_WITH_MASK)
    return person & torch.from_numpy((seeds == cv2.GC_BGD) | (seeds == cv2.GC_PR_BGD))


def _reaching(image: Tensor, mask: Tensor, sigma: float, far: float, need: Tensor) -> tuple[Tensor, Tensor]:
    """The local mean [H, W, 3] of image within mask, blurred at sigma, doubled (up to far) while a pixel of need
    [H, W] bool has under MIN_WEIGHT of the mask in its kernel; and where it found enough [H, W] bool."""
    mean, weight = _local(image, mask, sigma)
    found = weight >= MIN_WEIGHT
    while sigma < far and bool((need & ~found).any()):
        sigma = min(2 * sigma, far)
        wider, w = _local(image, mask, sigma)
        mean = torch.where(found[..., None], mean, wider)
        found = found | (w >= MIN_WEIGHT)
    return mean, found


def background_like(image: Tensor, person: Tensor, reach: int | None = None) -> tuple[Tensor, Tensor]:
    """Backdrop inside the mask (module docstring): image [H, W, 3] in [0, 1], person [H, W] bool -> (which
    person pixels [H, W] bool are backdrop, the person's colour near each pixel [H, W, 3])."""
    reach = reach_px(person) if reach is None else reach
    cut = _grabcut_backdrop(image, person, reach)
    core = person & ~cut
    inner = erode(core, BAND)
    fg, fg_ok = _reaching(image, inner if bool(inner.any()) else core, SIGMA, 4.0 * reach, cut)
    backdrop = cut & fg_ok & ((image - fg).norm(dim=-1) >= MIN_CONTRAST)
    return backdrop, fg


def edge_matte(image: Tensor, person: Tensor, band: int = BAND) -> tuple[Tensor, Tensor]:
    """image [H, W, 3] in [0, 1], person [H, W] bool -> (alpha [H, W]: the person's share of each pixel, 1 away
    from the edge and outside the person; colour [H, W, 3]: the person's colour there, the image itself where
    alpha is 1). The person pixels within `band` pixels of the silhouette are unmixed (the photo's frame counts as
    inside, as in shell.edge_ring); the other pixels that are backdrop (`background_like`) get alpha 0."""
    if image.shape[:2] != person.shape or image.shape[-1] != 3:
        raise ValueError(f"image/person: expected [H, W, 3] and [H, W], got {list(image.shape)} and "
                         f"{list(person.shape)}")
    H, W = person.shape
    backdrop, near_fg = background_like(image, person)
    core = person & ~backdrop
    ring = edge_band(person, band)
    fg, fg_w = _local(image, erode(core, band), SIGMA)                  # the person, deeper in
    bg, bg_w = _local(image, ~person, SIGMA)                            # the background, just outside
    d = fg - bg                                                          # [H, W, 3]
    contrast = d.norm(dim=-1)
    a = ((image - bg) * d).sum(-1) / (contrast ** 2).clamp(min=1e-9)
    ok = ring & (fg_w >= MIN_WEIGHT) & (bg_w >= MIN_WEIGHT) & (contrast >= MIN_CONTRAST)
    alpha = torch.where(ok, a.clamp(0.0, 1.0), torch.where(backdrop, torch.zeros(H, W), torch.ones(H, W)))
    colour = torch.where(ok[..., None] & (a < 1.0)[..., None], fg, torch.where(backdrop[..., None], near_fg, image))
    return alpha, colour
