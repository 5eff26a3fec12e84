"""Images in and out of the SD VAE's latent space, as every SD-1.x video teacher here does it (the released
EchoMimicV2 pipeline's conventions):
    image_to_tensor   uint8 photo [H0, W0, 3] -> [1, 3, H, W] in [-1, 1]
    encode_images     [B, 3, H, W] in [-1, 1] -> latents [B, C, H/f, W/f]: the posterior mean x vae_scaling_factor
    decode_latents    latents [B, C, h, w] -> [B, 3, h*f, w*f] in [-1, 1] (not clamped)
    latents_to_frames video latents [1, C, F, h, w] -> uint8 frames [F, H, W, 3], decoded one frame at a time
`comp` is a teacher's components (components.py): its `vae` and `cfg.vae_scaling_factor` are read.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def image_to_tensor(image: np.ndarray, width: int, height: int, device, dtype) -> Tensor:
    """uint8 [H0, W0, 3] -> [1, 3, height, width] in [-1, 1] (bicubic, antialiased; the released code resizes
    with PIL before VaeImageProcessor, which is not bit-identical)."""
    x = torch.from_numpy(np.ascontiguousarray(image)).to(device=device, dtype=torch.float32).permute(2, 0, 1)[None]
    x = F.interpolate(x / 255.0, size=(height, width), mode="bicubic", antialias=True, align_corners=False)
    return (x.clamp(0, 1) * 2 - 1).to(dtype)


@torch.no_grad()
def encode_images(comp, images: Tensor) -> Tensor:
    """images [B, 3, H, W] in [-1, 1] -> latents [B, 4, H/8, W/8] (posterior mean * scaling, as the released code)."""
    return encode_images_grad(comp, images)


def encode_images_grad(comp, images: Tensor) -> Tensor:
    """As encode_images, differentiable w.r.t. images."""
    vae = comp.vae
    return vae.encode(images.to(vae.dtype)).latent_dist.mean * comp.cfg.vae_scaling_factor


def decode_latents(comp, latents: Tensor) -> Tensor:
    """latents [B, 4, h, w] -> images [B, 3, H, W] in [-1, 1] (not clamped; differentiable)."""
    vae = comp.vae
    return vae.decode(latents.to(vae.dtype) / comp.cfg.vae_scaling_factor).sample


@torch.no_grad()
def latents_to_frames(comp, latents: Tensor) -> np.ndarray:
    """latents [1, 4, F, h, w] -> uint8 frames [F, H, W, 3] (decoded one frame at a time)."""
    frames = []
    for k in range(latents.shape[2]):
        img = decode_latents(comp, latents[:, :, k])[0]
        frames.append(((img.float().clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu())
    return torch.stack(frames).numpy()
