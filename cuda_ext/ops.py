"""The splatting ops, each routed to the pure-torch reference or to the compiled kernel.

Layers per op: this public function -> an autograd.Function below -> the binding in csrc/bindings.cpp
(C++ for CPU tensors, CUDA for GPU tensors) -> its twin in `reference.py`. `backend` picks the path:
"kernel" (default) or "reference"; AUDIOAVATAR_SPLAT_BACKEND sets the default for a whole process.
These functions assume checked inputs; `rasterization()` in rendering.py does the checking.
"""
from __future__ import annotations

import os

import torch
from torch import Tensor

from . import reference
from ._backend import load

BACKENDS = ("kernel", "reference")


def _pick(backend: str | None) -> str:
    b = backend or os.environ.get("AUDIOAVATAR_SPLAT_BACKEND", "kernel")
    if b not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {b!r}")
    return b


# ------------------------------------------------------------------------------------------ projection
class _Projection(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, quats, scales, viewmats, Ks, width, height, eps2d, near_plane, far_plane):
        radii, means2d, depths, conics = load().projection_fwd(
            means, quats, scales, viewmats, Ks, width, height, eps2d, near_plane, far_plane)
        ctx.save_for_backward(means, quats, scales, viewmats, Ks, radii, conics)
        ctx.cfg = (width, height, eps2d)
        ctx.mark_non_differentiable(radii)
        return radii, means2d, depths, conics

    @staticmethod
    def backward(ctx, _v_radii, v_means2d, v_depths, v_conics):
        means, quats, scales, viewmats, Ks, radii, conics = ctx.saved_tensors
        v_means, v_quats, v_scales = load().projection_bwd(
            means, quats, scales, viewmats, Ks, *ctx.cfg, radii, conics,
            v_means2d.contiguous(), v_depths.contiguous(), v_conics.contiguous())
        return v_means, v_quats, v_scales, None, None, None, None, None, None, None


def fully_fused_projection(means: Tensor, quats: Tensor, scales: Tensor, viewmats: Tensor, Ks: Tensor,
                           width: int, height: int, eps2d: float = 0.3, near_plane: float = 0.01,
                           far_plane: float = 1e10, backend: str | None = None):
    """means [N, 3], quats [N, 4], scales [N, 3], viewmats [C, 4, 4], Ks [C, 3, 3] ->
    radii [C, N, 2] int32, means2d [C, N, 2], depths [C, N], conics [C, N, 3]."""
    if _pick(backend) == "reference":
        return reference.fully_fused_projection(means, quats, scales, viewmats, Ks, width, height, eps2d,
                                                near_plane, far_plane)
    return _Projection.apply(means.contiguous(), quats.contiguous(), scales.contiguous(),
                             viewmats.contiguous(), Ks.contiguous(), width, height, float(eps2d),
                             float(near_plane), float(far_plane))


# ------------------------------------------------------------------------------------------------- SH
class _SphericalHarmonics(torch.autograd.Function):
    @staticmethod
    def forward(ctx, degree, dirs, coeffs):
        ctx.degree = degree
        ctx.save_for_backward(dirs, coeffs)
        return load().sh_fwd(degree, dirs, coeffs)

    @staticmethod
    def backward(ctx, v_colors):
        dirs, coeffs = ctx.saved_tensors
        v_dirs, v_coeffs = load().sh_bwd(ctx.degree, dirs, coeffs, v_colors.contiguous())
        return None, v_dirs, v_coeffs


def spherical_harmonics(degree: int, dirs: Tensor, coeffs: Tensor, backend: str | None = None) -> Tensor:
    """dirs [..., 3] (any length), coeffs [..., K, 3], K >= (degree+1)^2 -> colours [..., 3] (no +0.5)."""
    if _pick(backend) == "reference":
        return reference.spherical_harmonics(degree, dirs, coeffs)
    batch = dirs.shape[:-1]
    out = _SphericalHarmonics.apply(degree, dirs.reshape(-1, 3).contiguous(),
                                    coeffs.reshape(-1, *coeffs.shape[-2:]).contiguous())
    return out.reshape(*batch, 3)


# -------------------------------------------------------------------------------------------- binning
def isect_tiles(means2d: Tensor, radii: Tensor, depths: Tensor, tile_size: int, tile_width: int,
                tile_height: int, backend: str | None = None):
    """-> tiles_per_gauss [C, N] int32, isect_ids [M] int64, flatten_ids [M] int32 (camera, tile, depth order)."""
    if _pick(backend) == "reference":
        return reference.isect_tiles(means2d, radii, depths, tile_size, tile_width, tile_height)
    return load().isect_tiles(means2d.detach().contiguous(), radii.contiguous(), depths.detach().contiguous(),
                              tile_size, tile_width, tile_height)


def isect_offset_encode(isect_ids: Tensor, n_cameras: int, tile_width: int, tile_height: int,
                        backend: str | None = None) -> Tensor:
    """isect_ids [M] sorted -> offsets [C, tile_height, tile_width] int32."""
    if _pick(backend) == "reference":
        return reference.isect_offset_encode(isect_ids, n_cameras, tile_width, tile_height)
    return load().isect_offset_encode(isect_ids.contiguous(), n_cameras, tile_width, tile_height)


# ---------------------------------------------------------------------------------------- compositing
class _RasterizeToPixels(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, backgrounds, width, height, tile_size,
                isect_offsets, flatten_ids):
        render_colors, render_alphas, last_ids, final_Ts = load().rasterize_fwd(
            means2d, conics, colors, opacities, backgrounds, width, height, tile_size, isect_offsets, flatten_ids)
        ctx.save_for_backward(means2d, conics, colors, opacities, backgrounds, isect_offsets, flatten_ids,
                              final_Ts, last_ids)
        ctx.cfg = (width, height, tile_size)
        return render_colors, render_alphas

    @staticmethod
    def backward(ctx, v_render_colors, v_render_alphas):
        (means2d, conics, colors, opacities, backgrounds, isect_offsets, flatten_ids, final_Ts,
         last_ids) = ctx.saved_tensors
        width, height, tile_size = ctx.cfg
        v_means2d, v_conics, v_colors, v_opacities = load().rasterize_bwd(
            means2d, conics, colors, opacities, backgrounds, width, height, tile_size, isect_offsets,
            flatten_ids, final_Ts, last_ids, v_render_colors.contiguous(), v_render_alphas.contiguous())
        v_backgrounds = None
        if backgrounds is not None and ctx.needs_input_grad[4]:
            v_backgrounds = (final_Ts * v_render_colors).sum((1, 2))
        return v_means2d, v_conics, v_colors, v_opacities, v_backgrounds, None, None, None, None, None


def rasterize_to_pixels(means2d: Tensor, conics: Tensor, colors: Tensor, opacities: Tensor, width: int,
                        height: int, tile_size: int, isect_offsets: Tensor, flatten_ids: Tensor,
                        backgrounds: Tensor | None = None, backend: str | None = None):
    """means2d [C, N, 2], conics [C, N, 3], colors [C, N, D], opacities [C, N], backgrounds [C, D] ->
    render_colors [C, H, W, D], render_alphas [C, H, W, 1]."""
    if _pick(backend) == "reference":
        return reference.rasterize_to_pixels(means2d, conics, colors, opacities, width, height, tile_size,
                                             isect_offsets, flatten_ids, backgrounds)
    return _RasterizeToPixels.apply(
        means2d.contiguous(), conics.contiguous(), colors.contiguous(), opacities.contiguous(),
        None if backgrounds is None else backgrounds.contiguous(), width, height, tile_size,
        isect_offsets.contiguous(), flatten_ids.contiguous())


# ---------------------------------------------------------------------------------------- input checks
def value_flags(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, viewmats: Tensor, Ks: Tensor,
                colors: Tensor, backend: str | None = None) -> Tensor:
    """Every value rule of rasterization()'s inputs in one pass -> mask [1] int32 (reference.value_flags
    says which bit is which rule). No gradient."""
    if _pick(backend) == "reference":
        return reference.value_flags(means, quats, scales, opacities, viewmats, Ks, colors)
    return load().value_flags([t.detach().contiguous() for t in (means, quats, scales, opacities, viewmats, Ks,
                                                                colors)])
