"""The PAHA teacher (registered as "paha"): reference photo + speech -> upper-body talking video.

Config: PAHAConfig keys (strict), e.g. make_teacher("paha", weights_dir="/models/paha", device="cuda"), or
random_init=True (tests). diffusers/transformers are imported when the teacher is built, not on import.
PAHA is end-to-end audio-driven (no pose condition): hand_poses is accepted for the Teacher contract and ignored.
generate() takes an optional face_mask [H0, W0] (pixels of the reference image, nonzero = face) for the regional
guidance; without it the face region is cfg.face_box.
score() conditions (make_conditions builds them):
    "reference_latents" [B, C, h, w]   (required)
    "audio"             [B, F, L, D_a] whisper tokens per frame (absent: zeros, no audio)
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from distill.teachers.base import LatentDiffusionTeacher

from .config import PAHAConfig


class PAHATeacher(LatentDiffusionTeacher):
    name = "paha"
    config_class = PAHAConfig
    denoiser = "model"

    def __init__(self, **config):
        from . import pipeline  # diffusers/transformers load here
        self._build(pipeline, config)

    @classmethod
    def from_pretrained(cls, folder, **overrides) -> "PAHATeacher":
        """Build from a save_pretrained folder: its saved config, with overrides (device, steps, ...)."""
        from .checkpoint import read_config
        return cls(**{**read_config(folder), **overrides, "weights_dir": str(folder), "random_init": False})

    def save_pretrained(self, folder) -> None:
        """Write config.json + model.safetensors; make_teacher("paha", weights_dir=folder, ...) loads them."""
        self.components.save_pretrained(folder)

    # --- video -----------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def make_conditions(self, reference_image, audio: Tensor, face_mask=None) -> dict:
        """Check inputs -> {"reference_latents", "audio", "face_mask" [1, T, h, w]} for T = S // 640 frames."""
        cfg, p = self.config, self._pipe
        num_frames, ref, tokens = self._reference_and_audio(reference_image, audio)
        if face_mask is None:
            mask = p.face_mask_from_box(cfg.face_box, num_frames, cfg.latent_hw, self.device)
        else:
            mask = p.face_mask_from_image(face_mask, num_frames, cfg.latent_hw, self.device)
        return {"reference_latents": p.encode_images(self.components, ref), "audio": tokens,
                "face_mask": mask.to(self.dtype)}

    def generate(self, reference_image, audio: Tensor, hand_poses: Tensor | None = None, seed: int = 0,
                 face_mask=None) -> np.ndarray:
        """-> frames [T, height, width, 3] uint8 at 25 fps, T = S // 640 (hand_poses ignored: audio-only model)."""
        cond = self.make_conditions(reference_image, audio, face_mask)
        inputs = self._pipe.SampleInputs(cond["reference_latents"], cond["audio"], cond["face_mask"])
        latents = self._pipe.sample(self.components, inputs, torch.Generator().manual_seed(int(seed)))
        return self._pipe.latents_to_frames(self.components, latents)

    # --- diffusion access (score distillation) ----------------------------------------------------------------------
    def score(self, noisy_latents: Tensor, timestep: Tensor, conditions: dict) -> Tensor:
        """Predicted noise eps for noisy video latents [B, C, F, h, w] (or one frame [B, C, h, w]) at `timestep`;
        the reference latent is stacked in front as the clean frame 0 (UniVDM)."""
        single = noisy_latents.dim() == 4
        x = noisy_latents[:, :, None] if single else noisy_latents
        if x.dim() != 5:
            raise ValueError(f"noisy_latents: expected [B, C, F, h, w] or [B, C, h, w], got {list(x.shape)}")
        if "reference_latents" not in conditions:
            raise ValueError("conditions: 'reference_latents' [B, C, h, w] is required (make_conditions builds it)")
        b, _, f = x.shape[:3]
        ref = conditions["reference_latents"].to(x.dtype)
        audio = conditions.get("audio")
        if audio is not None and audio.shape[:2] != (b, f):
            raise ValueError(f"conditions: audio {list(audio.shape)} must match noisy_latents' batch and frames "
                             f"{[b, f]}")
        t = torch.as_tensor(timestep, device=x.device).reshape(-1).expand(b)
        eps = self.components.model(ref, x, t, None if audio is None else audio.to(x.dtype))
        return eps[:, :, 0] if single else eps
