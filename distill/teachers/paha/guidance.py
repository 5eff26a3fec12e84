"""Sequential Guidance (SG) and Differential Guidance (DG) of noisy latents by regional losses (PAHA, §Inference).

For latents z [B, C, F, h, w], region masks M_face, M_nonface (broadcastable to z, e.g. [B, 1, F, h, w]) and
differentiable regional losses L_face, L_nonface (PAHA: each PCE classifier's BCE against "real", pce.guidance_loss):

SG, the non-face step first, then the face step, each limited to its mask, both gradients taken at z:
    z_nonface = z - lambda_nonface * M_nonface * grad L_nonface(z)
    z_face    = z - lambda_face    * M_face    * grad L_face(z)
    z*        = z_face + z_nonface - z
DG adds a compensation for how each step changes the other region's gradient (a finite-difference Hessian-vector
correction along z* - z), with the gradients re-evaluated at the SG point:
    c    = -( M_nonface * (grad L_nonface(z*) - grad L_nonface(z)) + M_face * (grad L_face(z*) - grad L_face(z)) )
    z_DG = z* + lambda_diff * c
For a quadratic L(z) = 1/2 (z - a)^T A (z - a) the difference of gradients is A (z* - z): c = -M A (z* - z).
Defaults [paper]: lambda_nonface = 1, lambda_face = 0.1, lambda_diff = 0.25; applied in the first 50% of the DDIM
steps. SG costs two gradients per step, DG four.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

Loss = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class GuidanceWeights:
    lambda_nonface: float = 1.0    # [paper]
    lambda_face: float = 0.1       # [paper]
    lambda_diff: float = 0.25      # [paper]

    @classmethod
    def from_config(cls, cfg) -> "GuidanceWeights":
        return cls(cfg.lambda_nonface, cfg.lambda_face, cfg.lambda_diff)


def loss_grad(loss: Loss, z: Tensor) -> Tensor:
    """grad_z loss(z) (a scalar loss), with autograd on even inside torch.no_grad()."""
    with torch.enable_grad():
        zz = z.detach().requires_grad_(True)
        value = loss(zz)
        if value.dim() != 0:
            raise ValueError(f"loss: expected a scalar, got shape {list(value.shape)}")
        (grad,) = torch.autograd.grad(value, zz)
    return grad.detach()


def _check_masks(z: Tensor, m_face: Tensor, m_nonface: Tensor) -> None:
    for name, m in (("m_face", m_face), ("m_nonface", m_nonface)):
        try:
            torch.broadcast_shapes(m.shape, z.shape)
        except RuntimeError:
            raise ValueError(f"{name}: shape {list(m.shape)} does not broadcast to z {list(z.shape)}") from None


def sequential_guidance(z: Tensor, loss_face: Loss, loss_nonface: Loss, m_face: Tensor, m_nonface: Tensor,
                        w: GuidanceWeights = GuidanceWeights()) -> tuple[Tensor, dict[str, Tensor]]:
    """-> (z*, {"nonface": grad L_nonface(z), "face": grad L_face(z)})."""
    _check_masks(z, m_face, m_nonface)
    g_nonface = loss_grad(loss_nonface, z)
    z_nonface = z - w.lambda_nonface * m_nonface * g_nonface
    g_face = loss_grad(loss_face, z)
    z_face = z - w.lambda_face * m_face * g_face
    return z_face + z_nonface - z, {"nonface": g_nonface, "face": g_face}


def differential_guidance(z: Tensor, loss_face: Loss, loss_nonface: Loss, m_face: Tensor, m_nonface: Tensor,
                          w: GuidanceWeights = GuidanceWeights()) -> Tensor:
    """-> z_DG = z* + lambda_diff * c (module docstring)."""
    z_star, g = sequential_guidance(z, loss_face, loss_nonface, m_face, m_nonface, w)
    d_nonface = loss_grad(loss_nonface, z_star) - g["nonface"]
    d_face = loss_grad(loss_face, z_star) - g["face"]
    return z_star - w.lambda_diff * (m_nonface * d_nonface + m_face * d_face)


def guide(mode: str, z: Tensor, loss_face: Loss, loss_nonface: Loss, m_face: Tensor, m_nonface: Tensor,
          w: GuidanceWeights = GuidanceWeights()) -> Tensor:
    """mode "none" | "sg" | "dg" -> the guided latents."""
    if mode == "none":
        return z
    if mode == "sg":
        return sequential_guidance(z, loss_face, loss_nonface, m_face, m_nonface, w)[0]
    if mode == "dg":
        return differential_guidance(z, loss_face, loss_nonface, m_face, m_nonface, w)
    raise ValueError(f"mode: expected 'none', 'sg' or 'dg', got {mode!r}")


def guided_step_count(steps: int, fraction: float) -> int:
    """How many of the first DDIM steps are guided (round(0.5 * 30) = 15 with the paper's defaults)."""
    if steps < 1 or not 0 <= fraction <= 1:
        raise ValueError(f"steps/fraction: expected steps >= 1 and fraction in [0, 1], got {steps}, {fraction}")
    return int(round(steps * fraction))
