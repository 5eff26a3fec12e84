"""PAHA components and sampling (DDIM with Sequential / Differential Guidance by the PCE classifiers).

Sampling, in steps:
1. DDIM (epsilon prediction, eta 0) with cfg.num_inference_steps = 30 [paper].
2. initial noise N(0, 1) [1, C, F, h, w] from the seed.
3. at step i the F frames are covered by windows of cfg.context_frames frames overlapping by cfg.context_overlap
   (sd_video context_windows, shifted by overlap * i); every window is denoised with the reference latent stacked
   in front of it (UniVDM: [1, C, 1 + window, h, w]); predictions are averaged where windows overlap.
4. in the first round(guidance_fraction * steps) steps (15 of 30 [paper]) each window is first moved by SG or DG
   (guidance.py) with L_region = the PCE classifier's BCE against "real" (pce.guidance_loss), masks from the face
   mask; the moves are averaged where windows overlap.
5. DDIM step on the whole video; then the VAE decodes frame by frame (sd_video latents_to_frames).
The reference frame is never noised: it enters every call as the clean latent (univdm.stack_reference).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from torch import Tensor

from distill.teachers.sd_video.audio import WhisperAudioFeatures
from distill.teachers.sd_video.components import VideoComponents
from distill.teachers.sd_video.images import (decode_latents, encode_images, encode_images_grad, image_to_tensor,
                                              latents_to_frames)
from distill.teachers.sd_video.sampling import context_windows, denoise_step, start_sampling, window_average

from . import checkpoint as ckpt
from .config import GUIDANCE_MODES
from .guidance import GuidanceWeights, guide, guided_step_count
from .pce import PCE, guidance_loss, region_masks
from .univdm import UniVDM

# with the TeacherPipeline functions (distill/teachers/base.py); the image/latent ones are sd_video/images.py's
__all__ = ["Components", "SampleInputs", "build_components", "decode_latents", "encode_images", "encode_images_grad",
           "face_mask_from_box", "face_mask_from_image", "guide_windows", "image_to_tensor", "latents_to_frames",
           "sample"]


@dataclass
class Components(VideoComponents):
    model: UniVDM
    pce: PCE
    audio: WhisperAudioFeatures

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
    comp.place()
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
    weights = GuidanceWeights.from_config(comp.cfg)

    def move(z: Tensor, idx: Tensor) -> Tensor:
        audio = inputs.audio[:, idx]
        masks = region_masks(inputs.face_mask[:, idx].to(z.dtype))

        def loss_of(region):
            return lambda zz: guidance_loss(comp.pce, comp.model, region, inputs.ref_latents, zz, t, audio,
                                            masks[region])
        z_new = guide(mode, z, loss_of("face"), loss_of("nonface"), masks["face"][:, None],
                      masks["nonface"][:, None], weights)
        return z_new - z
    return latents + window_average(latents, windows, move)


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
    # 1-2. scheduler, initial noise
    scheduler, latents = start_sampling(comp, steps, f, inputs.ref_latents, generator)
    guided = guided_step_count(steps, cfg.guidance_fraction) if mode != "none" else 0

    def predict(x: Tensor, idx: Tensor, t: Tensor) -> Tensor:
        return comp.model(inputs.ref_latents, x, t, inputs.audio[:, idx])
    for i, t in enumerate(scheduler.timesteps):
        windows = context_windows(f, cfg.context_frames, cfg.context_overlap, shift=cfg.context_overlap * i)
        # 4. guidance (first `guided` steps)
        if i < guided:
            latents = guide_windows(comp, inputs, latents, t, windows, mode)
        # 3. denoise in windows, reference in front; 5. DDIM step
        latents = denoise_step(scheduler, latents, t, windows, predict)
    return latents
