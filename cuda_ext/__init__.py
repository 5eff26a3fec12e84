"""Gaussian splatting ops for AudioAvatar: a gsplat-compatible `rasterization()` over three backends.

- `reference`: pure torch with autograd (the oracle; CPU, no CUDA needed),
- C++ CPU kernels (multi-threaded, 8-wide SIMD, tile-based; forward and backward),
- CUDA kernels (forward and backward), built when torch has CUDA.
The compiled kernels load lazily on first use (`_backend.load`). Shapes: see `engine` for the glossary.
"""
from .ops import (fully_fused_projection, isect_offset_encode, isect_tiles, rasterize_to_pixels,
                  spherical_harmonics)
from .rendering import rasterization

__all__ = ["rasterization", "fully_fused_projection", "spherical_harmonics", "isect_tiles",
           "isect_offset_encode", "rasterize_to_pixels"]
