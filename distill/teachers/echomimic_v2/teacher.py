"""The EchoMimicV2 teacher (registered as "echomimic_v2"): reference photo + speech (+ hand poses) -> video.

Config: EchoMimicV2Config keys (strict), e.g. make_teacher("echomimic_v2", weights_dir="/models/EchoMimicV2",
device="cuda", dtype="float16"). diffusers/transformers are imported when the teacher is built, not on import.
hand_poses: rendered pose maps [T, H, W, 3] (the released model's condition: DWPose hand keypoints drawn on black,
src/utils/dwpose_util.py draw_pose_select_v2), or None for blank maps (no hands shown).
score() conditions (make_conditions builds them):
    "reference_latents" [B, 4, h, w]   (required)
    "audio"             [B, F, L, D_a] whisper tokens per frame (zeros: no audio)
    "pose"              [B, 3, F, H, W] rendered pose maps in [0, 1] (zeros: blank)
    "guidance_scale"    float (default 1: no classifier-free guidance)
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from distill.teachers.base import LatentDiffusionTeacher

from .config import EchoMimicV2Config


class EchoMimicV2Teacher(LatentDiffusionTeacher):
    name = "echomimic_v2"
    config_class = EchoMimicV2Config

    def __init__(self, **config):
        from . import pipeline  # diffusers/transformers load here
        self._build(pipeline, config)

    # --- video -----------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def make_conditions(self, reference_image, audio: Tensor, hand_poses=None) -> dict:
        """Check inputs; -> score() conditions for the T = S // 640 frames of `audio` (batch 1)."""
        cfg, p = self.config, self._pipe
        num_frames, ref, tokens = self._reference_and_audio(reference_image, audio)
        pose = p.pose_images(hand_poses, num_frames, cfg.width, cfg.height, self.device, self.dtype)
        return {"reference_latents": p.encode_images(self.components, ref), "audio": tokens, "pose": pose}

    @torch.no_grad()
    def generate(self, reference_image, audio: Tensor, hand_poses: Tensor | None = None, seed: int = 0) -> np.ndarray:
        """-> frames [T, height, width, 3] uint8 at 25 fps, T = S // 640."""
        cond = self.make_conditions(reference_image, audio, hand_poses)
        inputs = self._pipe.SampleInputs(cond["reference_latents"], cond["audio"], cond["pose"])
        generator = torch.Generator().manual_seed(int(seed))
        cfg = self.config
        latents = self._pipe.sample(self.components, inputs, cfg.steps, cfg.cfg_scale, generator,
                                    cfg.context_frames, cfg.context_overlap)
        return self._pipe.latents_to_frames(self.components, latents)

    # --- diffusion access (score distillation) ----------------------------------------------------------------------
    def score(self, noisy_latents: Tensor, timestep: Tensor, conditions: dict) -> Tensor:
        """Predicted noise eps for noisy video latents [B, 4, F, h, w] (or one frame [B, 4, h, w]) at `timestep`.

        The released model predicts v; eps = sqrt(a_t) v + sqrt(1 - a_t) x_t (a_t = alphas_cumprod[t])."""
        single = noisy_latents.dim() == 4
        x = noisy_latents[:, :, None] if single else noisy_latents
        b, _, f = x.shape[:3]
        if "reference_latents" not in conditions:
            raise ValueError("conditions: 'reference_latents' [B, 4, h, w] is required (make_conditions builds it)")
        comp = self.components
        ref_lat = conditions["reference_latents"].to(x.dtype)
        audio = conditions.get("audio")
        audio = x.new_zeros(b, f, 1, self.config.audio_dim) if audio is None else audio.to(x.dtype)
        pose = conditions.get("pose")
        if pose is None:
            pose = x.new_zeros(b, 3, f, x.shape[-2] * self.config.vae_factor, x.shape[-1] * self.config.vae_factor)
        if audio.shape[:2] != (b, f) or pose.shape[:3] != (b, 3, f) or ref_lat.shape[0] != b:
            raise ValueError(f"conditions: batch/frames must match noisy_latents {list(x.shape)}: audio "
                             f"{list(audio.shape)}, pose {list(pose.shape)}, reference {list(ref_lat.shape)}")
        t = torch.as_tensor(timestep, device=x.device).reshape(-1).expand(b)
        reference = self._pipe.reference_tokens(comp.reference_unet, ref_lat)
        v = comp.denoiser(x, t, audio=audio, pose_features=comp.pose_encoder(pose.to(x.dtype)), reference=reference)
        g = float(conditions.get("guidance_scale", 1.0))
        if g != 1.0:
            unc = comp.denoiser(x, t, audio=torch.zeros_like(audio), pose_features=None, reference=None)
            v = unc + g * (v - unc)
        ab = comp.scheduler().alphas_cumprod.to(x.device)[t.long()].view(-1, 1, 1, 1, 1).to(x.dtype)
        eps = ab.sqrt() * v + (1 - ab).sqrt() * x
        return eps[:, :, 0] if single else eps
