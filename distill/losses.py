"""The distillation losses (issue 7, step 6), each returning the loss-dict contract {"loss_x": tensor, ...}.

    photometric   renders [B, H, W, 3] vs teacher frames [B, H, W, 3] (both in [0, 1]) inside a mask [B, H, W]:
                  L1, and 1 - SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, the
                  same window as engine.render.metrics.ssim_map, here in float32 and batched, with gradients)
    trajectory    sum_i sum_t ||u_hat_t^i - u_t^i||^2 (AudioAvatar §3.3): projected Gaussian centres [B, T, P, 2]
                  against the teacher video's 2-D tracks [B, T, P, 2] where the tracks are valid [B, T, P]; the
                  sum is divided by the number of valid terms (so batch size and track count do not set the
                  loss scale) and by px_scale^2 (so it reads in units of px_scale pixels)
    arap          the as-rigid-as-possible prior: the distance between every point and each of its k nearest
                  neighbours (rest pose, `knn_graph`) stays what it was one timestep earlier:
                  mean over t, i, j of ((|x_i(t+1) - x_j(t+1)| - |x_i(t) - x_j(t)|) / |r_i - r_j|)^2, points
                  [B, T, M, 3], rest pose r [M, 3]: a relative strain, so the weight does not depend on the
                  avatar's world scale (without r, the plain squared change of distance)

The trainer (distill/finetune.py) weights and sums them with the weights from its config.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.avatar.knn import knn
from engine.render.metrics import separable_blur

SSIM_SIGMA, SSIM_RADIUS, SSIM_C1, SSIM_C2 = 1.5, 5, 0.01 ** 2, 0.03 ** 2


def _check_images(pred: Tensor, target: Tensor, mask: Tensor | None) -> None:
    if pred.dim() != 4 or pred.shape[-1] != 3:
        raise ValueError(f"pred: expected [B, H, W, 3], got {list(pred.shape)}")
    if min(pred.shape[1:3]) < 2 * SSIM_RADIUS + 1:
        raise ValueError(f"pred: images must be at least {2 * SSIM_RADIUS + 1} pixels on each side (the SSIM "
                         f"window), got {list(pred.shape[1:3])}")
    if target.shape != pred.shape:
        raise ValueError(f"target: expected the shape of pred {list(pred.shape)}, got {list(target.shape)}")
    if mask is not None and mask.shape != pred.shape[:3]:
        raise ValueError(f"mask: expected [B, H, W] = {list(pred.shape[:3])}, got {list(mask.shape)}")


def ssim_map(a: Tensor, b: Tensor) -> Tensor:
    """Per-pixel SSIM [B, H, W] of a, b [B, H, W, 3] in [0, 1], averaged over channels; borders as
    engine.render.metrics.ssim_map (valid windows, statistics padded by replication)."""
    x = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=a.dtype, device=a.device)
    g = torch.exp(-0.5 * (x / SSIM_SIGMA) ** 2)
    g = g / g.sum()

    B, H, W, C = a.shape
    A = a.permute(0, 3, 1, 2).reshape(B * C, 1, H, W)
    Bm = b.permute(0, 3, 1, 2).reshape(B * C, 1, H, W)

    def blur(t: Tensor) -> Tensor:
        return F.pad(separable_blur(t, g), (SSIM_RADIUS,) * 4, mode="replicate")
    mu_a, mu_b = blur(A), blur(Bm)
    var_a = blur(A * A) - mu_a ** 2
    var_b = blur(Bm * Bm) - mu_b ** 2
    cov = blur(A * Bm) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + SSIM_C1) * (2 * cov + SSIM_C2)) / ((mu_a ** 2 + mu_b ** 2 + SSIM_C1) * (var_a + var_b + SSIM_C2))
    return s.reshape(B, C, H, W).mean(1)


def _masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return x.mean()
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp_min(1.0)


def photometric_loss(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> dict[str, Tensor]:
    """{"loss_l1", "loss_ssim" (1 - SSIM), "psnr" (detached, dB)} inside mask [B, H, W] bool (None: all)."""
    _check_images(pred, target, mask)
    l1 = _masked_mean((pred - target).abs().mean(-1), mask)
    ssim = _masked_mean(ssim_map(pred, target), mask)
    mse = _masked_mean(((pred - target) ** 2).mean(-1), mask).detach()
    return {"loss_l1": l1, "loss_ssim": 1.0 - ssim, "psnr": -10.0 * torch.log10(mse.clamp_min(1e-12))}


def trajectory_loss(pred: Tensor, tracks: Tensor, valid: Tensor, px_scale: float = 1.0) -> dict[str, Tensor]:
    """{"loss_traj", "traj_px" (detached RMS error in pixels)}: pred, tracks [..., P, 2] pixels, valid [..., P]."""
    if pred.shape != tracks.shape or pred.shape[-1] != 2:
        raise ValueError(f"pred/tracks: expected two [..., P, 2] tensors of one shape, got {list(pred.shape)} "
                         f"and {list(tracks.shape)}")
    if valid.shape != pred.shape[:-1] or valid.dtype != torch.bool:
        raise ValueError(f"valid: expected bool {list(pred.shape[:-1])}, got {valid.dtype} {list(valid.shape)}")
    if not px_scale > 0:
        raise ValueError(f"px_scale: expected > 0, got {px_scale}")
    sq = ((pred - tracks.to(pred.dtype)) ** 2).sum(-1)
    n = valid.sum().clamp_min(1)
    total = torch.where(valid, sq, torch.zeros((), dtype=sq.dtype, device=sq.device)).sum() / n
    return {"loss_traj": total / px_scale ** 2, "traj_px": total.detach().sqrt()}


def knn_graph(points: Tensor, k: int) -> Tensor:
    """The k nearest other points of each of points [M, 3] -> neighbour indices [M, k] (engine.avatar.knn)."""
    return knn(points, points, k, exclude_self=True)[1]


def arap_loss(points: Tensor, neighbours: Tensor, rest: Tensor | None = None) -> dict[str, Tensor]:
    """{"loss_arap"}: points [B, T, M, 3] (T >= 2), neighbours [M, k] from knn_graph on the rest pose [M, 3]."""
    if points.dim() != 4 or points.shape[-1] != 3 or points.shape[1] < 2:
        raise ValueError(f"points: expected [B, T >= 2, M, 3], got {list(points.shape)}")
    M = points.shape[2]
    if neighbours.dim() != 2 or neighbours.shape[0] != M or neighbours.dtype != torch.long:
        raise ValueError(f"neighbours: expected int64 [M={M}, k], got {neighbours.dtype} {list(neighbours.shape)}")
    diff = points[:, :, :, None, :] - points[:, :, neighbours, :]                     # [B, T, M, k, 3]
    d = (diff.pow(2).sum(-1) + 1e-12).sqrt()          # the epsilon keeps the gradient finite for coincident points
    change = d[:, 1:] - d[:, :-1]                                                       # [B, T-1, M, k]
    if rest is not None:
        if rest.shape != (M, 3):
            raise ValueError(f"rest: expected [M={M}, 3], got {list(rest.shape)}")
        change = change / (rest[:, None, :] - rest[neighbours]).norm(dim=-1).clamp_min(1e-9)
    return {"loss_arap": (change ** 2).mean()}
