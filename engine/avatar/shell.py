"""Initial Gaussians for a photographed person: a front and a back shell over the silhouette.

The front shell has a Gaussian on every pixel where `fine` is set and on every `stride`-th pixel elsewhere
(dense face and hands, sparse body). The back shell is sparser (back_fine_stride, back_stride): it only carries a
blur, and fewer Gaussians render faster. They are placed through the photo camera (world = camera frame:
viewmat identity, +z forward) at depth z0 - front and z0 + back, where front and back are surface depths in
pixels (engine.avatar.depth), converted to world units at z0. Front colours come from the photo; the back takes a
heavily blurred copy (a plausible fill for the unseen side). The photometric fit in personalize refines the
front shell.

Each Gaussian is a surfel: a flat disc lying in the surface (its thin axis along the surface normal, from
engine.avatar.depth.surface_normals), stretched along the surface's slope by 1 / cos(tilt) (at most
max_stretch) so that the patch of surface one pixel sample stands for is covered from every side. Discs that
all faced the photo camera were thin edge-on lines from the side: the stacked rings and see-through stripes
of a relief card.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.avatar.depth import surface_normals
from engine.render.camera import unproject
from engine.render.gaussians import Gaussians, rgb_to_sh_dc
from engine.render.splat import FACING_COS_MIN

HALO_SEEN = 60.0   # degrees round to its own side that an orbiting camera still draws the halo ring (halo_normals)


@dataclass
class ShellConfig:
    z0: float = 2.5            # distance of the person from the camera (world units)
    thickness: float = 0.6     # body relief scale: 1 makes a disc silhouette a sphere (engine.avatar.depth)
    head_roundness: float = 0.9  # head depth as a share of a ball of the head's width (engine.avatar.depth)
    stride: int = 2            # front body sampling step in pixels (face and hands: every pixel)
    back_stride: int = 4       # the hidden back shell is a blur: sparser (body) ...
    back_fine_stride: int = 4  # ... and (face, hands): as sparse, so the back of the head is even
    footprint: float = 0.6     # Gaussian sigma as a fraction of the sample spacing
    opacity: float = 0.95
    back_blur: float = 12.0    # blur (pixels) of the photo colours used for the back shell
    max_stretch: float = 3.0   # a surfel's largest stretch along a steep slope (1 / cos(tilt), clamped); 4 feathered
                               # the rim of a small figure into streaks an orbit sees through (messi5: 1.2% -> 0.8%)


def _blur(image: Tensor, mask: Tensor, sigma: float) -> Tensor:
    """Normalised Gaussian blur of image [H, W, 3] restricted to mask [H, W] (colours do not bleed in)."""
    r = int(3 * sigma)
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    def sep(t):  # t [C, H, W]
        t = F.conv2d(F.pad(t[:, None], (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
        return F.conv2d(F.pad(t, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))[:, 0]
    m = mask.float()[None]
    num = sep(image.permute(2, 0, 1) * m)
    den = sep(m).clamp(min=1e-6)
    return (num / den).permute(1, 2, 0)


def quats_from_frames(R: Tensor) -> Tensor:
    """Unit wxyz quaternions [M, 4] of rotation matrices R [M, 3, 3] (columns = the local axes in world):
    Shepperd's method, choosing per row the largest of w, x, y, z to divide by."""
    m = R.double()
    tr = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    cand = torch.stack([tr, m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]], 1)
    big = cand.argmax(1)
    q = torch.zeros(len(m), 4, dtype=torch.float64)
    r = torch.sqrt((1.0 + 2.0 * cand.gather(1, big[:, None])[:, 0] - tr).clamp(min=1e-12))   # 4 * |component| / 2
    s = 0.5 / r
    w_, x_, y_, z_ = (big == 0), (big == 1), (big == 2), (big == 3)
    q[w_] = torch.stack([0.5 * r, (m[:, 2, 1] - m[:, 1, 2]) * s, (m[:, 0, 2] - m[:, 2, 0]) * s,
                         (m[:, 1, 0] - m[:, 0, 1]) * s], 1)[w_]
    q[x_] = torch.stack([(m[:, 2, 1] - m[:, 1, 2]) * s, 0.5 * r, (m[:, 0, 1] + m[:, 1, 0]) * s,
                         (m[:, 0, 2] + m[:, 2, 0]) * s], 1)[x_]
    q[y_] = torch.stack([(m[:, 0, 2] - m[:, 2, 0]) * s, (m[:, 0, 1] + m[:, 1, 0]) * s, 0.5 * r,
                         (m[:, 1, 2] + m[:, 2, 1]) * s], 1)[y_]
    q[z_] = torch.stack([(m[:, 1, 0] - m[:, 0, 1]) * s, (m[:, 0, 2] + m[:, 2, 0]) * s,
                         (m[:, 1, 2] + m[:, 2, 1]) * s, 0.5 * r], 1)[z_]
    q = torch.where(q[:, :1] < 0, -q, q)
    return (q / q.norm(dim=1, keepdim=True)).float()


def surfel_frames(normals: Tensor, max_stretch: float) -> tuple[Tensor, Tensor]:
    """Orientation and in-plane stretch of surfels with unit normals [M, 3] (photo camera axes, the camera
    looks along +z). Local x runs along the steepest slope (the image-plane direction the normal leans to),
    local z along the normal. -> (quats [M, 4] wxyz, stretch [M] = min(1 / |n_z|, max_stretch) along local x)."""
    n = normals / normals.norm(dim=1, keepdim=True).clamp(min=1e-12)
    lean = torch.cat([n[:, :2], torch.zeros_like(n[:, :1])], 1)
    flat = lean.norm(dim=1, keepdim=True) < 1e-6                          # facing the camera: any in-plane axis
    lean = torch.where(flat, torch.tensor([[1.0, 0.0, 0.0]]), lean)
    t1 = lean - (lean * n).sum(1, keepdim=True) * n
    t1 = t1 / t1.norm(dim=1, keepdim=True).clamp(min=1e-12)
    t2 = torch.linalg.cross(n, t1)
    quats = quats_from_frames(torch.stack([t1, t2, n], 2))
    stretch = (1.0 / n[:, 2].abs().clamp(min=1e-6)).clamp(max=max_stretch)
    return quats, stretch


def _samples(mask: Tensor, fine: Tensor, fine_step: int, coarse_step: int) -> tuple[Tensor, Tensor, Tensor]:
    """Pixels to place Gaussians on: every fine_step-th pixel in `fine`, every coarse_step-th elsewhere in
    `mask` (both [H, W] bool). -> ys [M], xs [M], the sample spacing [M] (pixels)."""
    H, W = mask.shape
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    on = lambda step: (yy % step == 0) & (xx % step == 0)             # noqa: E731
    keep = mask & ((fine & on(fine_step)) | (~fine & on(coarse_step)))
    ys, xs = yy[keep], xx[keep]
    if ys.numel() == 0:
        raise ValueError("mask: no pixel to place Gaussians on")
    spacing = torch.where(fine[ys, xs], float(fine_step), float(coarse_step))
    return ys, xs, spacing


def build_shells(image: Tensor, mask: Tensor, depth: tuple[Tensor, Tensor], K: Tensor,
                 fine: Tensor | None = None, cfg: ShellConfig = ShellConfig()) -> tuple[Gaussians, Tensor, Tensor]:
    """image [H, W, 3] in [0, 1], mask [H, W] bool, depth = (front [H, W], back [H, W]) in pixels,
    K [3, 3] the photo's intrinsics, fine [H, W] bool (pixels sampled densely).
    -> (Gaussians [N], pixel [N, 2] (x, y) each came from, is_front [N] bool; the front shell comes first)."""
    H, W = mask.shape
    front, back = depth
    if image.shape != (H, W, 3) or front.shape != (H, W) or back.shape != (H, W):
        raise ValueError(f"image/depth: expected [{H}, {W}, 3] and two [{H}, {W}], got {list(image.shape)}, "
                         f"{list(front.shape)}, {list(back.shape)}")
    fine = torch.zeros_like(mask) if fine is None else fine
    fx = float(K[0, 0])
    world_per_px = cfg.z0 / fx
    blurred = _blur(image, mask, cfg.back_blur)
    normal_maps = [surface_normals(d, K, cfg.z0, side) for d, side in ((front, -1.0), (back, 1.0))]
    shells = []
    for side, (fine_step, coarse_step) in enumerate(((1, cfg.stride), (cfg.back_fine_stride, cfg.back_stride))):
        ys, xs, spacing = _samples(mask, fine, fine_step, coarse_step)
        dz, colors = (-front[ys, xs], image[ys, xs]) if side == 0 else (back[ys, xs], blurred[ys, xs])
        z = cfg.z0 + dz * world_per_px
        means = unproject(xs + 0.5, ys + 0.5, z, K)
        sigma = cfg.footprint * spacing * z / fx
        quats, stretch = surfel_frames(normal_maps[side][ys, xs], cfg.max_stretch)
        scales = torch.stack([sigma * stretch, sigma, 0.3 * sigma], -1)
        shells.append((means, quats, scales, colors, torch.stack([xs, ys], -1), torch.full((len(xs),), side == 0)))
    means, quats, scales, colors, pixel, is_front = (torch.cat(parts) for parts in zip(*shells))
    n = means.shape[0]
    sh = rgb_to_sh_dc(colors)[:, None, :].contiguous()
    g = Gaussians(means.float(), quats, scales.float(), torch.full((n,), cfg.opacity), sh.float())
    return g, pixel, is_front


def disc_columns(u: Tensor, v: Tensor, lo: Tensor, hi: Tensor, n2: Tensor, K: Tensor, cfg: ShellConfig,
                 step: int, across: float | None = None) -> tuple[Gaussians, Tensor]:
    """Columns of flat grey discs standing in the view direction: column i at pixel (u, v) [M] (continuous), from
    depth lo to hi [M] (pixels behind z0, either order), discs at most `step` pixels apart, each facing n2 [M, 2]
    (an image-plane direction, unit), sized for that spacing along the column and for columns `across` pixels
    apart (default: step) across it. -> (Gaussians [sum of counts], pick: the column each disc belongs to)."""
    fx = float(K[0, 0])
    count = ((hi - lo).abs() / step).ceil().clamp(min=1).long()
    pick = torch.repeat_interleave(torch.arange(len(u)), count)
    first = torch.cumsum(count, 0) - count
    k = torch.arange(int(count.sum())) - first[pick]
    dz = lo[pick] + (k.float() + 0.5) * (hi - lo)[pick] / count[pick]
    N = torch.cat([n2[pick], torch.zeros(len(pick), 1)], 1)
    z = cfg.z0 + dz * cfg.z0 / fx
    means = unproject(u[pick], v[pick], z, K)
    t1 = torch.tensor([0.0, 0.0, 1.0]).expand(len(pick), 3)
    quats = quats_from_frames(torch.stack([t1, torch.linalg.cross(N, t1), N], 2))
    across = float(step) if across is None else float(across)
    spacing = ((hi - lo).abs() / count)[pick].clamp(min=across)           # <= step; a short column: across
    sigma = cfg.footprint * spacing * z / fx                               # along the column (the depth)
    side = cfg.footprint * across * z / fx                                 # across it
    n = len(pick)
    g = Gaussians(means.float(), quats, torch.stack([sigma, side, 0.3 * side], -1).float(),
                  torch.full((n,), cfg.opacity), rgb_to_sh_dc(torch.full((n, 3), 0.5))[:, None, :].float())
    return g, pick


def outward(mask: Tensor) -> Tensor:
    """The silhouette's outward unit normal in the image plane [H, W, 2] (x, y) at every pixel of mask [H, W]:
    down the gradient of the mask blurred at sigma 2, the photo's frame counting as outside (zero where the
    blur is flat)."""
    H, W = mask.shape
    m = mask.float()
    soft = _blur(m[..., None].expand(H, W, 3), torch.ones(H, W, dtype=torch.bool), 2.0)[..., 0]
    soft = F.pad(soft[None, None], (1, 1, 1, 1), value=0.0)[0, 0]                       # the frame's edge: outside
    gy, gx = torch.gradient(soft)
    n2 = -torch.stack([gx[1:-1, 1:-1], gy[1:-1, 1:-1]], -1)
    return n2 / n2.norm(dim=-1, keepdim=True).clamp(min=1e-9)


def rim_walls(mask: Tensor, depth: tuple[Tensor, Tensor], K: Tensor, cfg: ShellConfig = ShellConfig(),
              step: int = 3) -> tuple[Gaussians, Tensor, Tensor]:
    """The side wall of the person: where the front and back shells meet at the silhouette, and where the
    person runs off the photo's edge (a half-body portrait's bottom row: an open cut an orbiting camera looks
    straight into). Seen from the side, that rim is the whole view, and two shells meeting edge-on leave a seam.
    On every other pixel of the mask's outermost ring (frame edges included), a column of flat discs from the
    front surface to the back one, facing outward (the mask's 2-D outward normal; out of the frame at its
    edges), sized for columns `step` pixels apart and stretched along the depth, where they stand up to 2 x step
    apart: a wall's colour changes slowly from front to back, and it held a third of a tight selfie's Gaussians.
    mask [H, W] bool, depth = (front, back) [H, W] pixels.
    -> (Gaussians [M] (grey: the caller paints them), pixel [M, 2] (x, y), outward normals [M, 3])."""
    H, W = mask.shape
    front, back = depth
    m = mask.float()[None, None]
    inner = F.max_pool2d(F.pad(1 - m, (1, 1, 1, 1), value=1.0), 3, 1)[0, 0] < 0.5     # beyond the frame: outside
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    ring = mask & ~inner & ((yy + xx) % 2 == 0)
    ys, xs = torch.nonzero(ring, as_tuple=True)
    n2 = outward(mask)[ys, xs]
    g, pick = disc_columns(xs.float() + 0.5, ys.float() + 0.5, -front[ys, xs], back[ys, xs], n2, K, cfg, 2 * step,
                           across=step)
    return g, torch.stack([xs[pick], ys[pick]], -1).long(), torch.cat([n2[pick], torch.zeros(len(pick), 1)], 1)


def crack_walls(mask: Tensor, depth: Tensor, side: float, K: Tensor, cfg: ShellConfig = ShellConfig(),
                min_jump: float = 3.0, step: int = 3, within: Tensor | None = None) -> tuple[Gaussians, Tensor, Tensor]:
    """Walls over the cracks inside one shell: where the surface depth [H, W] (pixels; side -1 the front shell at
    z0 - depth, +1 the back at z0 + depth) drops by more than min_jump pixels from a pixel p of the mask to its
    neighbour q (a face standing out of the hair, a body part in front of another), the two shells' surfels meet
    nowhere and a camera from that side looks through the step. A column of flat discs, step pixels apart,
    spans it on the p/q edge, facing q's way, from every other such p off the mask's outermost ring (the rim
    walls close that ring; q may lie on it). No wall between two pixels of `within` [H, W] (the face:
    its dense surfels cover its own steps, and a wall there would not open with the lips or shut with the lids).
    -> (Gaussians [M] (grey: the caller paints them), pixel p [M, 2] (x, y), normals [M, 3])."""
    H, W = mask.shape
    # the rim walls already close the mask's outermost ring (but not the step from the next ring onto it, steep
    # at a round rim: a slit down the side of a head); like them, every other pixel
    inner = -F.max_pool2d(-F.pad(mask.float(), (1, 1, 1, 1), value=0.0)[None, None], 3, 1)[0, 0] > 0.5
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    source = inner & ((yy + xx) % 2 == 0)
    parts = []
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        ys, xs = torch.nonzero(source, as_tuple=True)
        qy, qx = ys + dy, xs + dx
        ok = (qy >= 0) & (qy < H) & (qx >= 0) & (qx < W)
        ys, xs, qy, qx = ys[ok], xs[ok], qy[ok], qx[ok]
        ok = mask[qy, qx] & (depth[ys, xs] - depth[qy, qx] > min_jump)
        if within is not None:
            ok &= ~(within[ys, xs] & within[qy, qx])
        ys, xs, qy, qx = ys[ok], xs[ok], qy[ok], qx[ok]
        if len(ys):
            parts.append((ys, xs, depth[ys, xs], depth[qy, qx], torch.tensor([float(dx), float(dy)]).expand(len(ys), 2)))
    if not parts:                                                          # no crack: an empty wall
        none = torch.zeros(0, dtype=torch.long)
        parts = [(none, none, torch.zeros(0), torch.zeros(0), torch.zeros(0, 2))]
    ys, xs, d_p, d_q, n2 = (torch.cat(t) for t in zip(*parts))
    # on the edge between p and q, from p's surface to q's
    g, pick = disc_columns(xs.float() + 0.5 + 0.5 * n2[:, 0], ys.float() + 0.5 + 0.5 * n2[:, 1], side * d_p,
                           side * d_q, n2, K, cfg, step)
    return g, torch.stack([xs[pick], ys[pick]], -1).long(), torch.cat([n2[pick], torch.zeros(len(pick), 1)], 1)


def erode(mask: Tensor, r: int) -> Tensor:
    """[H, W] bool: the pixels of mask [H, W] whose (2r+1) x (2r+1) square lies in the mask; the photo's frame
    counts as inside (a body cut by the frame is not eaten from there)."""
    return F.max_pool2d((~mask).float()[None, None], 2 * r + 1, 1, r)[0, 0] < 0.5


def edge_ring(mask: Tensor, width: int = 2) -> Tensor:
    """[H, W] bool: the pixels of mask [H, W] within `width` pixels of its edge (8-neighbour steps; the photo's
    frame counts as inside, so a body cut by the frame has no ring there)."""
    return mask & ~erode(mask, width)


def halo_normals(out: Tensor) -> Tensor:
    """Culling normals [M, 3] for the halo ring's surfels (face_the_camera) whose silhouette faces out [M, 2]
    (`outward`): toward the photo camera (-z), leaning away from the surfel's own side so far that the facing
    test (engine.render.splat.facing, the browser's the same) drops it once an orbiting camera comes more than
    HALO_SEEN degrees round to that side. Past that the ring would lie across the side of the head, edge-on: the
    rasteriser's dilation keeps an edge-on splat a pixel wide, so the ring's pale colour drew a line there. The
    rim walls and the shells cover that side; from the front and from the far side nothing changes."""
    lean = math.acos(FACING_COS_MIN) - math.radians(HALO_SEEN)
    n = torch.cat([-out * math.sin(lean), torch.full((len(out), 1), -math.cos(lean))], 1)
    return n / n.norm(dim=1, keepdim=True)


def face_the_camera(g: Gaussians, pixel: Tensor, which: Tensor, mask: Tensor, width: int = 2) -> Tensor:
    """Turns the surfels `which` [N] bool whose pixel [N, 2] (x, y) lies in the mask's edge ring (edge_ring) to
    face the photo camera, unstretched (in place on g). -> [N] bool: the ones turned.

    A photo's outermost ring of person pixels is part background (a light halo around dark hair), and the fit
    to the photo keeps that colour there. Lying in the surface, which is edge-on to the photo at the rim, those
    surfels face sideways: an orbiting camera sees them face-on, a pale line down the side of the head. Facing
    the photo camera they cover the same pixels from the front and turn edge-on from the side, where the rim
    walls show their own colour; edge-on they still draw a thin line, so past HALO_SEEN the facing test drops
    them (`halo_normals`)."""
    H, W = mask.shape
    ring = edge_ring(mask, width)
    turn = which & ring[pixel[:, 1].clamp(0, H - 1), pixel[:, 0].clamp(0, W - 1)]
    g.quats[turn] = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=g.quats.dtype)
    s = g.scales[turn]
    g.scales[turn] = torch.stack([s[:, 1], s[:, 1], s[:, 2]], -1)      # (sigma x stretch, sigma, thin) -> no stretch
    return turn
