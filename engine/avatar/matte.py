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
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.avatar.shell import erode

BAND = 4            # pixels in from the silhouette that may mix in the background (a 2 px ring, plus stray hair)
SIGMA = 3.0         # the local means' blur, pixels
MIN_WEIGHT = 0.005  # a local mean needs this much of its kernel on its own side (the band's outer edge: ~0.02)
MIN_CONTRAST = 0.15  # |F - B| (RGB in [0, 1]) under which the two are not told apart


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


def edge_matte(image: Tensor, person: Tensor, band: int = BAND) -> tuple[Tensor, Tensor]:
    """image [H, W, 3] in [0, 1], person [H, W] bool -> (alpha [H, W]: the person's share of each pixel, 1 away
    from the edge and outside the person; colour [H, W, 3]: the person's colour there, the image itself where
    alpha is 1). Only the person pixels within `band` pixels of the silhouette are unmixed (the photo's frame
    counts as inside, as in shell.edge_ring)."""
    if image.shape[:2] != person.shape or image.shape[-1] != 3:
        raise ValueError(f"image/person: expected [H, W, 3] and [H, W], got {list(image.shape)} and "
                         f"{list(person.shape)}")
    H, W = person.shape
    ring = edge_band(person, band)
    fg, fg_w = _local(image, erode(person, band), SIGMA)                # the person, deeper in
    bg, bg_w = _local(image, ~person, SIGMA)                            # the background, just outside
    d = fg - bg                                                          # [H, W, 3]
    contrast = d.norm(dim=-1)
    a = ((image - bg) * d).sum(-1) / (contrast ** 2).clamp(min=1e-9)
    ok = ring & (fg_w >= MIN_WEIGHT) & (bg_w >= MIN_WEIGHT) & (contrast >= MIN_CONTRAST)
    alpha = torch.where(ok, a.clamp(0.0, 1.0), torch.ones(H, W))
    colour = torch.where(ok[..., None] & (a < 1.0)[..., None], fg, image)
    return alpha, colour
