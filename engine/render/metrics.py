"""Image quality measures used by benchmarks and reports: PSNR and SSIM (Wang et al. 2004: 11x11 Gaussian
window, sigma 1.5, K1 = 0.01, K2 = 0.03, population statistics), optionally averaged inside a mask."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def psnr(a: Tensor, b: Tensor, mask: Tensor | None = None) -> float:
    """a, b [H, W, C] in [0, 1]; mask [H, W] bool selects the pixels compared."""
    d = (a - b) ** 2
    mse = float(d[mask].mean() if mask is not None else d.mean())
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def separable_blur(t: Tensor, g: Tensor) -> Tensor:
    """'valid' correlation of t [..., H, W] with the separable window g[:, None] * g[None, :] (g [k]) ->
    [..., H - k + 1, W - k + 1], as shifted weighted sums (several times faster than conv2d on the CPU)."""
    k = g.shape[0]
    H, W = t.shape[-2:]
    rows = sum(g[i] * t[..., i:H - k + 1 + i, :] for i in range(k))
    return sum(g[i] * rows[..., i:W - k + 1 + i] for i in range(k))


def ssim_map(a: Tensor, b: Tensor, sigma: float = 1.5, radius: int = 5) -> Tensor:
    """Per-pixel SSIM [H, W] of a, b [H, W, C] in [0, 1], averaged over channels (borders: 'valid' windows
    only, the rest set from the nearest valid pixel by replicate padding of the statistics)."""
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    g = g / g.sum()
    A, B = a.permute(2, 0, 1)[:, None].double(), b.permute(2, 0, 1)[:, None].double()
    def blur(t):
        return F.pad(separable_blur(t, g), (radius,) * 4, mode="replicate")
    mu_a, mu_b = blur(A), blur(B)
    var_a = blur(A * A) - mu_a ** 2
    var_b = blur(B * B) - mu_b ** 2
    cov = blur(A * B) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return s[:, 0].mean(0).float()


def ssim(a: Tensor, b: Tensor, mask: Tensor | None = None) -> float:
    s = ssim_map(a, b)
    return float(s[mask].mean() if mask is not None else s.mean())
