"""The Teacher interface: what the distillation (distill/) asks of an audio-driven talking-video model.

Every teacher makes videos:
    generate(reference_image [H, W, 3] uint8 or float, audio [S] at 16 kHz, hand_poses=None, seed=0)
        -> frames [T, H', W', 3] uint8 at 25 fps, T = S // 640 (one frame per 40 ms of audio)
A diffusion teacher also exposes its denoiser, for score distillation (VSD, distill/losses):
    encode(images [B, 3, H, W] in [-1, 1]) -> latents;  decode(latents) -> images
    score(noisy_latents, timestep, conditions) -> eps (the predicted noise)
Teachers are built by name (distill/teachers/registry.py: `make_teacher(name, **config)`); each one's YAML
config lives in configs/teachers/<name>.yaml. diffusers/transformers are imported only by modules under distill/teachers/.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

FPS, SAMPLE_RATE = 25, 16000


class Teacher(ABC):
    name: str = ""
    is_diffusion: bool = False

    @abstractmethod
    def generate(self, reference_image, audio: Tensor, hand_poses: Tensor | None = None, seed: int = 0) -> np.ndarray:
        """-> frames [T, H, W, 3] uint8 at 25 fps for audio [S] (16 kHz mono float)."""

    def encode(self, images: Tensor) -> Tensor:
        raise NotImplementedError(f"teacher {self.name!r} is not a latent diffusion model: no encode()")

    def decode(self, latents: Tensor) -> Tensor:
        raise NotImplementedError(f"teacher {self.name!r} is not a latent diffusion model: no decode()")

    def score(self, noisy_latents: Tensor, timestep: Tensor, conditions: dict) -> Tensor:
        raise NotImplementedError(f"teacher {self.name!r} has no score function (it is not a diffusion model)")


class TeacherComponents(Protocol):
    """What LatentDiffusionTeacher reads of the components its pipeline builds (each teacher's `Components`, on
    sd_video/components.py's VideoComponents); the denoiser is read by the attribute name in `denoiser`."""
    audio: Callable[[Tensor, int], Tensor]     # audio [S] at 16 kHz, num_frames T -> tokens [T, L, D_a]

    def modules(self) -> dict[str, torch.nn.Module]:
        """{name: module} of every network (set to eval mode and frozen by the teacher)."""


class TeacherPipeline(Protocol):
    """What a latent-diffusion teacher asks of its pipeline module (echomimic_v2, vivid, paha: pipeline.py, which
    takes the image/latent functions from sd_video/images.py); a module satisfies it by having these functions.
    Each teacher also calls its own sampling and condition functions there (`sample`, `SampleInputs`, ...), whose
    signatures differ from teacher to teacher, so they are not part of this protocol."""

    def build_components(self, config) -> TeacherComponents:
        """The teacher's modules for its config: weights from config.weights_dir, or random with random_init."""

    def image_to_tensor(self, image: np.ndarray, width: int, height: int, device: torch.device,
                        dtype: torch.dtype) -> Tensor:
        """uint8 image [H0, W0, 3] -> [1, 3, height, width] in [-1, 1] on device, in dtype."""

    def encode_images(self, components: TeacherComponents, images: Tensor) -> Tensor:
        """images [B, 3, H, W] in [-1, 1] -> latents [B, C, H/f, W/f] (no autograd)."""

    def encode_images_grad(self, components: TeacherComponents, images: Tensor) -> Tensor:
        """As encode_images, differentiable w.r.t. images."""

    def decode_latents(self, components: TeacherComponents, latents: Tensor) -> Tensor:
        """latents [B, C, h, w] -> images [B, 3, h*f, w*f] in [-1, 1] (not clamped; differentiable)."""

    def latents_to_frames(self, components: TeacherComponents, latents: Tensor) -> np.ndarray:
        """video latents [1, C, F, h, w] -> uint8 frames [F, H, W, 3]."""


class LatentDiffusionTeacher(Teacher):
    """The shared set-up of the latent-diffusion teachers (echomimic_v2, vivid_animator, paha): a strict config
    of `config_class`, the 25 fps contract, and frozen eval-mode components built by the teacher's pipeline
    module (which the subclass imports in its __init__, so diffusers loads only when a teacher is built).
    `denoiser` names the component whose parameters give the device and dtype."""
    is_diffusion = True
    config_class: type
    denoiser: str = "denoiser"

    def _build(self, pipeline: TeacherPipeline, config: dict) -> None:
        from engine.config import from_dict
        self.config = from_dict(self.config_class, config, f"{self.name} teacher config")
        if self.config.fps != FPS:
            raise ValueError(f"fps: the Teacher contract is {FPS} fps, got {self.config.fps}")
        self._pipe = pipeline
        self.components = pipeline.build_components(self.config)
        for m in self.components.modules().values():
            m.eval().requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return next(getattr(self.components, self.denoiser).parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(getattr(self.components, self.denoiser).parameters()).dtype

    @torch.no_grad()
    def _reference_and_audio(self, reference_image, audio) -> tuple[int, Tensor, Tensor]:
        """Checked inputs -> (T = S // 640 frames, the reference image [1, 3, H, W] at the config's size on the
        teacher's device and dtype, the audio tokens [1, T, ...] from the teacher's audio model)."""
        img, a = check_inputs(reference_image, audio)
        num_frames = a.numel() * FPS // SAMPLE_RATE
        ref = self._pipe.image_to_tensor(img, self.config.width, self.config.height, self.device, self.dtype)
        tokens = self.components.audio(a.to(self.device), num_frames)[None].to(self.dtype)
        return num_frames, ref, tokens

    def encode(self, images: Tensor) -> Tensor:
        """images [B, 3, H, W] in [-1, 1] -> latents [B, C, H/f, W/f] (differentiable w.r.t. images)."""
        return self._pipe.encode_images_grad(self.components, images)

    def decode(self, latents: Tensor) -> Tensor:
        """latents [B, C, h, w] -> images [B, 3, H, W] in [-1, 1] (differentiable)."""
        return self._pipe.decode_latents(self.components, latents)


def check_inputs(reference_image, audio) -> tuple[np.ndarray, Tensor]:
    """reference_image [H, W, 3] (uint8, or float in [0, 1]) and audio [S] float -> (uint8 array, float tensor)."""
    img = reference_image.detach().cpu().numpy() if isinstance(reference_image, Tensor) else np.asarray(reference_image)
    if img.ndim != 3 or img.shape[2] != 3 or min(img.shape[:2]) < 32:
        raise ValueError(f"reference_image: expected [H, W, 3] with H, W >= 32, got {list(img.shape)}")
    if img.dtype != np.uint8:
        img = (np.clip(img.astype(np.float64), 0, 1) * 255 + 0.5).astype(np.uint8)
    a = torch.as_tensor(audio, dtype=torch.float32)
    if a.dim() != 1 or a.numel() < 640:
        raise ValueError(f"audio: expected [S] mono at 16 kHz with at least one 40 ms frame, got {list(a.shape)}")
    if not bool(torch.isfinite(a).all()):
        raise ValueError("audio: contains NaN or inf")
    return img, a
