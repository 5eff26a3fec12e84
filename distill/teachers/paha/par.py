"""PAR (Parts-Aware Re-weighting): a per-pixel loss weight from pose-keypoint confidences (PAHA, ACM MM'25, §PAR).

Definition implemented (per frame; pixel (row y, column x) has its centre at the integer coordinates (x, y), the
frame of keypoint coordinates):
    D_r(p)   = 1 on the pixels with (x - p_x)^2 + (y - p_y)^2 <= r^2 (a disc of radius r around keypoint p), else 0
    S_hf     = sum over hand and face keypoints k with c_k > tau of  c_k * D_r(p_k)        (discs add up)
    R_body   = 1 on the closed bounding box [min x, max x] x [min y, max y] of the body keypoints with c_k > tau
    c_body   = mean confidence of those body keypoints (0, and R_body = 0, when there are none)
    W        = 1 + omega1 * G_sigma * S_hf + omega2 * G_sigma * (c_body * R_body)
with G_sigma a normalised Gaussian blur (separable, truncated at 3 sigma, zero padding; sigma = 0 is no blur; it
preserves the total mass of a map whose support stays 3 sigma inside the frame). Published values [paper]:
tau = 0.8, r = 10 px, omega1 = 10, omega2 = 2.
On the latent grid the weight is W averaged over each f x f pixel cell (f = VAE factor), which keeps its mean, and
the PAR loss of the UniVDM is  mean over (B, C, F, h, w) of  W_latent * (eps_hat - eps)^2.

Keypoints come as [..., K, 3] = (x, y, confidence) in pixels. `PartIndices` names which of the K are face, hands and
body; the default is the COCO-WholeBody layout of DWPose's 133 points (body 0-16, feet 17-22, face 23-90, left
hand 91-111, right hand 112-132; feet count as body).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class PartIndices:
    face: tuple[int, ...] = tuple(range(23, 91))
    hands: tuple[int, ...] = tuple(range(91, 133))
    body: tuple[int, ...] = tuple(range(0, 23))


@dataclass(frozen=True)
class PARSettings:
    tau: float = 0.8          # [paper]
    radius: float = 10.0      # [paper] pixels
    omega1: float = 10.0      # [paper] hands and face
    omega2: float = 2.0       # [paper] body
    sigma: float = 5.0        # this implementation's choice (r / 2)

    @classmethod
    def from_config(cls, cfg) -> "PARSettings":
        return cls(cfg.par_tau, cfg.par_radius, cfg.par_omega1, cfg.par_omega2, cfg.par_sigma)


def _check_keypoints(keypoints: Tensor, parts: PartIndices) -> None:
    if keypoints.dim() < 2 or keypoints.shape[-1] != 3:
        raise ValueError(f"keypoints: expected [..., K, 3] (x, y, confidence), got {list(keypoints.shape)}")
    k = keypoints.shape[-2]
    used = parts.face + parts.hands + parts.body
    if used and (max(used) >= k or min(used) < 0):
        raise ValueError(f"keypoints: PartIndices refer to index {max(used)} but there are only K = {k} keypoints")


def disc_map(keypoints: Tensor, idx: tuple[int, ...], tau: float, radius: float, hw: tuple[int, int]) -> Tensor:
    """keypoints [N, K, 3] -> S [N, H, W] = sum over k in idx with c_k > tau of c_k * D_r(p_k)."""
    n = keypoints.shape[0]
    h, w = hw
    if not idx:
        return keypoints.new_zeros(n, h, w)
    kp = keypoints[:, list(idx)]                                        # [N, k, 3]
    ys = torch.arange(h, device=kp.device, dtype=kp.dtype).view(1, 1, h, 1)
    xs = torch.arange(w, device=kp.device, dtype=kp.dtype).view(1, 1, 1, w)
    d2 = (xs - kp[..., 0, None, None]) ** 2 + (ys - kp[..., 1, None, None]) ** 2      # [N, k, H, W]
    conf = kp[..., 2]
    weight = torch.where(conf > tau, conf, torch.zeros_like(conf))
    return ((d2 <= radius ** 2).to(kp.dtype) * weight[..., None, None]).sum(1)


def body_rect_map(keypoints: Tensor, idx: tuple[int, ...], tau: float, hw: tuple[int, int]) -> Tensor:
    """keypoints [N, K, 3] -> c_body * R_body [N, H, W] (bounding box of the confident body keypoints)."""
    n = keypoints.shape[0]
    h, w = hw
    out = keypoints.new_zeros(n, h, w)
    if not idx:
        return out
    kp = keypoints[:, list(idx)]
    ys = torch.arange(h, device=kp.device, dtype=kp.dtype).view(h, 1)
    xs = torch.arange(w, device=kp.device, dtype=kp.dtype).view(1, w)
    for i in range(n):
        ok = kp[i, :, 2] > tau
        if not bool(ok.any()):
            continue
        p = kp[i, ok]
        inside = (xs >= p[:, 0].min()) & (xs <= p[:, 0].max()) & (ys >= p[:, 1].min()) & (ys <= p[:, 1].max())
        out[i] = inside.to(kp.dtype) * p[:, 2].mean()
    return out


def gaussian_blur(maps: Tensor, sigma: float) -> Tensor:
    """maps [N, H, W] -> the same blurred by a normalised Gaussian (radius ceil(3 sigma), zero padding)."""
    if sigma <= 0:
        return maps
    r = int(math.ceil(3 * sigma))
    x = torch.arange(-r, r + 1, device=maps.device, dtype=maps.dtype)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    y = maps[:, None]
    y = F.conv2d(F.pad(y, (r, r, 0, 0)), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, r, r)), k.view(1, 1, -1, 1))
    return y[:, 0]


def par_weights(keypoints: Tensor, hw: tuple[int, int], settings: PARSettings = PARSettings(),
                parts: PartIndices = PartIndices()) -> Tensor:
    """keypoints [..., K, 3] (x, y, confidence; pixels) -> W [..., H, W] (the module docstring's definition)."""
    _check_keypoints(keypoints, parts)
    if len(hw) != 2 or min(hw) < 1:
        raise ValueError(f"hw: expected (H, W) >= 1, got {hw}")
    lead = keypoints.shape[:-2]
    kp = keypoints.reshape(-1, *keypoints.shape[-2:]).float()
    s = settings
    hands_face = disc_map(kp, parts.hands + parts.face, s.tau, s.radius, hw)
    body = body_rect_map(kp, parts.body, s.tau, hw)
    w = 1 + s.omega1 * gaussian_blur(hands_face, s.sigma) + s.omega2 * gaussian_blur(body, s.sigma)
    return w.reshape(*lead, *hw)


def to_latent_grid(weights: Tensor, factor: int) -> Tensor:
    """W [..., H, W] -> [..., H/f, W/f], the mean of each f x f cell."""
    h, w = weights.shape[-2:]
    if h % factor or w % factor:
        raise ValueError(f"weights: H, W must be multiples of the VAE factor {factor}, got {h}x{w}")
    flat = weights.reshape(-1, 1, h, w)
    return F.avg_pool2d(flat, factor).reshape(*weights.shape[:-2], h // factor, w // factor)


def par_loss(eps_hat: Tensor, eps: Tensor, latent_weights: Tensor) -> Tensor:
    """eps_hat, eps [B, C, F, h, w]; latent_weights [B, F, h, w] -> mean(W * (eps_hat - eps)^2)."""
    if eps_hat.shape != eps.shape:
        raise ValueError(f"eps_hat: shape {list(eps_hat.shape)} differs from eps {list(eps.shape)}")
    b, _, f, h, w = eps.shape
    if latent_weights.shape != (b, f, h, w):
        raise ValueError(f"latent_weights: expected {[b, f, h, w]}, got {list(latent_weights.shape)}")
    return (latent_weights[:, None].to(eps.dtype) * (eps_hat - eps) ** 2).mean()
