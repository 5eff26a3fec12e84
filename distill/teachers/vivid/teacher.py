"""The VividAnimator teacher (registered as "vivid_animator"): reference photo + speech (+ hand poses) -> video.

Config: VividAnimatorConfig keys (strict), e.g. make_teacher("vivid_animator", weights_dir="/models/vivid"). No
weights were released: weights_dir is a folder written by pipeline.save_components; random_init=True builds a
random model (tests). diffusers/transformers are imported when the teacher is built, not on import.
hand_poses: hand keypoints [T, 2, 21, 2] (left, right; x, y as frame fractions; NaN = unseen; hands.py), or None
(no hand heatmaps, no codebook attention). Calibrate a driving body first with pct.calibrate_pose.
score() conditions (make_conditions builds them):
    "reference_latents"    [B, 4, h, w]      (required)
    "audio"                [B, F, T, D_a]    W_a (zeros: no audio)
    "hand_heatmaps"        [B, 2, F, H, W]   (zeros: no hands)
    "head_mask"            [B, F, h, w]      (default: everywhere)
    "hand_tokens"          [B, K, D_code]    F_h, with "hand_mask" [B, F, h, w] (absent / None: no codebook attention)
    "audio_guidance_scale", "image_guidance_scale"   floats (default 1: no classifier-free guidance)
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from distill.teachers.base import LatentDiffusionTeacher

from .config import VividAnimatorConfig


class VividAnimatorTeacher(LatentDiffusionTeacher):
    name = "vivid_animator"
    config_class = VividAnimatorConfig

    def __init__(self, **config):
        from . import pipeline  # diffusers/transformers load here
        self._build(pipeline, config)

    # --- video -----------------------------------------------------------------------------------------------------
    def _inputs(self, reference_image, audio: Tensor, hand_poses=None, reference_hands=None, head_box=None):
        _, ref, tokens = self._reference_and_audio(reference_image, audio)
        return self._pipe.prepare_conditions(self.components, ref, tokens, hand_poses, reference_hands, head_box)

    @torch.no_grad()
    def make_conditions(self, reference_image, audio: Tensor, hand_poses=None, reference_hands=None,
                        head_box=None) -> dict:
        """Check inputs; -> score() conditions for the T = S // 640 frames of `audio` (batch 1)."""
        return self._inputs(reference_image, audio, hand_poses, reference_hands, head_box).as_dict()

    @torch.no_grad()
    def generate(self, reference_image, audio: Tensor, hand_poses=None, seed: int = 0) -> np.ndarray:
        """-> frames [T, height, width, 3] uint8 at 25 fps, T = S // 640."""
        inputs = self._inputs(reference_image, audio, hand_poses)
        cfg = self.config
        generator = torch.Generator().manual_seed(int(seed))
        latents = self._pipe.sample(self.components, inputs, cfg.num_inference_steps, cfg.audio_guidance_scale,
                                    cfg.image_guidance_scale, generator, cfg.context_frames, cfg.context_overlap)
        return self._pipe.latents_to_frames(self.components, latents)

    # --- diffusion access (score distillation) ----------------------------------------------------------------------
    def score(self, noisy_latents: Tensor, timestep: Tensor, conditions: dict) -> Tensor:
        """Predicted noise eps for noisy video latents [B, 4, F, h, w] (or one frame [B, 4, h, w]) at `timestep`."""
        single = noisy_latents.dim() == 4
        x = noisy_latents[:, :, None] if single else noisy_latents
        if x.dim() != 5:
            raise ValueError(f"noisy_latents: expected [B, 4, F, h, w] or [B, 4, h, w], got {list(x.shape)}")
        b, _, f, h, w = x.shape
        if "reference_latents" not in conditions:
            raise ValueError("conditions: 'reference_latents' [B, 4, h, w] is required (make_conditions builds it)")
        cfg, comp = self.config, self.components
        ref_lat = conditions["reference_latents"].to(x.dtype)
        audio = conditions.get("audio")
        audio = x.new_zeros(b, f, 1, cfg.audio_dim) if audio is None else audio.to(x.dtype)
        heat = conditions.get("hand_heatmaps")
        heat = x.new_zeros(b, 2, f, h * cfg.vae_factor, w * cfg.vae_factor) if heat is None else heat.to(x.dtype)
        if audio.shape[:2] != (b, f) or heat.shape[:3] != (b, 2, f) or ref_lat.shape[0] != b:
            raise ValueError(f"conditions: batch/frames must match noisy_latents {list(x.shape)}: audio "
                             f"{list(audio.shape)}, hand_heatmaps {list(heat.shape)}, reference "
                             f"{list(ref_lat.shape)}")
        opt = {k: (None if conditions.get(k) is None else conditions[k].to(x.dtype))
               for k in ("hand_tokens", "hand_mask", "head_mask")}
        t = torch.as_tensor(timestep, device=x.device).reshape(-1).expand(b)
        cond = {"audio": audio, "hand_features": comp.hand_encoder(heat), "reference":
                self._pipe.reference_tokens(comp.reference_unet, ref_lat), **opt}
        pred = self._pipe.guided_prediction(comp.denoiser, x, t, cond,
                                            float(conditions.get("audio_guidance_scale", 1.0)),
                                            float(conditions.get("image_guidance_scale", 1.0)))
        eps = self._pipe.to_epsilon(pred, x, t, comp.scheduler().alphas_cumprod, cfg.prediction_type)
        return eps[:, :, 0] if single else eps
