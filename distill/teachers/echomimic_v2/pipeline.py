"""EchoMimicV2 components and sampling (the released EchoMimicV2Pipeline.__call__, in numbered steps).

Sampling (antgroup/echomimic_v2 src/pipelines/pipeline_echomimicv2.py, context.py):
1. DDIM (v-prediction, zero-SNR, trailing) with 30 steps and cfg 2.5, or the *_acc weights with 6 steps, cfg 1.0.
2. initial noise: N(0, 1) clamped to [-1.5, 1.5] (prepare_latents_smooth), times init_noise_sigma.
3. the ReferenceNet runs once on the reference latent (VAE mean * 0.18215) at t = 0; its tokens are reused.
4. at step i the video is covered by windows of 12 frames overlapping by 3 ("uniform" context schedule: starts 0,
   9, 18, ... with wrap-around), all shifted by 3*i frames; predictions are summed and divided by the number of
   windows covering each frame.
5. classifier-free guidance when cfg > 1: the unconditional branch has zero audio, zero pose features and no
   reference attention (the uc_mask rows of mutual_self_attention.py attend to themselves only).
6. DDIM step (eta 0) on the whole video; then the VAE decodes frame by frame.
The accelerated pipeline (pipeline_echomimicv2_acc.py) only differs in weights, steps and cfg: its per-window
re-parametrisation (step_func.py: x0 = a_t x_t - b_t v, then a "pseudo velocity" towards t = -1, where a = 1, b = 0)
gives back (a_t x_t - x0) / b_t = v exactly, so one loop serves both.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from torch import Tensor, nn

from distill.teachers.sd_video.audio import WhisperAudioFeatures
from distill.teachers.sd_video.components import VideoComponents, load_strict
from distill.teachers.sd_video.images import (decode_latents, encode_images, encode_images_grad, image_to_tensor,
                                              latents_to_frames)
from distill.teachers.sd_video.pose import PoseEncoder
from distill.teachers.sd_video.reference import build_reference_unet, check_pairing, reference_tokens
from distill.teachers.sd_video.sampling import check_clip, context_windows, denoise_step, start_sampling
from distill.teachers.sd_video.unet3d import DenoisingUNet3D

from . import checkpoint as ckpt

# with the TeacherPipeline functions (distill/teachers/base.py); the image/latent ones are sd_video/images.py's
__all__ = ["Components", "SampleInputs", "build_components", "decode_latents", "encode_images", "encode_images_grad",
           "image_to_tensor", "latents_to_frames", "make_pose_encoder", "pose_images", "reference_tokens", "sample"]


@dataclass
class Components(VideoComponents):
    reference_unet: nn.Module
    denoiser: DenoisingUNet3D
    pose_encoder: PoseEncoder
    audio: WhisperAudioFeatures


def make_pose_encoder(cfg) -> PoseEncoder:
    """The released PoseEncoder: pose images [B, 3, F, H, W] -> features [B, C0, F, H/8, W/8] (zero at init)."""
    return PoseEncoder(cfg.block_out_channels[0], conditioning_channels=cfg.pose_channels,
                       block_out_channels=cfg.pose_block_out_channels)


def build_components(cfg) -> Components:
    """All modules for cfg: the released weights from cfg.weights_dir, or random ones when cfg.random_init."""
    # 1. where the weights come from
    if cfg.weights_dir:
        files = ckpt.check_weights_dir(cfg.weights_dir, cfg.accelerated)
    elif cfg.random_init:
        files = None
    else:
        raise ValueError("weights_dir: required (a folder in the EchoMimicV2 pretrained_weights layout); set "
                         "random_init=True for a randomly initialised model")
    # 2. modules
    if files is None:
        vae = AutoencoderKL(**cfg.vae_kwargs())
        reference_unet = build_reference_unet(cfg)
    else:
        vae = AutoencoderKL.from_pretrained(str(files["vae"]), local_files_only=True)
        unet_cfg = ckpt.read_unet_config(files["sd_unet"])
        ckpt.check_unet_config(unet_cfg, cfg)
        reference_unet = build_reference_unet(cfg, unet_cfg)
    denoiser = DenoisingUNet3D(cfg)
    pose_encoder = make_pose_encoder(cfg)
    audio = WhisperAudioFeatures(cfg)
    check_pairing(reference_unet, denoiser)
    # 3. released weights
    if files is not None:
        load_strict(reference_unet, ckpt.load_file_state(files["reference_unet"]), "reference_unet.pth")
        load_strict(pose_encoder, ckpt.load_file_state(files["pose_encoder"]), "pose_encoder.pth")
        ckpt.load_denoiser(denoiser, ckpt.load_file_state(files["sd_unet_weights"]),
                           ckpt.load_file_state(files["motion_module"]), ckpt.load_file_state(files["denoising_unet"]))
        ckpt.load_whisper(audio, files["whisper"], cfg)
    comp = Components(cfg, vae, reference_unet, denoiser, pose_encoder, audio)
    comp.place()
    return comp


# --- inputs ------------------------------------------------------------------------------------------------------
def pose_images(hand_poses: Tensor | np.ndarray | None, num_frames: int, width: int, height: int, device,
                dtype) -> Tensor:
    """Rendered pose maps [T, H0, W0, 3] (uint8, or float in [0, 1]) or None (blank) -> [1, 3, T, height, width]."""
    if hand_poses is None:
        return torch.zeros(1, 3, num_frames, height, width, device=device, dtype=dtype)
    p = hand_poses if isinstance(hand_poses, Tensor) else torch.from_numpy(np.ascontiguousarray(hand_poses))
    if p.dim() != 4 or p.shape[-1] != 3 or p.shape[0] < num_frames:
        raise ValueError(f"hand_poses: expected rendered pose maps [T >= {num_frames}, H, W, 3], got {list(p.shape)}")
    scale = 1.0 if torch.is_floating_point(p) else 255.0
    p = p[:num_frames].to(device=device, dtype=torch.float32) / scale
    p = F.interpolate(p.permute(0, 3, 1, 2), size=(height, width), mode="bilinear", antialias=True)
    return p.clamp(0, 1).permute(1, 0, 2, 3)[None].to(dtype)


# --- sampling ----------------------------------------------------------------------------------------------------
@dataclass
class SampleInputs:
    ref_latents: Tensor            # [1, 4, h, w]
    audio: Tensor                  # [1, F, L, D_a]
    pose: Tensor                   # [1, 3, F, H, W] rendered pose maps in [0, 1]


@torch.no_grad()
def sample(comp: Components, inputs: SampleInputs, steps: int, guidance: float, generator: torch.Generator,
           context_frames: int = 12, context_overlap: int = 3) -> Tensor:
    """-> latents [1, 4, F, h, w] (steps as in the module docstring)."""
    den = comp.denoiser
    f = check_clip(inputs.audio, inputs.pose, "pose", frame_dim=2)
    # 1-2. scheduler, initial noise
    scheduler, latents = start_sampling(comp, steps, f, inputs.ref_latents, generator, clamp=1.5)
    # 3. reference tokens, pose features
    reference = reference_tokens(comp.reference_unet, inputs.ref_latents)
    pose = comp.pose_encoder(inputs.pose.to(latents.dtype))
    zeros_audio = torch.zeros_like(inputs.audio)

    def predict(x: Tensor, idx: Tensor, t: Tensor) -> Tensor:
        out = den(x, t, audio=inputs.audio[:, idx], pose_features=pose[:, :, idx], reference=reference)
        if guidance > 1.0:
            unc = den(x, t, audio=zeros_audio[:, idx], pose_features=None, reference=None)
            out = unc + guidance * (out - unc)
        return out
    # 4-6. denoise
    for i, t in enumerate(scheduler.timesteps):
        windows = context_windows(f, context_frames, context_overlap, shift=3 * i)
        latents = denoise_step(scheduler, latents, t, windows, predict, generator)
    return latents
