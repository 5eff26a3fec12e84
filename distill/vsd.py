"""Score distillation (SDS / VSD) written as an MSE to a detached target (the threestudio convention).

Given a rendered input x (pixels, or latents encoded from rendered pixels), a timestep t, noise eps and a weight
w(t), the teacher's noise prediction on x_t = sqrt(a_t) x + sqrt(1 - a_t) eps is eps_hat. Score distillation
wants the update direction
    g = w(t) * (eps_hat - eps_ref)
with eps_ref = eps (SDS, DreamFusion) or eps_ref = eps_phi(x_t, t), the prediction of a LoRA / particle model
fine-tuned on the current renders (VSD, ProlificDreamer), and no gradient through either network.

Derivation. Let target = sg(x - (eps_hat - eps_ref)) (sg: stop-gradient) and
    L = 1/2 * sum_i w_i * (x_i - target_i)^2 .
Then dL/dx_i = w_i * (x_i - target_i) = w_i * (x_i - x_i + (eps_hat - eps_ref)_i) = w_i * (eps_hat - eps_ref)_i,
because target is a constant for autograd. So `L.backward()` deposits exactly g on x (and, by the chain rule, on
whatever produced x: Gaussian means, colours, ...). L's value is 1/2 * sum(w * (eps_hat - eps_ref)^2), a useful
diagnostic but not a quantity that decreases to 0 at the optimum. The sum (not a mean) keeps the gradient equal
to g per element; scale it through the trainer's loss weight. Non-finite entries of g are zeroed (threestudio).

Returns the loss-dict contract: {"loss_sds" or "loss_vsd": L, ...diagnostics}. `lora_denoise_loss` is the
particle model's own loss (plain denoising on the detached renders), {"loss_vsd_lora": ...}.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

ScoreFn = Callable[[Tensor, Tensor], Tensor]      # (x_t [B, ...], t [B]) -> eps prediction [B, ...]


def _check(x: Tensor, t: Tensor, noise: Tensor, alphas_cumprod: Tensor) -> Tensor:
    if noise.shape != x.shape:
        raise ValueError(f"noise: expected the shape of the input {list(x.shape)}, got {list(noise.shape)}")
    t = torch.as_tensor(t, device=x.device).reshape(-1)
    if t.numel() == 1:
        t = t.expand(x.shape[0])
    if t.numel() != x.shape[0]:
        raise ValueError(f"t: expected a scalar or [{x.shape[0]}] timesteps, got {t.numel()}")
    if t.dtype.is_floating_point or int(t.min()) < 0 or int(t.max()) >= alphas_cumprod.numel():
        raise ValueError(f"t: expected integer timesteps in [0, {alphas_cumprod.numel() - 1}], got {t.tolist()}")
    return t


def _per_sample(v: Tensor | float, x: Tensor) -> Tensor:
    v = torch.as_tensor(v, device=x.device, dtype=x.dtype).reshape(-1)
    if v.numel() not in (1, x.shape[0]):
        raise ValueError(f"weight: expected a scalar or [{x.shape[0]}] values, got {v.numel()}")
    return v.expand(x.shape[0]).reshape(-1, *([1] * (x.dim() - 1)))


def add_noise(x: Tensor, t: Tensor, noise: Tensor, alphas_cumprod: Tensor) -> Tensor:
    """x_t = sqrt(a_t) x + sqrt(1 - a_t) noise, per sample."""
    a = _per_sample(alphas_cumprod.to(x.device, x.dtype)[t], x)
    return a.sqrt() * x + (1 - a).sqrt() * noise


def sds_weight(alphas_cumprod: Tensor, t: Tensor, kind: str = "sds") -> Tensor:
    """w(t): "sds" -> 1 - a_t (DreamFusion / threestudio default), "uniform" -> 1, "fantasia3d" -> a_t^0.5 (1 - a_t)."""
    a = alphas_cumprod[torch.as_tensor(t).reshape(-1).long()]
    if kind == "sds":
        return 1 - a
    if kind == "uniform":
        return torch.ones_like(a)
    if kind == "fantasia3d":
        return a.sqrt() * (1 - a)
    raise ValueError(f"kind: expected 'sds', 'uniform' or 'fantasia3d', got {kind!r}")


def vsd_loss(teacher_score_fn: ScoreFn, latents_or_pixels: Tensor, t: Tensor, noise: Tensor, weight: Tensor | float,
             lora_score_fn: ScoreFn | None = None, *, alphas_cumprod: Tensor) -> dict:
    """SDS (lora_score_fn None) or VSD loss whose gradient w.r.t. latents_or_pixels is weight * (eps_hat - eps_ref).

    latents_or_pixels [B, ...] (requires grad; what the renderer produced), t [B] or scalar integer timesteps,
    noise like latents_or_pixels, weight scalar or [B], alphas_cumprod [T] (the teacher's schedule)."""
    # 1. inputs
    x = latents_or_pixels
    t = _check(x, t, noise, alphas_cumprod)
    w = _per_sample(weight, x)
    # 2. the two noise predictions, no gradient through either network
    with torch.no_grad():
        x_t = add_noise(x.detach(), t, noise, alphas_cumprod)
        eps_hat = teacher_score_fn(x_t, t)
        eps_ref = noise if lora_score_fn is None else lora_score_fn(x_t, t)
        if eps_hat.shape != x.shape or eps_ref.shape != x.shape:
            raise ValueError(f"score functions: expected eps of shape {list(x.shape)}, got teacher "
                             f"{list(eps_hat.shape)}, reference {list(eps_ref.shape)}")
        grad = torch.nan_to_num(eps_hat.to(x.dtype) - eps_ref.to(x.dtype), nan=0.0, posinf=0.0, neginf=0.0)
        target = x.detach() - grad
    # 3. MSE to the detached target: d/dx [1/2 w (x - target)^2] = w * grad (module docstring)
    loss = 0.5 * (w * (x - target) ** 2).sum()
    name = "loss_sds" if lora_score_fn is None else "loss_vsd"
    return {name: loss, "score_grad_norm": (w * grad).norm().detach(), "t_mean": t.float().mean()}


def lora_denoise_loss(lora_score_fn: ScoreFn, latents_or_pixels: Tensor, t: Tensor, noise: Tensor, *,
                      alphas_cumprod: Tensor) -> dict:
    """The VSD particle model's loss: predict the noise of the (detached) renders, so it tracks their distribution."""
    x = latents_or_pixels.detach()
    t = _check(x, t, noise, alphas_cumprod)
    pred = lora_score_fn(add_noise(x, t, noise, alphas_cumprod), t)
    return {"loss_vsd_lora": F.mse_loss(pred.float(), noise.float())}
