"""PAHA components and sampling (DDIM with Sequential / Differential Guidance by the PCE classifiers).

Sampling, in steps:
1. DDIM (epsilon prediction, eta 0) with cfg.num_inference_steps = 30 [paper].
2. initial noise N(0, 1) [1, C, F, h, w] from the seed.
3. at step i the F frames are covered by windows of cfg.context_frames frames overlapping by cfg.context_overlap
   (echomimic_v2 context_windows, shifted by overlap * i); every window is denoised with the reference latent stacked
   in front of it (UniVDM: [1, C, 1 + window, h, w]); predictions are averaged where windows overlap.
4. in the first round(guidance_fraction * steps) steps (15 of 30 [paper]) each window is first moved by SG or DG
   (guidance.py) with L_region = the PCE classifier's BCE against "real" (pce.guidance_loss), masks from the face
   mask; the moves are averaged where windows overlap.
5. DDIM step on the whole video; then the VAE decodes frame by frame (echomimic_v2 latents_to_frames).
The reference frame is never noised: it enters every call as the clean latent (univdm.stack_reference).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler
from torch import Tensor, nn

from distill.teachers.echomimic_v2.audio import WhisperAudioFeatures
from distill.teachers.echomimic_v2.pipeline import (context_windows, decode_latents, encode_images,  # noqa: F401
                                                    encode_images_grad, image_to_tensor, latents_to_frames)

from . import checkpoint as ckpt
from .config import GUIDANCE_MODES
from .guidance import GuidanceWeights, guide, guided_step_count
from .pce import PCE, guidance_loss, region_masks
from .univdm import UniVDM

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class Components:
    cfg: object
    vae: AutoencoderKL
    model: UniVDM
    pce: PCE
    audio: WhisperAudioFeatures

    def modules(self) -> dict[str, nn.Module]:
        return {"vae": self.vae, "model": self.model, "pce": self.pce, "audio": self.audio}

    def scheduler(self) -> DDIMScheduler:
        return DDIMScheduler(**self.cfg.scheduler_kwargs())

    def save_pretrained(self, folder) -> None:
        ckpt.save_pretrained(self.modules(), self.cfg, folder)


def build_components(cfg) -> Components:
    """All modules for cfg: weights from cfg.weights_dir (a save_pretrained folder), or random when random_init."""
    # 1. where the weights come from
    if not cfg.weights_dir and not cfg.random_init:
        raise ValueError("weights_dir: required (a folder written by save_pretrained; no PAHA weights are "
                         "released); set random_init=True for a randomly initialised model")
    # 2. modules
    comp = Components(cfg, AutoencoderKL(**cfg.vae_kwargs()), UniVDM(cfg), PCE(cfg), WhisperAudioFeatures(cfg))
    # 3. weights
    if cfg.weights_dir:
        ckpt.load_pretrained(comp.modules(), cfg)
    for m in comp.modules().values():
        m.to(cfg.device)
        if DTYPES[cfg.dtype] != torch.float32:
            m.to(DTYPES[cfg.dtype])
    return comp


def face_mask_from_box(box: tuple[float, ...], num_frames: int, hw: tuple[int, int], device=None) -> Tensor:
    """(x0, y0, x1, y1) as image fractions -> latent-grid mask [1, F, h, w] (cells whose centre is in the box)."""
    h, w = hw
    ys = (torch.arange(h, device=device) + 0.5) / h
    xs = (torch.arange(w, device=device) + 0.5) / w
    inside = ((ys[:, None] >= box[1]) & (ys[:, None] < box[3]) & (xs[None] >= box[0]) & (xs[None] < box[2]))
    return inside.float()[None, None].expand(1, num_frames, h, w).contiguous()


def face_mask_from_image(mask: np.ndarray | Tensor, num_frames: int, hw: tuple[int, int], device=None) -> Tensor:
    """A face mask [H0, W0] (any resolution; nonzero = face) -> latent grid [1, F, h, w] (area fraction)."""
    m = torch.as_tensor(np.asarray(mask) if not isinstance(mask, Tensor) else mask, dtype=torch.float32)
    if m.dim() != 2:
        raise ValueError(f"face_mask: expected [H, W], got {list(m.shape)}")
    m = F.adaptive_avg_pool2d((m != 0).float()[None, None], hw)
    return m[:, 0:1].expand(1, num_frames, *hw).to(device).contiguous()


@dataclass
class SampleInputs:
    ref_latents: Tensor        # [1, C, h, w]
    audio: Tensor              # [1, F, L, D_a]
    face_mask: Tensor          # [1, F, h, w] in [0, 1]


def guide_windows(comp: Components, inputs: SampleInputs, latents: Tensor, t: Tensor, windows: list[list[int]],
                  mode: str) -> Tensor:
    """Step 4: SG / DG ("sg" | "dg") per window; moves averaged where windows overlap. latents [1, C, F, h, w]."""
    cfg = comp.cfg
    weights = GuidanceWeights.from_config(cfg)
    f = latents.shape[2]
    move = torch.zeros_like(latents)
    count = torch.zeros(f, device=latents.device, dtype=latents.dtype)
    for window in windows:
        idx = torch.tensor(window, device=latents.device)
        z = latents[:, :, idx]
        audio = inputs.audio[:, idx]
        masks = region_masks(inputs.face_mask[:, idx].to(z.dtype))

        def loss_of(region):
            return lambda zz: guidance_loss(comp.pce, comp.model, region, inputs.ref_latents, zz, t, audio,
                                            masks[region])
        z_new = guide(mode, z, loss_of("face"), loss_of("nonface"), masks["face"][:, None],
                      masks["nonface"][:, None], weights)
        move.index_add_(2, idx, z_new - z)
        count.index_add_(0, idx, torch.ones(len(window), device=latents.device, dtype=latents.dtype))
    return latents + move / count.view(1, 1, f, 1, 1)


@torch.no_grad()
def sample(comp: Components, inputs: SampleInputs, generator: torch.Generator, steps: int | None = None,
           guidance_mode: str | None = None) -> Tensor:
    """-> latents [1, C, F, h, w] (steps in the module docstring). steps / guidance_mode default to the config."""
    cfg = comp.cfg
    b, f = inputs.audio.shape[:2]
    h, w = inputs.ref_latents.shape[-2:]
    if b != 1 or inputs.face_mask.shape != (1, f, h, w):
        raise ValueError(f"inputs: expected batch 1 and a face mask {[1, f, h, w]}, got audio "
                         f"{list(inputs.audio.shape)}, face_mask {list(inputs.face_mask.shape)}")
    steps = cfg.num_inference_steps if steps is None else steps
    mode = cfg.guidance_mode if guidance_mode is None else guidance_mode
    if mode not in GUIDANCE_MODES:
        raise ValueError(f"guidance_mode: expected one of {GUIDANCE_MODES}, got {mode!r}")
    dtype, device = inputs.ref_latents.dtype, inputs.ref_latents.device
    # 1. scheduler
    scheduler = comp.scheduler()
    scheduler.set_timesteps(steps, device=device)
    # 2. initial noise
    noise = torch.randn((1, cfg.latent_channels, f, h, w), generator=generator, dtype=torch.float32)
    latents = noise.to(device, dtype) * scheduler.init_noise_sigma
    guided = guided_step_count(steps, cfg.guidance_fraction) if mode != "none" else 0
    for i, t in enumerate(scheduler.timesteps):
        windows = context_windows(f, cfg.context_frames, cfg.context_overlap, shift=cfg.context_overlap * i)
        # 4. guidance (first `guided` steps)
        if i < guided:
            latents = guide_windows(comp, inputs, latents, t, windows, mode)
        # 3. denoise in windows, reference in front
        pred = torch.zeros_like(latents)
        count = torch.zeros(f, device=device, dtype=dtype)
        for window in windows:
            idx = torch.tensor(window, device=device)
            x = scheduler.scale_model_input(latents[:, :, idx], t)
            pred.index_add_(2, idx, comp.model(inputs.ref_latents, x, t, inputs.audio[:, idx]))
            count.index_add_(0, idx, torch.ones(len(window), device=device, dtype=dtype))
        # 5. DDIM step
        latents = scheduler.step(pred / count.view(1, 1, f, 1, 1), t, latents, eta=0.0).prev_sample
    return latents
