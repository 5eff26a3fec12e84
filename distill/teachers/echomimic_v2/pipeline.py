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
from diffusers import AutoencoderKL, DDIMScheduler
from torch import Tensor, nn

from . import checkpoint as ckpt
from .audio import WhisperAudioFeatures
from .pose import PoseEncoder, make_pose_encoder
from .reference import build_reference_unet, check_pairing, reference_tokens
from .unet3d import DenoisingUNet3D

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class Components:
    cfg: object
    vae: AutoencoderKL
    reference_unet: nn.Module
    denoiser: DenoisingUNet3D
    pose_encoder: PoseEncoder
    audio: WhisperAudioFeatures

    def modules(self) -> dict[str, nn.Module]:
        return {"vae": self.vae, "reference_unet": self.reference_unet, "denoiser": self.denoiser,
                "pose_encoder": self.pose_encoder, "audio": self.audio}

    def scheduler(self) -> DDIMScheduler:
        return DDIMScheduler(**self.cfg.scheduler_kwargs())


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
        ckpt.load_strict(reference_unet, ckpt.load_file_state(files["reference_unet"]), "reference_unet.pth")
        ckpt.load_strict(pose_encoder, ckpt.load_file_state(files["pose_encoder"]), "pose_encoder.pth")
        ckpt.load_denoiser(denoiser, ckpt.load_file_state(files["sd_unet_weights"]),
                           ckpt.load_file_state(files["motion_module"]), ckpt.load_file_state(files["denoising_unet"]))
        ckpt.load_whisper(audio, files["whisper"], cfg)
    comp = Components(cfg, vae, reference_unet, denoiser, pose_encoder, audio)
    for m in comp.modules().values():
        m.to(cfg.device)
        if DTYPES[cfg.dtype] != torch.float32:
            m.to(DTYPES[cfg.dtype])
    return comp


# --- inputs ------------------------------------------------------------------------------------------------------
def image_to_tensor(image: np.ndarray, width: int, height: int, device, dtype) -> Tensor:
    """uint8 [H0, W0, 3] -> [1, 3, height, width] in [-1, 1] (bicubic, antialiased; the released code resizes
    with PIL before VaeImageProcessor, which is not bit-identical)."""
    x = torch.from_numpy(np.ascontiguousarray(image)).to(device=device, dtype=torch.float32).permute(2, 0, 1)[None]
    x = F.interpolate(x / 255.0, size=(height, width), mode="bicubic", antialias=True, align_corners=False)
    return (x.clamp(0, 1) * 2 - 1).to(dtype)


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


@torch.no_grad()
def encode_images(comp: Components, images: Tensor) -> Tensor:
    """images [B, 3, H, W] in [-1, 1] -> latents [B, 4, H/8, W/8] (posterior mean * scaling, as the released code)."""
    return encode_images_grad(comp, images)


def encode_images_grad(comp: Components, images: Tensor) -> Tensor:
    vae = comp.vae
    return vae.encode(images.to(vae.dtype)).latent_dist.mean * comp.cfg.vae_scaling_factor


def decode_latents(comp: Components, latents: Tensor) -> Tensor:
    """latents [B, 4, h, w] -> images [B, 3, H, W] in [-1, 1] (not clamped; differentiable)."""
    vae = comp.vae
    return vae.decode(latents.to(vae.dtype) / comp.cfg.vae_scaling_factor).sample


# --- sampling ----------------------------------------------------------------------------------------------------
def context_windows(num_frames: int, size: int = 12, overlap: int = 3, shift: int = 0) -> list[list[int]]:
    """Frame windows covering [0, num_frames): starts 0, size-overlap, ... (wrapping), all shifted by `shift`."""
    if num_frames <= size:
        return [list(range(num_frames))]
    return [[(j + k + shift) % num_frames for k in range(size)] for j in range(0, num_frames, size - overlap)]


@dataclass
class SampleInputs:
    ref_latents: Tensor            # [1, 4, h, w]
    audio: Tensor                  # [1, F, L, D_a]
    pose: Tensor                   # [1, 3, F, H, W] rendered pose maps in [0, 1]


def start_sampling(comp, steps: int, size: tuple[int, int, int], generator: torch.Generator, dtype, device,
                   clamp: float | None = None) -> tuple[DDIMScheduler, Tensor]:
    """The components' scheduler set to `steps`, and the initial latents [1, C, F, h, w] for size (F, h, w):
    noise drawn on the CPU from `generator` (the same on every device), clamped to +-clamp when given,
    scaled by the scheduler's init_noise_sigma."""
    scheduler = comp.scheduler()
    scheduler.set_timesteps(steps, device=device)
    noise = torch.randn((1, comp.cfg.latent_channels, *size), generator=generator, device="cpu",
                        dtype=torch.float32)
    if clamp is not None:
        noise = noise.clamp(-clamp, clamp)
    return scheduler, noise.to(device, dtype) * scheduler.init_noise_sigma


@torch.no_grad()
def sample(comp: Components, inputs: SampleInputs, steps: int, guidance: float, generator: torch.Generator,
           context_frames: int = 12, context_overlap: int = 3) -> Tensor:
    """-> latents [1, 4, F, h, w] (steps as in the module docstring)."""
    den = comp.denoiser
    b, f = inputs.audio.shape[:2]
    h, w = inputs.ref_latents.shape[-2:]
    if b != 1 or inputs.pose.shape[2] != f:
        raise ValueError(f"inputs: expected batch 1 and {f} frames of pose, got audio {list(inputs.audio.shape)}, "
                         f"pose {list(inputs.pose.shape)}")
    dtype, device = inputs.ref_latents.dtype, inputs.ref_latents.device
    # 1-2. scheduler, initial noise
    scheduler, latents = start_sampling(comp, steps, (f, h, w), generator, dtype, device, clamp=1.5)
    # 3. reference tokens, pose features
    reference = reference_tokens(comp.reference_unet, inputs.ref_latents)
    pose = comp.pose_encoder(inputs.pose.to(dtype))
    zeros_audio = torch.zeros_like(inputs.audio)
    # 4-6. denoise
    for i, t in enumerate(scheduler.timesteps):
        pred = torch.zeros_like(latents)
        count = torch.zeros(f, device=device, dtype=dtype)
        for window in context_windows(f, context_frames, context_overlap, shift=3 * i):
            idx = torch.tensor(window, device=device)
            x = scheduler.scale_model_input(latents[:, :, idx], t)
            out = den(x, t, audio=inputs.audio[:, idx], pose_features=pose[:, :, idx], reference=reference)
            if guidance > 1.0:
                unc = den(x, t, audio=zeros_audio[:, idx], pose_features=None, reference=None)
                out = unc + guidance * (out - unc)
            pred.index_add_(2, idx, out)
            count.index_add_(0, idx, torch.ones(len(window), device=device, dtype=dtype))
        pred = pred / count.view(1, 1, f, 1, 1)
        latents = scheduler.step(pred, t, latents, eta=0.0, generator=generator).prev_sample
    return latents


@torch.no_grad()
def latents_to_frames(comp: Components, latents: Tensor) -> np.ndarray:
    """latents [1, 4, F, h, w] -> uint8 frames [F, H, W, 3] (decoded one frame at a time)."""
    frames = []
    for k in range(latents.shape[2]):
        img = decode_latents(comp, latents[:, :, k])[0]
        frames.append(((img.float().clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu())
    return torch.stack(frames).numpy()
