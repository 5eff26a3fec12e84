"""`rasterization()`: the gsplat-compatible entry point, written once over whichever backend renders.

Steps: 1 check inputs, 2 project, 3 colours (SH or given) and the depth channel, 4 bin and sort,
5 composite, 6 expected depth. Every step calls `cuda_ext.ops`, which routes each op to the pure-torch
reference or to the compiled kernel (C++ on CPU tensors, CUDA on GPU tensors).
"""
from __future__ import annotations

import torch
from torch import Tensor

from . import _checks, ops
from .reference import SH_C0

# The tile size when none is given. CUDA: gsplat's 16 (one thread per pixel of a 16 x 16 block). The CPU
# compositor walks a tile's list once for all its pixels, so bigger tiles list each splat fewer times (less
# binning, fewer list entries) for the same per-pixel work: bench/tile_size.py, avatar of the bundled photo,
# 2 threads, images bit-identical: at 512 x 512, 32 px tiles took 0.94 x and 64 px 0.84-0.87 x the time of 16 px
# (forward), 0.85-0.90 x with the backward. They also leave fewer tiles to share out between threads, so the
# largest size that still gives every thread CPU_TILES_PER_THREAD tiles is taken. The pure-torch reference
# composites a whole tile's pixels against its whole list at once (memory and time grow with both): 16.
CUDA_TILE_SIZE = 16
CPU_TILE_SIZES = (64, 32, 16)
CPU_TILES_PER_THREAD = 8


def default_tile_size(device: torch.device, width: int, height: int, n_cameras: int = 1,
                      backend: str | None = None) -> int:
    """The tile size rasterization() uses when given none: CUDA_TILE_SIZE on a GPU or with the reference
    backend; with the CPU kernel the largest of CPU_TILE_SIZES that cuts the images into at least
    CPU_TILES_PER_THREAD tiles per intra-op thread."""
    if device.type != "cpu" or ops._pick(backend) == "reference":
        return CUDA_TILE_SIZE
    want = CPU_TILES_PER_THREAD * torch.get_num_threads()
    for size in CPU_TILE_SIZES:
        if n_cameras * -(-width // size) * -(-height // size) >= want:
            return size
    return CPU_TILE_SIZES[-1]


def rasterization(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
                  viewmats: Tensor, Ks: Tensor, width: int, height: int, near_plane: float = 0.01,
                  far_plane: float = 1e10, eps2d: float = 0.3, sh_degree: int | None = None,
                  backgrounds: Tensor | None = None, render_mode: str = "RGB", tile_size: int | None = None,
                  backend: str | None = None):
    """Render N Gaussians from C cameras; same meaning as gsplat.rasterization for these arguments.

    means [N, 3], quats [N, 4] (wxyz), scales [N, 3] (> 0), opacities [N] (in [0, 1]),
    colors [N, D] | [C, N, D] (or SH coefficients [N, K, 3] | [C, N, K, 3] when sh_degree is set),
    viewmats [C, 4, 4] world->camera, Ks [C, 3, 3], backgrounds [C, D'] for the output channels D'.
    Returns render_colors [C, H, W, D'], render_alphas [C, H, W, 1], meta (projection and binning).
    D' is D for "RGB", 1 for "D"/"ED", D+1 for "RGB+D"/"RGB+ED"; "ED" divides the depth by the alpha.
    Gradients flow to means, quats, scales, opacities, colors (and backgrounds); not to the cameras.
    tile_size None: `default_tile_size` (16 on a GPU as in gsplat, larger with the CPU kernel); the image is the
    same whatever the tile size.
    """
    # 1. inputs: shapes and types here, then every value rule in one op read back with one host sync
    N = _checks.check_gaussians(means, quats, scales, opacities)
    C = _checks.check_cameras(viewmats, Ks, width, height)
    _checks.check_colors(colors, C, N, sh_degree)
    _checks.check_render_mode(render_mode)
    _checks.check_planes(near_plane, far_plane, eps2d)
    if tile_size is None:
        tile_size = default_tile_size(means.device, width, height, C, backend)
    _checks.positive_int("tile_size", tile_size)
    _checks.same_device(means=means, quats=quats, scales=scales, opacities=opacities, colors=colors,
                        viewmats=viewmats, Ks=Ks, backgrounds=backgrounds)
    values = dict(means=means, quats=quats, scales=scales, opacities=opacities, viewmats=viewmats, Ks=Ks,
                  colors=colors if sh_degree is None else colors.new_empty(0))  # SH: checked after evaluation
    _checks.check_values(int(ops.value_flags(**values, backend=backend)), **values)

    # 2. projection
    radii, means2d, depths, conics = ops.fully_fused_projection(
        means, quats, scales, viewmats, Ks, width, height, eps2d, near_plane, far_plane, backend=backend)
    opacities_c = opacities[None].expand(C, N).contiguous()

    # 3. colours per camera [C, N, D], plus depth as an extra channel where asked
    if sh_degree is not None:
        coeffs = colors if colors.dim() == 4 else colors[None].expand(C, *colors.shape)
        if sh_degree == 0:       # the constant band alone: no view directions (the same product the op computes)
            colors = coeffs[..., 0, :] * SH_C0
        else:
            campos = torch.linalg.inv_ex(viewmats).inverse[:, :3, 3]        # [C, 3]; _ex: no error sync
            dirs = means[None] - campos[:, None]                             # [C, N, 3]
            colors = ops.spherical_harmonics(sh_degree, dirs, coeffs, backend=backend)
        _checks.check_sh_colors(colors, sh_degree)
        colors = colors.add_(0.5).clamp_min_(0.0)                         # in place: the SH backward keeps no output
    elif colors.dim() == 2:
        colors = colors[None].expand(C, *colors.shape)
    if render_mode in ("RGB+D", "RGB+ED"):
        colors = torch.cat([colors, depths[..., None]], -1)
    elif render_mode in ("D", "ED"):
        colors = depths[..., None]
    D = colors.shape[-1]
    if backgrounds is not None:
        _checks.tensor("backgrounds", backgrounds, (C, None), finite=True)
        if render_mode in ("D", "ED"):
            backgrounds = torch.zeros(C, 1, dtype=colors.dtype, device=colors.device)
        elif render_mode in ("RGB+D", "RGB+ED"):
            backgrounds = torch.cat([backgrounds, backgrounds.new_zeros(C, 1)], -1)
        if backgrounds.shape[1] != D:
            raise ValueError(f"backgrounds: expected shape [{C}, {D - (render_mode in ('RGB+D', 'RGB+ED'))}] "
                             f"for render_mode={render_mode!r}, got [{C}, {backgrounds.shape[1]}]")

    # 4. binning
    tile_width, tile_height = -(-width // tile_size), -(-height // tile_size)
    tiles_per_gauss, isect_ids, flatten_ids = ops.isect_tiles(
        means2d, radii, depths, tile_size, tile_width, tile_height, backend=backend)
    isect_offsets = ops.isect_offset_encode(isect_ids, C, tile_width, tile_height, backend=backend)

    # 5. compositing
    render_colors, render_alphas = ops.rasterize_to_pixels(
        means2d, conics, colors.contiguous(), opacities_c, width, height, tile_size, isect_offsets,
        flatten_ids, backgrounds, backend=backend)

    # 6. expected depth
    if render_mode in ("ED", "RGB+ED"):
        render_colors = torch.cat(
            [render_colors[..., :-1], render_colors[..., -1:] / render_alphas.clamp(min=1e-10)], -1)

    meta = dict(radii=radii, means2d=means2d, depths=depths, conics=conics, opacities=opacities_c,
                tile_width=tile_width, tile_height=tile_height, tiles_per_gauss=tiles_per_gauss,
                isect_ids=isect_ids, flatten_ids=flatten_ids, isect_offsets=isect_offsets, width=width,
                height=height, tile_size=tile_size, n_cameras=C)
    return render_colors, render_alphas, meta
