"""Pure-torch twins of every splatting op: the oracle the C++ and CUDA kernels are tested against.

Runs on the CPU with no CUDA at all, and gets its gradients from torch autograd, so nothing here has a
hand-written backward. Conventions follow gsplat 1.5 (`gsplat/cuda/_torch_impl.py`, read for the facts):
wxyz quaternions, world->camera `viewmats`, pixel centres at +0.5, a radius of ceil(3.33 sigma) per axis,
and tiles sorted by (camera, tile, depth bits). The compositor uses the 3DGS constants the issue fixes:
alpha = min(0.99, opacity * exp(-power)), splats with alpha < 1/255 are skipped, and a pixel stops before
the splat that would take its transmittance below 1e-4.

Shapes: C cameras, N Gaussians, D colour channels, K SH coefficients, M tile intersections.
"""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import Tensor

ALPHA_MAX = 0.99
ALPHA_MIN = 1.0 / 255.0
T_MIN = 1e-4
# 3.33 sigma is where a splat of opacity 1 falls below 1/255: 0.5 * 3.33^2 = ln(255) (gsplat 1.5 uses it too).
RADIUS_SIGMAS = 3.33

# Real SH basis constants up to degree 3 (the 3DGS / gsplat convention, Sloan 2013).
SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
         -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


# ----------------------------------------------------------------------------------------------- geometry
def quat_to_rotmat(quats: Tensor) -> Tensor:
    """quats: [..., 4] wxyz (need not be unit) -> rotation matrices [..., 3, 3]."""
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    R = torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1)
    return R.reshape(quats.shape[:-1] + (3, 3))


def quat_scale_to_covar(quats: Tensor, scales: Tensor) -> Tensor:
    """quats [..., 4], scales [..., 3] -> world covariances R S S^T R^T [..., 3, 3]."""
    M = quat_to_rotmat(quats) * scales[..., None, :]
    return M @ M.transpose(-1, -2)


def fully_fused_projection(means: Tensor, quats: Tensor, scales: Tensor, viewmats: Tensor, Ks: Tensor,
                           width: int, height: int, eps2d: float = 0.3, near_plane: float = 0.01,
                           far_plane: float = 1e10):
    """EWA projection of 3D Gaussians through pinhole cameras.

    means [N, 3], quats [N, 4], scales [N, 3], viewmats [C, 4, 4] (world->camera), Ks [C, 3, 3]
    -> radii [C, N, 2] int32, means2d [C, N, 2], depths [C, N], conics [C, N, 3] (upper triangle of the
    inverse 2D covariance). Culled Gaussians (outside near/far, degenerate, or off-screen) get radii 0 and
    zeros everywhere else, as gsplat's CUDA kernel leaves them.
    """
    R, t = viewmats[:, None, :3, :3], viewmats[:, None, :3, 3]           # [C, 1, 3, 3], [C, 1, 3]
    means_c = (R @ means[None, :, :, None])[..., 0] + t                  # [C, N, 3]
    covars_c = R @ quat_scale_to_covar(quats, scales)[None] @ R.transpose(-1, -2)  # [C, N, 3, 3]
    tx, ty, tz = means_c.unbind(-1)
    in_depth = (tz > near_plane) & (tz < far_plane)
    tz = torch.where(in_depth, tz, torch.ones_like(tz))                   # keeps culled gradients finite

    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]                         # [C, 1]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    # Clamp the Jacobian's view direction to 1.3x the frustum, as 3DGS and gsplat do.
    txc = tz * torch.clamp(tx / tz, min=-(cx / fx + 0.3 * tan_fovx), max=(width - cx) / fx + 0.3 * tan_fovx)
    tyc = tz * torch.clamp(ty / tz, min=-(cy / fy + 0.3 * tan_fovy), max=(height - cy) / fy + 0.3 * tan_fovy)
    zero = torch.zeros_like(tz)
    J = torch.stack([fx / tz, zero, -fx * txc / tz ** 2, zero, fy / tz, -fy * tyc / tz ** 2], -1)
    J = J.reshape(tz.shape + (2, 3))                                      # [C, N, 2, 3]
    cov2d = J @ covars_c @ J.transpose(-1, -2) + eps2d * torch.eye(2, dtype=means.dtype, device=means.device)
    a, b, c = cov2d[..., 0, 0], 0.5 * (cov2d[..., 0, 1] + cov2d[..., 1, 0]), cov2d[..., 1, 1]
    det = a * c - b * b
    valid = in_depth & (det > 0)
    det = det.clamp(min=1e-10)
    conics = torch.stack([c / det, -b / det, a / det], -1)
    means2d = torch.stack([fx * tx / tz + cx, fy * ty / tz + cy], -1)

    radius = torch.ceil(RADIUS_SIGMAS * torch.sqrt(torch.stack([a, c], -1).clamp(min=0)))
    inside = ((means2d[..., 0] + radius[..., 0] > 0) & (means2d[..., 0] - radius[..., 0] < width)
              & (means2d[..., 1] + radius[..., 1] > 0) & (means2d[..., 1] - radius[..., 1] < height))
    keep = valid & inside
    radii = torch.where(keep[..., None], radius, torch.zeros_like(radius)).to(torch.int32)
    keep_f = keep.to(means.dtype)
    return (radii, means2d * keep_f[..., None], means_c[..., 2] * keep_f, conics * keep_f[..., None])


# ---------------------------------------------------------------------------------------------- colour
def sh_bases(degree: int, dirs: Tensor) -> Tensor:
    """Real SH basis values at unit directions dirs [..., 3] -> [..., (degree+1)^2]."""
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [SH_C2[0] * x * y, SH_C2[1] * y * z, SH_C2[2] * (2 * zz - xx - yy), SH_C2[3] * x * z,
                SH_C2[4] * (xx - yy)]
    if degree >= 3:
        out += [SH_C3[0] * y * (3 * xx - yy), SH_C3[1] * x * y * z, SH_C3[2] * y * (4 * zz - xx - yy),
                SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy), SH_C3[4] * x * (4 * zz - xx - yy),
                SH_C3[5] * z * (xx - yy), SH_C3[6] * x * (xx - 3 * yy)]
    return torch.stack(out, -1)


def spherical_harmonics(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """Evaluate SH colours: dirs [..., 3] (any length), coeffs [..., K, 3] with K >= (degree+1)^2 -> [..., 3]."""
    nb = (degree + 1) ** 2
    bases = sh_bases(degree, F.normalize(dirs, dim=-1))                   # [..., nb]
    return (bases[..., None] * coeffs[..., :nb, :]).sum(-2)


# --------------------------------------------------------------------------------------------- binning
@torch.no_grad()
def isect_tiles(means2d: Tensor, radii: Tensor, depths: Tensor, tile_size: int, tile_width: int,
                tile_height: int):
    """Which tiles each splat touches, sorted by (camera, tile, depth).

    means2d [C, N, 2], radii [C, N, 2] int, depths [C, N] -> tiles_per_gauss [C, N] int32,
    isect_ids [M] int64 = camera << (tile_bits + 32) | tile << 32 | float bits of depth, and
    flatten_ids [M] int32 = c * N + n. Ties in depth keep the Gaussian order (stable sort).
    """
    C, N = depths.shape
    tmin = torch.floor(means2d / tile_size - radii / tile_size).long()
    tmax = torch.ceil(means2d / tile_size + radii / tile_size).long()
    dev = means2d.device
    lim = torch.tensor([tile_width, tile_height], device=dev)
    tmin = torch.minimum(tmin.clamp(min=0), lim)
    tmax = torch.minimum(tmax.clamp(min=0), lim)
    span = (tmax - tmin) * (radii > 0).all(-1, keepdim=True)               # [C, N, 2]
    count = span[..., 0] * span[..., 1]                                   # [C, N]

    owner = torch.repeat_interleave(torch.arange(C * N, device=dev), count.flatten())  # [M] flat Gaussian index
    first = torch.cumsum(count.flatten(), 0) - count.flatten()
    local = torch.arange(owner.numel(), device=dev) - first[owner]                    # position inside the owner's box
    sx = span.reshape(-1, 2)[owner, 0]
    tx = tmin.reshape(-1, 2)[owner, 0] + local % sx.clamp(min=1)
    ty = tmin.reshape(-1, 2)[owner, 1] + local // sx.clamp(min=1)
    cam = owner // N
    tile_bits = (tile_width * tile_height).bit_length()
    depth_bits = depths.float().contiguous().view(torch.int32).flatten()[owner].long() & 0xFFFFFFFF
    isect_ids = (cam << (tile_bits + 32)) | ((ty * tile_width + tx) << 32) | depth_bits
    isect_ids, order = torch.sort(isect_ids, stable=True)
    return count.to(torch.int32), isect_ids, owner[order].to(torch.int32)


@torch.no_grad()
def isect_offset_encode(isect_ids: Tensor, n_cameras: int, tile_width: int, tile_height: int) -> Tensor:
    """Sorted isect_ids [M] -> offsets [C, tile_height, tile_width] int32: where each tile's list starts."""
    n_tiles = n_cameras * tile_width * tile_height
    tile_bits = (tile_width * tile_height).bit_length()
    key = isect_ids >> 32
    flat = (key >> tile_bits) * (tile_width * tile_height) + (key & ((1 << tile_bits) - 1))
    counts = torch.bincount(flat, minlength=n_tiles)
    offsets = torch.cumsum(counts, 0) - counts
    return offsets.reshape(n_cameras, tile_height, tile_width).to(torch.int32)


# ------------------------------------------------------------------------------------------ compositing
def rasterize_to_pixels(means2d: Tensor, conics: Tensor, colors: Tensor, opacities: Tensor, width: int,
                        height: int, tile_size: int, isect_offsets: Tensor, flatten_ids: Tensor,
                        backgrounds: Tensor | None = None, max_elements: int = 1 << 24):
    """Front-to-back alpha compositing per tile, differentiable by autograd.

    means2d [C, N, 2], conics [C, N, 3], colors [C, N, D], opacities [C, N], isect_offsets [C, th, tw],
    flatten_ids [M], backgrounds [C, D] -> render_colors [C, H, W, D], render_alphas [C, H, W, 1].
    Tiles are processed in chunks holding at most `max_elements` (pixel, splat) pairs.
    """
    C, N, D = colors.shape
    th, tw = isect_offsets.shape[-2:]
    P = tile_size * tile_size
    n_tiles = C * th * tw
    starts = isect_offsets.flatten().long()
    dev = means2d.device
    ends = torch.cat([starts[1:], torch.tensor([flatten_ids.numel()], device=dev)])
    lengths = ends - starts                                               # [n_tiles]
    lens = lengths.tolist()                                               # chunk planning on the host

    flat_m, flat_c = means2d.reshape(-1, 2), conics.reshape(-1, 3)
    flat_o, flat_col = opacities.reshape(-1), colors.reshape(-1, D)
    py, px = torch.meshgrid(torch.arange(tile_size, device=dev), torch.arange(tile_size, device=dev), indexing="ij")
    local = torch.stack([px.flatten(), py.flatten()], -1)                 # [P, 2] (x, y) in the tile

    if flatten_ids.numel() == 0:                                           # nothing visible anywhere
        img = colors.new_zeros(C, height, width, D)
        alp = colors.new_zeros(C, height, width, 1)
        return (img + backgrounds[:, None, None, :] if backgrounds is not None else img), alp
    ids_all = flatten_ids.long()
    tile_colors, tile_alphas = [], []
    t0 = 0
    while t0 < n_tiles:
        t1, L = t0 + 1, max(1, lens[t0])                                  # grow the chunk [t0, t1)
        while t1 < n_tiles and (t1 - t0 + 1) * P * max(L, lens[t1]) <= max_elements:
            L = max(L, lens[t1])
            t1 += 1
        tiles = torch.arange(t0, t1, device=dev)
        slot = torch.arange(L, device=dev)
        pad = slot[None] >= lengths[tiles, None]                           # [nt, L]
        ids = ids_all[(starts[tiles, None] + slot[None]).clamp(max=ids_all.numel() - 1)]
        ids = torch.where(pad, torch.zeros_like(ids), ids)                # [nt, L] flat Gaussian index
        tyx = tiles % (th * tw)
        origin = torch.stack([tyx % tw, tyx // tw], -1) * tile_size       # [nt, 2]
        pix = (origin[:, None] + local[None]).to(means2d.dtype) + 0.5     # [nt, P, 2]
        d = flat_m[ids][:, None] - pix[:, :, None]                        # [nt, P, L, 2]
        cn = flat_c[ids][:, None]                                         # [nt, 1, L, 3]
        power = 0.5 * (cn[..., 0] * d[..., 0] ** 2 + cn[..., 2] * d[..., 1] ** 2) + cn[..., 1] * d[..., 0] * d[..., 1]
        alpha = torch.clamp_max(flat_o[ids][:, None] * torch.exp(-power), ALPHA_MAX)
        skip = (power < 0) | (alpha < ALPHA_MIN) | pad[:, None]
        alpha = torch.where(skip, torch.zeros_like(alpha), alpha)         # [nt, P, L]
        # A pixel blends splats while its transmittance after the splat stays >= T_MIN; T is monotone, so
        # the blended set is a prefix of the depth order.
        keep = torch.cumprod(1 - alpha, -1) >= T_MIN
        alpha = alpha * keep
        trans = torch.cumprod(1 - alpha, -1)                              # transmittance after each splat
        before = torch.cat([torch.ones_like(trans[..., :1]), trans[..., :-1]], -1)
        weights = alpha * before
        tile_colors.append((weights[..., None] * flat_col[ids][:, None]).sum(-2))  # [nt, P, D]
        tile_alphas.append(1 - trans[..., -1:])                            # [nt, P, 1]
        t0 = t1

    img = torch.cat(tile_colors).reshape(C, th, tw, tile_size, tile_size, D)
    alp = torch.cat(tile_alphas).reshape(C, th, tw, tile_size, tile_size, 1)
    img = img.permute(0, 1, 3, 2, 4, 5).reshape(C, th * tile_size, tw * tile_size, D)[:, :height, :width]
    alp = alp.permute(0, 1, 3, 2, 4, 5).reshape(C, th * tile_size, tw * tile_size, 1)[:, :height, :width]
    if backgrounds is not None:
        img = img + (1 - alp) * backgrounds[:, None, None, :]
    return img, alp


# ---------------------------------------------------------------------------------------- input checks
VALUE_SEGMENTS = ("means", "quats", "scales", "opacities", "viewmats", "Ks", "colors")
# Bits of the value_flags mask after the 7 "NaN/inf in this tensor" bits (csrc/value_rules.h).
RULE_SCALES_NOT_POSITIVE, RULE_ZERO_QUATERNION, RULE_OPACITY_OUT_OF_RANGE, RULE_FOCAL_NOT_POSITIVE = 7, 8, 9, 10


@torch.no_grad()
def value_flags(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, viewmats: Tensor, Ks: Tensor,
                colors: Tensor) -> Tensor:
    """The value rules of rasterization()'s inputs -> mask [1] int32, bit set where a rule fails.

    Bits 0..6: a NaN/inf in means [N, 3], quats [N, 4], scales [N, 3], opacities [N], viewmats [C, 4, 4],
    Ks [C, 3, 3], colors [*] (any shape; may be empty). Then: a scale <= 0, a zero quaternion, an opacity
    outside [0, 1], an fx or fy <= 0.
    """
    tensors = (means, quats, scales, opacities, viewmats, Ks, colors)
    failed = [~torch.isfinite(t).all() for t in tensors]
    failed += [(scales <= 0).any(), (quats == 0).all(-1).any(), ((opacities < 0) | (opacities > 1)).any(),
               ((Ks[:, 0, 0] <= 0) | (Ks[:, 1, 1] <= 0)).any()]
    weights = torch.tensor([1 << b for b in range(len(failed))], dtype=torch.int32, device=means.device)
    return (torch.stack(failed).to(torch.int32) * weights).sum().reshape(1).to(torch.int32)
