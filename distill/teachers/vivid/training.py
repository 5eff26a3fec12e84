"""VividAnimator denoiser training: the diffusion loss with condition dropout for two-scale guidance (WACV 2026).

The HCC VQ-VAE is pretrained offline (`HandCodebookVAE.loss`, hcc.py) and frozen here; the denoiser (with its DSAA
adapter and the two masked attentions), the ReferenceNet and the hand encoder train on
    loss = || model(x_t, t, conditions) - target ||^2       target = eps (or v, cfg.prediction_type)
To learn the branches that two-scale classifier-free guidance (pipeline.py) evaluates, a training step drops
(our choice of mechanism; probabilities are the caller's): the audio (zero W_a: e(img, 0)), or the audio and the
image conditions together (no reference attention, no codebook attention: e(0, 0)). The drop is per step, not per
sample, because reference attention is on or off for the whole batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from distill.teachers.sd_video.reference import capture_reference_tokens


@dataclass
class TrainBatch:
    latents: Tensor                   # [B, 4, F, h, w]  the clip's VAE latents (x0)
    ref_latents: Tensor               # [B, 4, h, w]     the reference frame's latent
    audio: Tensor                     # [B, F, T, D_a]   W_a
    hand_heatmaps: Tensor             # [B, 2, F, H, W]
    head_mask: Tensor                 # [B, F, h, w]
    hand_tokens: Tensor | None = None  # [B, K, D_code]  F_h from the frozen HCC
    hand_mask: Tensor | None = None   # [B, F, h, w]


DROP_MODES = ("none", "audio", "all")


def diffusion_loss(comp, batch: TrainBatch, timesteps: Tensor, noise: Tensor, drop: str = "none") -> dict:
    """One training forward; drop in DROP_MODES (module docstring). -> {"loss_diffusion", ...}."""
    if drop not in DROP_MODES:
        raise ValueError(f"drop: expected one of {DROP_MODES}, got {drop!r}")
    if timesteps.shape != (batch.latents.shape[0],) or noise.shape != batch.latents.shape:
        raise ValueError(f"timesteps/noise: expected [B] and {list(batch.latents.shape)}, got "
                         f"{list(timesteps.shape)}, {list(noise.shape)}")
    sched = comp.scheduler()
    x0 = batch.latents
    noisy = sched.add_noise(x0, noise, timesteps)
    target = noise if comp.cfg.prediction_type == "epsilon" else sched.get_velocity(x0, noise, timesteps)
    audio = torch.zeros_like(batch.audio) if drop in ("audio", "all") else batch.audio
    reference = None if drop == "all" else capture_reference_tokens(comp.reference_unet, batch.ref_latents)
    hand_tokens = None if drop == "all" else batch.hand_tokens
    pred = comp.denoiser(noisy, timesteps, audio=audio, hand_features=comp.hand_encoder(batch.hand_heatmaps),
                         reference=reference, hand_tokens=hand_tokens, head_mask=batch.head_mask,
                         hand_mask=batch.hand_mask)
    loss = F.mse_loss(pred.float(), target.float())
    return {"loss_diffusion": loss, "diffusion_drop": torch.tensor(DROP_MODES.index(drop))}


def sample_drop(generator: torch.Generator | None = None, p_audio: float = 0.05, p_all: float = 0.05) -> str:
    """Draw this step's drop mode: "all" with p_all, "audio" with p_audio, else "none"."""
    if not (0 <= p_audio and 0 <= p_all and p_audio + p_all <= 1):
        raise ValueError(f"p_audio, p_all: expected >= 0 with a sum <= 1, got {p_audio}, {p_all}")
    u = float(torch.rand((), generator=generator))
    return "all" if u < p_all else "audio" if u < p_all + p_audio else "none"
