"""Colours for the side of the person the photo does not show: synthesised per region, never mirrored.

A blurred copy of the front put the shirt, tie, badges and face of the front on the back. Instead each back
Gaussian gets a colour built from the photo's pixels of its own kind of surface:

- base colour of the body: what wraps round it. A garment that goes on round the back shows at the
  silhouette's edge; a badge, a tie, a logo or a shirt opening sits inside the front and does not. So the base
  is taken from the body's pixels near the silhouette (RIM_FRAC of the person's width, RIM_PART of the limb's
  or torso's half-width; the photo's frame is no edge, nor is the edge against what the segmentation took
  for a person and the silhouette left out: a neighbour, or a shoulder the pose model missed, whose cut ran
  through the jacket to the shirt and tie) in the same rows: the median of the RIM_SAMPLES
  nearest on the pixel's left, the same on its right, blended by how near each side is. Wide changes down the
  body (a shirt over trousers, a collar ring) stay in their rows, and a person whose sides differ (a helmet
  held at one side) shades from one to the other across the back, with no seam. Rows where the body does not
  reach the silhouette (hair over the shoulders) take the median colour of the same region in a wide window
  of the same rows (window_frac of the person's width), which keeps what most of the surface is; rows
  whose edge is cut (`cut_rows`: the frame, or a piece the silhouette left out) take their whole row's
  median. (As the rule, a median over whole rows mixed a jacket and the badge across it into a colour of
  neither, a streak across the back.)
  A bare arm (`_bare_arms`: an arm part of the pose, nearer the face's skin than the chest's clothes in
  colour) hanging beside the torso is the photo's edge in its rows but not what wraps round the torso: the
  torso's back leaves it out of its rim there (and of its window), so a dress stays a dress behind, while
  the arm's own back is skin. Behind an arm held across the body (inside the torso's quadrilateral) is the
  torso: its back there is the torso's too.
- texture: the photo's detail (the colour minus its local mean: strands, folds, knit) of the same region,
  taken from random places. The back is a grid of tiles (TILE_FRAC of the person's size, so a small figure
  gets small tiles); each grid node borrows the detail around one random place of the region, and a pixel
  blends its four nodes' borrowings bilinearly, divided by the root of the summed squared weights so the
  blend keeps the source's contrast (the variance-preserving blend of Heitz & Neyret, "High-Performance
  By-Example Noise using a Histogram-Preserving Blending Operator", HPG 2018): no seams, and none of the
  front's layout. Busy photo pixels (the BUSY share of a region with the most fine detail: a badge's rim,
  printed text) and those 2 px around them lend nothing, so no fragment of a logo reaches the back. The grid
  is fixed by the photo's size and the seed, so a pixel's colour does not depend on which other pixels are
  asked for at the same time (the back shell, the rim walls' back edge and the crack walls agree).
- the back of the head is hair: its source is the HAIR region (when the photo shows hair), for the whole
  head, so no face appears behind it. The HAIR region is a column beside the face, so the pixels in it that
  look more like the clothes or the skin than the crown's hair (a shoulder beside a lowered head, an ear)
  lend nothing to the head, and nor do hair-like pieces cut off from the crown (a neighbour's arm at the
  photo's edge), nor a strip of forehead above the face mesh (`_skin_in_crown`; under a receding hairline,
  where the band is most of a small crown, `_forehead_in_crown`); those like the clothes are
  body. Its base colour is the hair's median per row, and a row with only a few hair pixels (under
  ROW_SHARE of the hair's width: the hair's edge against the neck, the ear's rim and the shadow under it beside
  a short-haired head) takes the nearest full row's.
- long hair (`_hanging_hair`): hair hanging from the crown over the shoulders (BODY pixels that look like the
  crown's hair, in one piece with it) goes on down the back. It covers the upper back from the chin to the
  hair's length in the photo, as wide as the head and as far out as the hair reaches, narrowing and rounded at
  its end; those pixels and the hanging strands themselves take the head's hair colours and texture, and the
  strands lend nothing to the clothes' rim (as rim, they painted a band of hair colour across the whole back
  of a dress). Short hair, or clothes of the hair's colour (more "hair" than the head's own area), make none.
- hands and skin keep their own colours.

Pixels are (x, y) of the photo; colours [.., 3] in [0, 1]. The same seed gives the same colours.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from engine.avatar.limbs import ARMS, TORSO, body_parts, torso_distance
from engine.avatar.regions import BODY, EYES, FACE, HAIR, HANDS, LIPS
from engine.avatar.silhouette import pieces_holding

HEAD = (FACE, LIPS, EYES, HAIR)
MIN_SOURCE = 64            # pixels a region needs to serve as a texture source
ROW_SOURCE = 12            # sampled hair pixels a row of the head's back needs for a median of its own ...
ROW_SHARE = 0.25           # ... and at least this share of what a row across the whole hair would hold: beside the
                           # face a row's few "hair" pixels are an ear's rim, a shadow under it, a sideburn
DETAIL_LIMIT = 0.12        # borrowed detail is soft-limited to this (colour units): texture, not edges
TILE_FRAC = 0.1            # the texture grid's spacing: this x the person's size (root of its pixel count) ...
TILE_RANGE = (8, 32)       # ... within these px; the detail is the colour minus its local mean at a quarter of it
BUSY = 0.85                # a photo pixel whose fine detail energy is above this quantile of its region's lends nothing
RIM_FRAC = 0.06            # the body's pixels this share of the person's width inside the silhouette: what wraps
RIM_PART = 0.3             # ... and no deeper than this share of the body part's half-width (a small full-body
                           # figure's limbs and torso were rim all across, and their back showed the front's layout)
RIM_SAMPLES = 24           # rim pixels on each side of a back pixel whose median is that side's colour
SKIN_SPREAD = 0.9          # a crown pixel as near the face's skin as this share of the skin's own pixels may be skin
FOREHEAD_BAND = 0.125      # x the face's height: its top rows, whose colour is the forehead's
FOREHEAD_DRIFT = 0.1       # a crown colour part this near the forehead's is forehead ...
FOREHEAD_SPLIT = 0.12      # ... when the other part lies this far from it
HANG_MIN = 0.25            # hair reaching this x the face's height below the chin hangs down the back too
HANG_ROW = 0.05            # a row holds hanging hair with this x the face's width of it (at least 2 px)
HANG_GAP = 0.25            # the hair's length: its rows from the chin down, gaps up to this x the face's height
HANG_LONGEST = 2.5         # ... and at most this many face heights
HANG_MOST = 1.0            # more "hair" below the face than this x the head's area is clothes of its colour
TAPER, TAPER_WIDTH = 0.35, 0.6   # the hair behind narrows to this x its width over this last share of its length
ROUND_END = 0.15           # and its end is this x the face's height shorter at the sides than in the middle


def _box(x: Tensor, r: int, dim: int) -> Tensor:
    """Mean of x over a (2r+1) window along dim (edges replicated), by running sums: its cost does not grow with r."""
    n = x.shape[dim]
    idx = torch.arange(-r - 1, n + r).clamp(0, n - 1)
    c = x.index_select(dim, idx).cumsum(dim)
    return (c.narrow(dim, 2 * r + 1, n) - c.narrow(dim, 0, n)) / (2 * r + 1)


def _local_mean(image: Tensor, mask: Tensor, sigma: float) -> Tensor:
    """Normalised box-ish blur of image [H, W, C] within mask [H, W] (two passes of a (2r+1) box, r ~ sigma)."""
    r = max(1, int(round(sigma)))
    m = mask.to(image.dtype)[..., None]
    x = image * m
    for _ in range(2):
        x, m = (_box(_box(t, r, 0), r, 1) for t in (x, m))
    return x / m.clamp(min=1e-6)


def _nearest_sample_distance(colours: Tensor, pool: Tensor, k: int = 5, samples: int = 512) -> Tensor:
    """For colours [M, 3], the k-th smallest distance [M] to a fixed random sample of the pool colours [P, 3]
    (the k-th, not the first: one stray pixel of the pool does not claim a colour)."""
    gen = torch.Generator().manual_seed(0)
    pick = pool[torch.randperm(len(pool), generator=gen)[:samples]]
    d = torch.cdist(colours, pick)
    return d.topk(min(k, d.shape[1]), dim=1, largest=False).values[:, -1]


class _Head:
    """The head's colour pools in the photo, from the regions: the crown (HAIR above the face's top row), the
    clothes (BODY in the face's columns from half a face below the chin to two faces below it: the chest,
    where neither the neck nor long hair falling over the shoulders lies) and the skin (FACE). ok: each pool
    holds enough pixels to compare with."""

    def __init__(self, image: Tensor, regions: Tensor, person: Tensor):
        face = torch.isin(regions, torch.tensor((FACE, LIPS, EYES))) & person
        self.ok = bool(face.any())
        if not self.ok:
            return
        ys, xs = face.nonzero(as_tuple=True)
        self.top, self.bottom = int(ys.min()), int(ys.max())
        x0, x1, h = int(xs.min()), int(xs.max()), self.bottom - self.top + 1
        rows = torch.arange(regions.shape[0])[:, None]
        cols = torch.arange(regions.shape[1])[None, :]
        self.image = image
        self.hair = (regions == HAIR) & person
        self.crown = self.hair & (rows < self.top)
        self.clothes = (regions == BODY) & person & (cols >= x0) & (cols <= x1) \
            & (rows > self.bottom + h // 2) & (rows <= self.bottom + 2 * h)
        self.skin = (regions == FACE) & person
        self.ok = min(int(self.crown.sum()), int(self.clothes.sum()), int(self.skin.sum())) >= MIN_SOURCE // 4

    def distances(self, where: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """For the pixels where [H, W] is set: the colour distances [M] to the crown, the clothes and the skin
        (`_nearest_sample_distance`)."""
        colours = self.image[where]
        pools = (self.crown, self.clothes, self.skin)
        return tuple(_nearest_sample_distance(colours, self.image[pool]) for pool in pools)

    def distances_at(self, ys: Tensor, xs: Tensor, chunk: int = 32768) -> tuple[Tensor, Tensor, Tensor]:
        """`distances` for the pixels (ys, xs) [M], in their order, a chunk at a time (each is a cdist against
        512 samples per pool)."""
        parts = []
        for s in range(0, len(ys), chunk):
            parts.append(tuple(_nearest_sample_distance(self.image[ys[s:s + chunk], xs[s:s + chunk]],
                                                        self.image[pool])
                               for pool in (self.crown, self.clothes, self.skin)))
        if not parts:
            return torch.zeros(0), torch.zeros(0), torch.zeros(0)
        return tuple(torch.cat(d) for d in zip(*parts))


def _hair_alike(head: _Head, regions: Tensor, person: Tensor) -> tuple[Tensor, Tensor]:
    """Which HAIR pixels [H, W] look like hair, and which look like the clothes [H, W]. The HAIR region is a
    column beside the face (engine.avatar.regions), so where the head is lowered or small it takes in the
    shoulders beside the jaw, and the ears. Below the face's top row, a hair pixel stays hair only where its
    colour is at least as near the crown's as the clothes' and the skin's (`_Head`); one nearest the clothes
    is clothes. Without enough of each pool (a head cut off by the photo's edge), the HAIR region as it is."""
    none = torch.zeros_like(person)
    if not head.ok:
        return (regions == HAIR) & person, none
    beside = head.hair & ~head.crown
    d_hair, d_clothes, d_skin = head.distances(beside)
    like_hair, like_clothes = none.clone(), none.clone()
    like_hair[beside] = (d_hair <= d_clothes) & (d_hair <= d_skin)
    like_clothes[beside] = (d_clothes < d_hair) & (d_clothes <= d_skin)
    # hair hangs from the crown: a pale piece of the column cut off from it (a neighbour's bare arm at the photo's
    # edge, a bright wall between strands) is nearer the crown's highlights than the face's skin, yet no hair
    crown = [(x, y) for y, x in head.crown.nonzero().tolist()]
    return torch.from_numpy(pieces_holding((head.crown | like_hair).numpy(), crown)), like_clothes


def _skin_in_crown(head: _Head) -> Tensor:                         # head.ok: its pools are there
    """The crown's pixels [H, W] whose colour lies within the face's own skin (no further from the skin's
    colours than SKIN_SPREAD of the skin's pixels are) and nearer the skin than the rest of the crown, in pieces
    that reach down to the face's top row: a strip of forehead above the face mesh's top, which as hair source
    painted a band of skin across the back of the head (a highlight in the hair stays hair: it is nearer the
    hair, or lies away from the face). Empty when the skin-like pixels are most of the crown (a bald head, hair
    of the skin's tone): then the crown is what it is."""
    none = torch.zeros_like(head.crown)
    skin = head.image[head.skin]
    gen = torch.Generator().manual_seed(1)
    probe = skin[torch.randperm(len(skin), generator=gen)[:512]]
    spread = float(torch.quantile(_nearest_sample_distance(probe, skin), SKIN_SPREAD))
    _, _, d_skin = head.distances(head.crown)
    like = d_skin <= spread
    if int(like.sum()) * 2 >= len(like):
        return none
    # and nearer the skin than the rest of the crown (a highlight in the hair is nearer the hair)
    rest = head.image[head.crown][~like]
    like &= d_skin < _nearest_sample_distance(head.image[head.crown], rest)
    out = none.clone()
    out[head.crown] = like
    seeds = [(x, y) for y, x in (out & (torch.arange(out.shape[0])[:, None] >= head.top - 2)).nonzero().tolist()]
    if not seeds:
        return none
    return torch.from_numpy(pieces_holding(out.numpy(), seeds))


def _forehead_in_crown(head: _Head, hair: Tensor) -> Tensor:    # head.ok: its pools are there
    """The hair pixels [H, W] that are forehead: above a receding hairline the face mesh's top lies well below
    the hair, and on a small head the crown is a few pixels of hair over a band of forehead that
    `_skin_in_crown` (the whole face's skin, tightly) does not catch. The crown's colours split in two
    (two-means, seeded with the crown pixel furthest from the forehead and with the forehead itself: the
    median of the face's top FOREHEAD_BAND rows). When one part stays within FOREHEAD_DRIFT of the forehead's
    colour and the other lies FOREHEAD_SPLIT or more from it, the hair pixels nearer the first are forehead.
    Empty when the top third of the crown's rows is mostly forehead-coloured: a bald head, or blond hair in
    the skin's light, is what it is."""
    none = torch.zeros_like(hair)
    rows = torch.arange(hair.shape[0])[:, None]
    crown = hair & (rows < head.top)
    band = head.skin & (rows <= head.top + max(2, int(FOREHEAD_BAND * (head.bottom - head.top))))
    if int(crown.sum()) < MIN_SOURCE or int(band.sum()) < 8:
        return none
    forehead = head.image[band].median(0).values
    colours = head.image[crown]
    a, b = colours[(colours - forehead).norm(dim=1).argmax()], forehead.clone()
    for _ in range(10):
        near_a = (colours - a).norm(dim=1) < (colours - b).norm(dim=1)
        if bool(near_a.all()) or not bool(near_a.any()):
            return none
        a, b = colours[near_a].mean(0), colours[~near_a].mean(0)
    if float((b - forehead).norm()) > FOREHEAD_DRIFT or float((a - forehead).norm()) < FOREHEAD_SPLIT:
        return none
    ys = crown.nonzero()[:, 0]
    top = ys < ys.min() + (head.top - ys.min()) / 3
    if float((~near_a[top]).float().mean()) >= 0.5:
        return none
    colours = head.image[hair]
    out = none.clone()
    out[hair] = (colours - b).norm(dim=1) < (colours - a).norm(dim=1)
    return out


def _hanging_hair(head: _Head, regions: Tensor, person: Tensor, hair: Tensor) -> tuple[Tensor, Tensor]:
    """Long hair: the BODY pixels below the face's top that look like the crown's hair (as `_hair_alike`) and
    hang from it (one piece with the crown's hair) [H, W], and the photo pixels whose back it covers [H, W].

    The hair's length is its rows from the chin down that hold HANG_ROW of the face's width of it (gaps of up to
    HANG_GAP of the face's height bridged), at most HANG_LONGEST face heights. Behind, it falls from the head
    as a mass: each row as wide as the head and as far out as the hair reaches in the rows around it (a quarter
    face up and down), narrowing to TAPER_WIDTH of that over the last TAPER of its length, its end rounded
    (ROUND_END of the face's height shorter at the sides than in the middle). Hair that ends within HANG_MIN
    of the face's height below the chin (short hair, a collar of its colour) covers nothing; nor does "hair"
    over HANG_MOST x the head's area (clothes of the hair's colour: a dark coat under dark hair)."""
    none = torch.zeros_like(person)
    if not head.ok:
        return none, none
    H, W = person.shape
    rows = torch.arange(H)[:, None].expand(H, W)
    cols = torch.arange(W)[None, :].expand(H, W)
    head_px = person & torch.isin(regions, torch.tensor(HEAD))
    bottom = int(rows[head_px].max())                                  # the HAIR region's bottom: the chin's row
    below = person & (regions == BODY) & (rows > head.top)             # beside the jaw and down from there
    if not bool(below.any()):
        return none, none
    ys, xs = below.nonzero(as_tuple=True)
    d_hair, d_clothes, d_skin = head.distances_at(ys, xs)
    candidate = none.clone()
    candidate[ys, xs] = (d_hair <= d_clothes) & (d_hair <= d_skin)
    crown = [(x, y) for y, x in head.crown.nonzero().tolist()]
    hanging = torch.from_numpy(pieces_holding((hair | candidate).numpy(), crown)) & candidate
    if int(hanging.sum()) > HANG_MOST * int(head_px.sum()):
        return none, none
    head_cols = head_px.any(0).nonzero()[:, 0]
    x0, x1 = int(head_cols.min()), int(head_cols.max())
    face_h, face_w = head.bottom - head.top + 1, x1 - x0 + 1
    full = (hanging.sum(1) >= max(2, int(HANG_ROW * face_w))).nonzero()[:, 0]
    end, gap = bottom, max(1, int(HANG_GAP * face_h))
    for r in full[full > bottom].tolist():
        if r - end > gap:
            break
        end = r
    end = min(end, bottom + int(HANG_LONGEST * face_h))
    if end - head.bottom < HANG_MIN * face_h:
        return hanging, none
    # each row's reach: the head's columns, and the hair's in the rows around it
    reach = max(1, face_h // 4)
    left = torch.where(hanging, cols, W).min(1).values.clamp(max=x0).float()          # [H]
    right = torch.where(hanging, cols, -1).max(1).values.clamp(min=x1).float()
    left = -F.max_pool1d(-left[None, None], 2 * reach + 1, 1, reach)[0, 0]
    right = F.max_pool1d(right[None, None], 2 * reach + 1, 1, reach)[0, 0]
    length = max(end - bottom, 1)
    t = ((torch.arange(H) - bottom).float() / length - (1 - TAPER)).clamp(min=0) / TAPER   # 0 .. 1 over the taper
    centre, half = (left + right) / 2, (right - left) / 2 * (1 - (1 - TAPER_WIDTH) * t)
    u = ((cols - centre[:, None]) / half[:, None].clamp(min=1)).clamp(-1, 1)               # -1 .. 1 across
    last = end - ROUND_END * face_h * u ** 2
    # from the face's top down (the body beside the jaw, under the HAIR region's end, is behind the hair too)
    covered = person & (rows > head.top) & (rows <= last) & ((cols - centre[:, None]).abs() <= half[:, None])
    return hanging, covered


def _bare_arms(head: _Head, person: Tensor, pose: Tensor | None, parts: Tensor | None = None
               ) -> tuple[Tensor, Tensor]:
    """(bare [H, W]: the pixels of an arm (engine.avatar.limbs.body_parts, pose [33, >=2] in the photo's
    pixels) that look like the face's skin more than the chest's clothes; torso [H, W]: the pixels whose back
    is the torso's: those body_parts gives to the torso, and an arm's inside the torso's quadrilateral (an arm
    held across the body lies in front of the torso, which is what its back shows). No pose or no face:
    nothing bare, no torso. parts [H, W]: body_parts of every pixel's centre, when the caller has it already."""
    none = torch.zeros_like(person)
    if pose is None or not head.ok:
        return none, none
    ys, xs = person.nonzero(as_tuple=True)
    points = torch.stack([xs, ys], 1).float() + 0.5
    part = body_parts(points, pose) if parts is None else parts[ys, xs]
    arm = torch.isin(part, torch.tensor(sorted(ARMS)))
    torso = none.clone()
    torso[ys, xs] = (part == TORSO) | (arm & (torso_distance(points, pose) == 0))
    bare = none.clone()
    _, d_clothes, d_skin = head.distances_at(ys[arm], xs[arm])
    bare[ys[arm], xs[arm]] = d_skin < d_clothes
    return bare, torso


def _source_groups(image: Tensor, regions: Tensor, person: Tensor) -> tuple[Tensor, Tensor, _Head]:
    """For every pixel, the surface group it belongs to (0 none, 1 head, 2 body, 3 hands) [H, W], the group
    whose photo pixels serve as its source [H, W] (the head's source is the hair that looks like hair; HAIR
    pixels that look like the clothes are body, `_hair_alike`), and the head's colour pools (`_Head`)."""
    group = torch.zeros_like(regions)
    group[torch.isin(regions, torch.tensor(HEAD))] = 1
    group[regions == BODY] = 2
    group[regions == HANDS] = 3
    head = _Head(image, regions, person)
    hair, clothes = _hair_alike(head, regions, person)
    group[clothes] = 2
    hanging, covered = _hanging_hair(head, regions, person, hair)
    group[(covered | hanging) & (group == 2)] = 1                 # long hair: its back, and the back it covers, is hair
    hair = hair | hanging
    if head.ok:
        hair &= ~_skin_in_crown(head)                             # forehead above the face mesh: not hair
        hair &= ~_forehead_in_crown(head, hair)                   # (and the band of it under a receding hairline)
    group[~person] = 0
    source = group.clone()
    if int(hair.sum()) >= MIN_SOURCE:
        source[(group == 1) & ~hair] = 0                          # the head's texture: hair only
    return group, source, head


def texture_tile(person: Tensor) -> int:
    """The texture grid's spacing in px for a person mask [H, W]: TILE_FRAC of the person's size."""
    size = float(person.sum()) ** 0.5
    return int(min(max(round(TILE_FRAC * size), TILE_RANGE[0]), TILE_RANGE[1]))


class BackPainter:
    """The back's colours for one photo: the surface groups, sources, hanging hair and bare arms are worked out
    once (about 0.65 s on the bundled photo), and each call paints any pixels [M, 2] (x, y) -> colours [M, 3].
    A pixel's colour does not depend on which other pixels are asked for with it, so personalize's back shell,
    rim walls and crack walls, painted by one painter, agree with `back_colours` pixel for pixel.
    image [H, W, 3], person [H, W] bool, regions [H, W] (engine.avatar.regions labels); pose [33, >=2] in the
    same pixels, or None (then a bare arm beside the torso is the torso's rim as well: `_bare_arms`); parts
    [H, W]: the pose's body part of every pixel (engine.avatar.limbs.body_parts), when the caller has it already
    (personalize does, for the limbs' depth), or None to work it out here; unsure [H, W] bool: what the
    segmentation took for a person besides the silhouette (Landmarks.unsure), whose edge lends no rim colour
    (`near_the_rim`), or None."""

    def __init__(self, image: Tensor, person: Tensor, regions: Tensor, window_frac: float = 0.35,
                 tile: int | None = None, seed: int = 0, pose: Tensor | None = None, parts: Tensor | None = None,
                 unsure: Tensor | None = None):
        H, W = person.shape
        if image.shape != (H, W, 3) or regions.shape != (H, W):
            raise ValueError(f"image/regions: expected [{H}, {W}, 3] and [{H}, {W}], got {list(image.shape)}, "
                             f"{list(regions.shape)}")
        self.image, self.seed = image, seed
        self.group, self.source, head = _source_groups(image, regions, person)
        self.bare, self.torso = _bare_arms(head, person, pose, parts)
        self.tile = tile or texture_tile(person)
        cols = person.any(0).nonzero()[:, 0]
        width = int(cols.max() - cols.min() + 1) if cols.numel() else W
        self.reach = max(4, int(window_frac * width / 2))
        self.band = rim_band(width)
        self.near_rim = near_the_rim(person, self.band, unsure)
        self.cut_rows = cut_rows(person, unsure)

    def __call__(self, pixels: Tensor) -> Tensor:
        image, group, source, bare = self.image, self.group, self.source, self.bare
        H, W = group.shape
        xs, ys = pixels[:, 0].long().clamp(0, W - 1), pixels[:, 1].long().clamp(0, H - 1)
        g = group[ys, xs]
        out = image[ys, xs].clone()
        for k in (1, 2, 3):
            rows = g == k
            src = source == k
            if int(rows.sum()) == 0:
                continue
            if int(src.sum()) < MIN_SOURCE:
                src = group == k                                  # too little of the preferred source: its own pixels
            if int(src.sum()) == 0:
                continue
            base = _base(image, src, xs[rows], ys[rows], self.reach, whole_rows=(k == 1))
            if k == 2:                      # rows whose edge the frame or a left-out piece cuts: the whole row's
                cut = self.cut_rows[ys[rows]]
                if bool(cut.any()):
                    base[cut] = _row_base(image, src)[ys[rows][cut]]
                rim = src & self.near_rim
                # the torso's back: not from a bare arm beside or across it, which is the photo's edge in those rows
                on_torso = self.torso[ys[rows], xs[rows]]
                clothed = src & ~bare
                if not (bool(bare.any()) and int(clothed.sum()) >= MIN_SOURCE):
                    on_torso = torch.zeros_like(on_torso)
                rx, ry = xs[rows], ys[rows]
                base[~on_torso] = _rim_base(image, rim, rx[~on_torso], ry[~on_torso], base[~on_torso], self.band)
                if bool(on_torso.any()):
                    tx, ty = rx[on_torso], ry[on_torso]
                    fallback = _base(image, clothed, tx, ty, self.reach, whole_rows=False)
                    cut = self.cut_rows[ty]
                    if bool(cut.any()):
                        fallback[cut] = _row_base(image, clothed)[ty[cut]]
                    base[on_torso] = _rim_base(image, rim & ~bare, tx, ty, fallback, self.band)
            out[rows] = base + _texture(image, src, xs[rows], ys[rows], self.tile, self.seed + k)
        return out.clamp(0, 1)


def back_colours(image: Tensor, person: Tensor, regions: Tensor, pixels: Tensor, window_frac: float = 0.35,
                 tile: int | None = None, seed: int = 0, pose: Tensor | None = None) -> Tensor:
    """Colours [M, 3] for back-side Gaussians at photo pixels [M, 2] (x, y): one `BackPainter`'s (see there for
    the arguments), for a single set of pixels."""
    return BackPainter(image, person, regions, window_frac, tile, seed, pose)(pixels)


def surface_colours(image: Tensor, src: Tensor, pixels: Tensor, window_frac: float = 0.35,
                    tile: int | None = None, seed: int = 0) -> Tensor:
    """Colours [M, 3] at photo pixels [M, 2] (x, y) for a surface the photo does not show, continued from the
    source pixels src [H, W] bool: the median of the source near each pixel's rows plus the source's borrowed
    fine texture, as for the back (module docstring). An empty source: the pixels' own colours."""
    H, W = src.shape
    xs, ys = pixels[:, 0].long().clamp(0, W - 1), pixels[:, 1].long().clamp(0, H - 1)
    if int(src.sum()) == 0:
        return image[ys, xs].clone()
    tile = tile or texture_tile(src)
    cols = src.any(0).nonzero()[:, 0]
    reach = max(4, int(window_frac * int(cols.max() - cols.min() + 1) / 2))
    return (_base(image, src, xs, ys, reach, whole_rows=False) + _texture(image, src, xs, ys, tile, seed)).clamp(0, 1)


def _base(image: Tensor, src: Tensor, xs: Tensor, ys: Tensor, reach: int, whole_rows: bool) -> Tensor:
    """Median colour [M, 3] of the src pixels in a window of +-reach columns and +-6 rows around each (x, y);
    the source's overall median where a window holds none. whole_rows (hair behind a head): `_row_base`."""
    if whole_rows:
        return _row_base(image, src)[ys.clamp(0, src.shape[0] - 1)]
    H, W = src.shape
    overall = image[src].median(0).values
    oy, ox = torch.meshgrid(torch.arange(-6, 7, 3), torch.arange(-reach, reach + 1, 3), indexing="ij")
    px, py = xs[:, None] + ox.reshape(1, -1), ys[:, None] + oy.reshape(1, -1)
    inside = (px >= 0) & (px < W) & (py >= 0) & (py < H)
    px, py = px.clamp(0, W - 1), py.clamp(0, H - 1)
    ok = inside & src[py, px]
    values = torch.where(ok[..., None], image[py, px], torch.tensor(float("nan")))    # [M, S, 3]
    med = values.nanmedian(dim=1).values
    return torch.where(ok.any(1, keepdim=True), med, overall)


def rim_band(width: int) -> int:
    """How far inside the silhouette (px) the rim reaches, for a person width px wide: RIM_FRAC of it, >= 2."""
    return max(2, int(RIM_FRAC * width))


def near_the_rim(person: Tensor, d: int, unsure: Tensor | None = None) -> Tensor:
    """[H, W] bool: pixels of person [H, W] within d px of its silhouette, and within RIM_PART of the body
    part's half-width there (its deepest point within 4 d px): a narrow arm or leg has a narrow rim. The photo's
    frame is no edge (a body the frame cuts goes on past it), nor is the edge against unsure [H, W] (what the
    segmentation took for a person and the silhouette left out: engine.avatar.landmarks.Landmarks.unsure): the
    person may go on there, and where the pose model cut through a jacket the edge's colour is the shirt's."""
    pad = 4 * d
    body = person if unsure is None else person | unsure
    grown = F.pad(body.float()[None, None], (pad, pad, pad, pad), mode="replicate")[0, 0]
    inside = torch.from_numpy(cv2.distanceTransform(grown.numpy().astype(np.uint8), cv2.DIST_L2, 3))
    k = 2 * pad + 1                                                      # a square max, as two 1-D ones
    half_width = F.max_pool2d(F.max_pool2d(inside[None, None], (k, 1), 1, (pad, 0)), (1, k), 1, (0, pad))[0, 0]
    depth, half_width = inside[pad:-pad, pad:-pad], half_width[pad:-pad, pad:-pad]
    return person & (depth <= torch.clamp(RIM_PART * half_width, max=float(d)))


def _within(mask: Tensor, r: int) -> Tensor:
    """[H, W] bool: the pixels within r px (a (2r+1) square) of a pixel of mask [H, W]."""
    return F.max_pool2d(mask.float()[None, None], 2 * r + 1, 1, r)[0, 0] > 0


def cut_rows(person: Tensor, unsure: Tensor | None = None) -> Tensor:
    """[H] bool: the rows where person [H, W] runs into the photo's left or right frame or next to unsure [H, W]
    (what the segmentation took for a person and the silhouette left out): their edge is no edge, and a row
    without rim there takes the median of its whole row (`_row_base`: a jacket the frame and a missed
    shoulder cut on both sides is what most of the row shows), not of the window round each pixel (the tie
    and the shirt down the middle)."""
    cut = person[:, 0] | person[:, -1]
    if unsure is not None:
        cut = cut | (person & _within(unsure, 1)).any(1)
    return cut


def _rim_base(image: Tensor, rim: Tensor, xs: Tensor, ys: Tensor, fallback: Tensor, band: int,
              chunk: int = 4096) -> Tensor:
    """Base colour [M, 3] at pixels (xs, ys) [M] from the rim pixels rim [H, W] bool (a band px deep) of +-6
    rows, every other column: on each side the median of the RIM_SAMPLES nearest, of those no more than 2 band
    px beyond the nearest (one edge's, not the far edge's too), the two sides blended by nearness (module
    docstring). fallback [M, 3] where neither side has 3 of them."""
    H, W = rim.shape
    cols = torch.arange(0, W, 2)
    oy = torch.arange(-6, 7, 3)
    out = fallback.clone()
    for s in range(0, len(xs), chunk):
        x, y = xs[s:s + chunk], ys[s:s + chunk]
        m = len(x)
        yy = (y[:, None] + oy[None, :])[..., None].expand(-1, -1, len(cols))         # [m, 5, C]
        py = yy.clamp(0, H - 1).reshape(m, -1)
        px = cols.expand(m, len(oy), -1).reshape(m, -1)                            # [m, 5 C]
        ok = rim[py, px] & ((yy >= 0) & (yy < H)).reshape(m, -1)
        sides = []
        for on in (ok & (px <= x[:, None]), ok & (px > x[:, None])):
            dx = torch.where(on, (px - x[:, None]).abs().float(), torch.tensor(float("inf")))
            d, idx = dx.topk(min(RIM_SAMPLES, dx.shape[1]), largest=False)         # [m, S] the nearest
            found = torch.isfinite(d) & (d <= d[:, :1] + 2 * band)                # this edge's only
            values = torch.where(found[..., None], image[py.gather(1, idx), px.gather(1, idx)],
                                 torch.tensor(float("nan")))
            far = torch.where(found, d, 0.0).sum(1) / found.sum(1).clamp(min=1) + 1.0   # their mean distance
            sides.append((values.nanmedian(1).values, far, found.sum(1) >= 3))
        (left, d_left, ok_left), (right, d_right, ok_right) = sides
        both = (d_right[:, None] * left + d_left[:, None] * right) / (d_left + d_right)[:, None]
        out[s:s + chunk] = torch.where((ok_left & ok_right)[:, None], both,
                                       torch.where(ok_left[:, None], left,
                                                   torch.where(ok_right[:, None], right, out[s:s + chunk])))
    return out


def _row_base(image: Tensor, src: Tensor) -> Tensor:
    """Per photo row, the median colour [H, 3] of the src pixels (every other column: the same columns for
    every pixel of a row, as offsets from each x made a comb of medians) in +-6 rows. A row whose window holds
    fewer than ROW_SOURCE of them, or under ROW_SHARE of what a window across the source's whole width holds,
    takes the nearest row's that holds enough: a handful of pixels is the hair's edge (the pale fringe against
    the neck, an ear's rim, the shadow under the ear), not its colour, and painted a pale band across the nape
    or the skin's colour across the back of a short-haired head. No row holds enough: the source's overall
    median."""
    H, W = src.shape
    overall = image[src].median(0).values
    rows = torch.arange(H)
    oy, cx = torch.meshgrid(torch.arange(-6, 7, 3), torch.arange(0, W, 2), indexing="ij")
    py = rows[:, None] + oy.reshape(1, -1)                                    # [H, S]
    px = cx.reshape(1, -1).expand(H, -1)
    ok = (py >= 0) & (py < H)
    py = py.clamp(0, H - 1)
    ok &= src[py, px]
    values = torch.where(ok[..., None], image[py, px], torch.tensor(float("nan")))    # [H, S, 3]
    med = values.nanmedian(dim=1).values
    cols = src.any(0).nonzero()[:, 0]
    across = oy.shape[0] * (int(cols.max() - cols.min()) // 2 + 1) if cols.numel() else 0    # a full window's samples
    enough = (ok.sum(1) >= max(ROW_SOURCE, math.ceil(ROW_SHARE * across))).nonzero()[:, 0]
    if enough.numel() == 0:
        return overall.expand(H, 3).clone()
    at = torch.searchsorted(enough, rows).clamp(max=len(enough) - 1)         # the next row with enough
    before, after = enough[(at - 1).clamp(min=0)], enough[at]
    nearest = torch.where((rows - before).abs() < (after - rows).abs(), before, after)
    return med[nearest]


def _texture(image: Tensor, src: Tensor, xs: Tensor, ys: Tensor, tile: int, seed: int) -> Tensor:
    """Detail [M, 3] at pixels (xs, ys) [M] borrowed from random places of the src [H, W] region, blended over a
    grid of tile px (module docstring). Busy photo pixels (a badge's rim, printed text) lend nothing."""
    H, W = src.shape
    detail = (image - _local_mean(image, src, tile / 4)) * src[..., None]
    fine = (image - _local_mean(image, src, 1.0)).square().sum(-1, keepdim=True)
    energy = _local_mean(fine, src, 2.0)[..., 0]
    busy = energy > torch.quantile(energy[src], BUSY)
    busy = _local_mean(busy[..., None].float(), torch.ones_like(src), 2.0)[..., 0] > 0    # and 2 px around
    lends = src & ~busy
    where = (lends if int(lends.sum()) >= MIN_SOURCE else src).nonzero()    # [S, 2] (y, x) places to borrow
    ny, nx = H // tile + 2, W // tile + 2
    gen = torch.Generator().manual_seed(seed)
    pick = where[torch.randint(len(where), (ny, nx), generator=gen)]         # [ny, nx, 2] a place per node
    node = torch.stack(torch.meshgrid(torch.arange(ny), torch.arange(nx), indexing="ij"), -1) * tile
    offset = pick - node                                                      # [ny, nx, 2] (dy, dx)
    fy, fx = ys.float() / tile, xs.float() / tile
    j0, i0 = fy.floor().long().clamp(0, ny - 2), fx.floor().long().clamp(0, nx - 2)
    ty, tx = fy - j0, fx - i0
    total = torch.zeros(len(xs), 3)
    weight2 = torch.zeros(len(xs))
    for a, wy in ((0, 1 - ty), (1, ty)):
        for b, wx in ((0, 1 - tx), (1, tx)):
            o = offset[j0 + a, i0 + b]
            sy, sx = ys + o[:, 0], xs + o[:, 1]
            ok = (sy >= 0) & (sy < H) & (sx >= 0) & (sx < W)
            sy, sx = sy.clamp(0, H - 1), sx.clamp(0, W - 1)
            w = wy * wx * (ok & lends[sy, sx])
            total += w[:, None] * detail[sy, sx]
            weight2 += w.square()
    blended = total / weight2.clamp(min=1e-6).sqrt()[:, None] * (weight2 > 1e-6)[:, None]
    # what still stands out (an edge next to a busy place) is soft-limited: texture, not layout
    return DETAIL_LIMIT * torch.tanh(blended / DETAIL_LIMIT)


def inset_colours(image: Tensor, person: Tensor, pixels: Tensor, inward: Tensor, inset: float = 3.0) -> Tensor:
    """The photo's colour [M, 3] of the surface at pixels [M, 2] (x, y) next to an edge (the silhouette, or a
    step in the surface), read `inset` pixels in along inward [M, 2] (unit, image plane) from a copy blurred
    within the mask: the edge pixel itself is half background (a light halo around dark hair), and one pixel's
    colour per row made a wall down the side of a head a stack of stripes. Where the inset point leaves the
    mask the edge pixel's blurred colour stands in."""
    H, W = person.shape
    soft = _local_mean(image, person, 1.5)
    p = pixels.float() + 0.5
    q = (p + inset * inward).floor().long()
    qx, qy = q[:, 0].clamp(0, W - 1), q[:, 1].clamp(0, H - 1)
    px, py = pixels[:, 0].long().clamp(0, W - 1), pixels[:, 1].long().clamp(0, H - 1)
    return torch.where(person[qy, qx][:, None], soft[qy, qx], soft[py, px])


def rim_colours(image: Tensor, person: Tensor, pixels: Tensor, inward: Tensor, t: Tensor, back: Tensor,
                inset: float = 3.0, unsure: Tensor | None = None) -> Tensor:
    """Colours [M, 3] for the discs of the rim walls (engine.avatar.shell.rim_walls) at photo pixels [M, 2]
    (x, y) on the silhouette: a blend from the photo's colour at the front edge (t [M] = 0; `inset_colours`
    along inward [M, 2]) to the back's colour back [M, 3] at the back edge (t = 1). A wall within 2 px of
    unsure [H, W] (what the segmentation took for a person and the silhouette left out) is the back's colour
    all the way: the person goes on there, and the photo's colour at that cut is whatever the cut ran through
    (a tie beside a missed shoulder showed as a red stripe down the side)."""
    front = inset_colours(image, person, pixels, inward, inset)
    if unsure is not None:
        H, W = person.shape
        near = _within(unsure, 2)
        at = near[pixels[:, 1].long().clamp(0, H - 1), pixels[:, 0].long().clamp(0, W - 1)]
        t = torch.where(at, torch.ones_like(t), t)
    t = t.clamp(0, 1)[:, None]
    return ((1 - t) * front + t * back).clamp(0, 1)
