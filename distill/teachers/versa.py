"""The VersaAnimator-style teacher (registered as "versa_animator"): reference photo + speech (+ a text
command) -> video, with the body moved by motion tokens.

generate(): the face (lips, blinks, head sway) comes from the procedural rig (engine.motion.procedural), and the body
slots from the gesture prior (engine.motion.versa): motion tokens sampled from the audio and the command, window by
window, decoded by the VQ-VAE. The photo is warped by the procedural teacher's mesh (PhotoRig), so no video
diffusion runs: VersaAnimator's own pose-to-video stage has no weights here. poses() gives the token2pose
reading of the same tokens: 2D body poses per frame.
Config (strict keys): prior_dir ("" = the bundled models/versa), command, max_side, steps.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from distill.teachers.base import Teacher, check_inputs
from distill.teachers.procedural import ProceduralTeacher
from engine.audio.features import audio_features
from engine.config import from_dict
from engine.motion.procedural import ProceduralMotion
from engine.motion.versa.commands import BODY_SLOTS, text_features
from engine.motion.versa.prior import DEFAULT_DIR, GesturePrior


@dataclass
class VersaAnimatorConfig:
    prior_dir: str = ""              # a gesture prior folder (python -m distill.versa); "" = models/versa
    command: str = ""                # a text command held over the whole clip ("" = speech-driven gestures only)
    max_side: int = 512              # the photo is downscaled to at most this (as the procedural teacher)
    steps: int = 4                   # MaskGIT decoding steps per window


class VersaAnimatorTeacher(Teacher):
    name = "versa_animator"
    is_diffusion = False

    def __init__(self, **config):
        self.config = c = from_dict(VersaAnimatorConfig, config, "versa_animator teacher config")
        text_features(c.command)
        folder = Path(c.prior_dir) if c.prior_dir else DEFAULT_DIR
        self.prior = GesturePrior.from_pretrained(folder)
        self.prior.steps = c.steps
        self.rig_teacher = ProceduralTeacher(max_side=c.max_side)

    def _tokens(self, mel: Tensor) -> Tensor:
        """mel [T, n_mels] -> tokens [1, N] covering T (windows of the prior's length; the last one padded)."""
        l, W = self.prior.vqvae.config.frames_per_token, self.prior.window
        T = mel.shape[0]
        padded = torch.cat([mel, mel[-1:].expand((-T) % W, -1)]) if T % W else mel
        text = text_features(self.config.command)[None]
        out = [self.prior.tokens.sample(W // l, padded[s:s + W][None], text, self.prior.steps)
               for s in range(0, padded.shape[0], W)]
        return torch.cat(out, 1)

    @torch.no_grad()
    def body_motion(self, audio: Tensor) -> Tensor:
        """audio [S] (16 kHz) -> body-slot motion [T, 64, 3] from the tokens of audio + command."""
        mel, _ = audio_features(audio)
        tokens = self._tokens(mel)
        return self.prior.vqvae.decode(tokens)[0, : mel.shape[0]].reshape(mel.shape[0], -1, 3)

    @torch.no_grad()
    def poses(self, audio: Tensor) -> Tensor:
        """audio [S] -> token2pose 2D body poses [T, 64, 2] (face units, displacement from rest)."""
        if self.prior.pose_bank is None:
            raise ValueError("poses: this gesture prior has no pose_bank/")
        mel, _ = audio_features(audio)
        return self.prior.pose_bank(self._tokens(mel))[0, : mel.shape[0]]

    def generate(self, reference_image, audio: Tensor, hand_poses: Tensor | None = None, seed: int = 0) -> np.ndarray:
        """-> frames [T, H, W, 3] uint8 at 25 fps, T = S // 640. hand_poses is ignored (the tokens move the hands)."""
        image, audio = check_inputs(reference_image, audio)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"seed: expected an int, got {seed!r}")
        rig = self.rig_teacher.prepare(image)
        mel, rms = audio_features(audio)
        motion = ProceduralMotion(rig.rest_units, rig.present, self.rig_teacher.config.motion(), int(seed))(mel, rms)
        motion[:, BODY_SLOTS] = self.body_motion(audio) * rig.present[BODY_SLOTS, None]
        return rig.render_clip(motion)
