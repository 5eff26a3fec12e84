"""Colours for the side of the person the photo does not show: synthesised per region, never mirrored.

A blurred copy of the front put the shirt, tie, badges and face of the front on the back. Instead each back
Gaussian gets a colour built from the photo's pixels of its own kind of surface:

- base colour: the median colour of the same region in a wide window of the same rows (window_frac of the
  person's width). A median keeps what most of the surface is (the jacket) and drops narrow or small
  front-only details (a tie, a badge, a logo, a shirt opening), while wide changes (a shirt over trousers,
  sleeves beside a dress) stay where they are.
- texture: the photo's fine detail (the colour minus its local mean) of the same region, taken from random
  places: the back is tiled, and each tile borrows the texture of a random patch of the region. Hair keeps
  its strands, knitwear its knit, with none of the front's layout.
- the back of the head is hair: its source is the HAIR region (when the photo shows hair), for the whole
  head, so no face appears behind it. Hands and skin keep their own colours.

Pixels are (x, y) of the photo; colours [.., 3] in [0, 1]. The same seed gives the same colours.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.avatar.regions import BODY, EYES, FACE, HAIR, HANDS, LIPS

HEAD = (FACE, LIPS, EYES, HAIR)
MIN_SOURCE = 64            # pixels a region needs to serve as a texture source
DETAIL_LIMIT = 0.05        # borrowed detail is soft-limited to this (colour units): texture, not edges


def _local_mean(image: Tensor, mask: Tensor, sigma: float) -> Tensor:
    """Normalised box-ish blur of image [H, W, 3] within mask [H, W] (two passes of a (2r+1) box, r ~ sigma)."""
    r = max(1, int(round(sigma)))
    m = mask.float()[None, None]
    x = image.permute(2, 0, 1)[None] * m
    for _ in range(2):
        x, m = (F.avg_pool2d(F.pad(t, (r, r, r, r), mode="replicate"), 2 * r + 1, 1) for t in (x, m))
    return (x / m.clamp(min=1e-6))[0].permute(1, 2, 0)


def _source_groups(regions: Tensor, person: Tensor) -> tuple[Tensor, Tensor]:
    """For every pixel, the surface group it belongs to (0 none, 1 head, 2 body, 3 hands) [H, W], and the
    group whose photo pixels serve as its source [H, W] (the head's source is the hair)."""
    group = torch.zeros_like(regions)
    group[torch.isin(regions, torch.tensor(HEAD))] = 1
    group[regions == BODY] = 2
    group[regions == HANDS] = 3
    group[~person] = 0
    source = group.clone()
    if int(((regions == HAIR) & person).sum()) >= MIN_SOURCE:
        source[torch.isin(regions, torch.tensor((FACE, LIPS, EYES))) & person] = 0   # the head's texture: hair only
    return group, source


def back_colours(image: Tensor, person: Tensor, regions: Tensor, pixels: Tensor, window_frac: float = 0.35,
                 tile: int = 24, seed: int = 0) -> Tensor:
    """Colours [M, 3] for back-side Gaussians at photo pixels [M, 2] (x, y); image [H, W, 3], person [H, W]
    bool, regions [H, W] (engine.avatar.regions labels)."""
    H, W = person.shape
    if image.shape != (H, W, 3) or regions.shape != (H, W):
        raise ValueError(f"image/regions: expected [{H}, {W}, 3] and [{H}, {W}], got {list(image.shape)}, "
                         f"{list(regions.shape)}")
    group, source = _source_groups(regions, person)
    xs, ys = pixels[:, 0].long().clamp(0, W - 1), pixels[:, 1].long().clamp(0, H - 1)
    g = group[ys, xs]
    out = image[ys, xs].clone()
    gen = torch.Generator().manual_seed(seed)
    cols = person.any(0).nonzero()[:, 0]
    width = int(cols.max() - cols.min() + 1) if cols.numel() else W
    reach = max(4, int(window_frac * width / 2))
    for k in (1, 2, 3):
        rows = g == k
        src = source == k
        if int(rows.sum()) == 0:
            continue
        if int(src.sum()) < MIN_SOURCE:
            src = group == k                                  # too little of the preferred source: its own pixels
        if int(src.sum()) == 0:
            continue
        out[rows] = _base(image, src, xs[rows], ys[rows], reach, whole_rows=(k == 1)) \
            + _texture(image, src, xs[rows], ys[rows], tile, gen)
    return out.clamp(0, 1)


def surface_colours(image: Tensor, src: Tensor, pixels: Tensor, window_frac: float = 0.35, tile: int = 24,
                    seed: int = 0) -> Tensor:
    """Colours [M, 3] at photo pixels [M, 2] (x, y) for a surface the photo does not show, continued from the
    source pixels src [H, W] bool: the median of the source near each pixel's rows plus the source's borrowed
    fine texture, as for the back (module docstring). An empty source: the pixels' own colours."""
    H, W = src.shape
    xs, ys = pixels[:, 0].long().clamp(0, W - 1), pixels[:, 1].long().clamp(0, H - 1)
    if int(src.sum()) == 0:
        return image[ys, xs].clone()
    cols = src.any(0).nonzero()[:, 0]
    reach = max(4, int(window_frac * int(cols.max() - cols.min() + 1) / 2))
    gen = torch.Generator().manual_seed(seed)
    return (_base(image, src, xs, ys, reach, whole_rows=False) + _texture(image, src, xs, ys, tile, gen)).clamp(0, 1)


def _base(image: Tensor, src: Tensor, xs: Tensor, ys: Tensor, reach: int, whole_rows: bool) -> Tensor:
    """Median colour [M, 3] of the src pixels in a window of +-reach columns (the whole source when
    whole_rows: hair behind a head) and +-6 rows around each (x, y); the source's overall median where a
    window holds none."""
    H, W = src.shape
    overall = image[src].median(0).values
    if whole_rows:
        dx = torch.arange(-W, W + 1, 4)
    else:
        dx = torch.arange(-reach, reach + 1, 3)
    dy = torch.arange(-6, 7, 3)
    oy, ox = torch.meshgrid(dy, dx, indexing="ij")
    px = xs[:, None] + ox.reshape(1, -1)
    py = ys[:, None] + oy.reshape(1, -1)
    inside = (px >= 0) & (px < W) & (py >= 0) & (py < H)
    px, py = px.clamp(0, W - 1), py.clamp(0, H - 1)
    ok = inside & src[py, px]
    values = image[py, px]                                            # [M, S, 3]
    values = torch.where(ok[..., None], values, torch.tensor(float("nan")))
    med = values.nanmedian(dim=1).values
    return torch.where(ok.any(1, keepdim=True), med, overall)


def _texture(image: Tensor, src: Tensor, xs: Tensor, ys: Tensor, tile: int, gen: torch.Generator) -> Tensor:
    """Fine detail [M, 3] borrowed from random patches of the src region: each tile x tile cell of the back
    reads the detail (colour minus its 3-pixel local mean) at one random offset that lands in the source."""
    H, W = src.shape
    detail = (image - _local_mean(image, src, 3.0)) * src[..., None]
    ty, tx = ys // tile, xs // tile
    cell = ty * (W // tile + 1) + tx
    cells, inverse = cell.unique(return_inverse=True)
    where = src.nonzero()                                             # [S, 2] (y, x) of source pixels
    pick = where[torch.randint(len(where), (len(cells),), generator=gen)]
    centre_y = (cells // (W // tile + 1)) * tile + tile // 2
    centre_x = (cells % (W // tile + 1)) * tile + tile // 2
    off_y, off_x = pick[:, 0] - centre_y, pick[:, 1] - centre_x
    sy = (ys + off_y[inverse]).clamp(0, H - 1)
    sx = (xs + off_x[inverse]).clamp(0, W - 1)
    # strong edges (a badge's rim, printed text) are front-only layout, not texture: soft-limit the detail
    borrowed = detail[sy, sx] * src[sy, sx, None]
    return DETAIL_LIMIT * torch.tanh(borrowed / DETAIL_LIMIT)


def rim_colours(image: Tensor, person: Tensor, pixels: Tensor, inward: Tensor, t: Tensor, back: Tensor,
                inset: float = 3.0) -> Tensor:
    """Colours [M, 3] for the discs of the rim walls (engine.avatar.shell.rim_walls) at photo pixels [M, 2]
    (x, y) on the silhouette: a blend from the photo's colour at the front edge (t [M] = 0) to the back's colour
    back [M, 3] at the back edge (t = 1). The photo's colour is read `inset` pixels in from the rim along
    inward [M, 2] (unit, image plane), from a copy blurred within the mask: the rim pixel itself is half
    background (a light halo around dark hair), and one pixel's colour per row made the side of a head a stack
    of stripes. Where the inset point leaves the mask the rim pixel's blurred colour stands in."""
    H, W = person.shape
    soft = _local_mean(image, person, 1.5)
    p = pixels.float() + 0.5
    q = (p + inset * inward).floor().long()
    qx, qy = q[:, 0].clamp(0, W - 1), q[:, 1].clamp(0, H - 1)
    px, py = pixels[:, 0].long().clamp(0, W - 1), pixels[:, 1].long().clamp(0, H - 1)
    ok = person[qy, qx]
    front = torch.where(ok[:, None], soft[qy, qx], soft[py, px])
    t = t.clamp(0, 1)[:, None]
    return ((1 - t) * front + t * back).clamp(0, 1)
