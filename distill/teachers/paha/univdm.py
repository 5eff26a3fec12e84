"""UniVDM: PAHA's unified video diffusion model. One 3D UNet sees the reference latent and the video latents
stacked along time (no separate ReferenceNet):

    sample [B, C, 1 + F, h, w]:  frame 0 = the clean reference latent, frames 1..F = the noisy video latents.

Only frames 1..F are denoised and supervised; frame 0 is never noised (`stack_reference` is the one place that
builds the input). The UNet is the shared SD-1.x video denoiser of distill/teachers/sd_video (DenoisingUNet3D:
resnets, spatial transformers, AnimateDiff motion modules over the 1 + F frames), with each spatial transformer
block swapped for `UnifiedTransformerBlock`:
    n = norm1(x);  x = attn1(n, keys/values = [n, n of frame 0]) + x          (reference attention, in-stream)
    x = ratio * attn2(norm2(x), audio tokens of this frame) * audio_mask + x     (audio cross-attention)
    x = ff(norm3(x)) + x
The audio tokens per frame are whisper features of frames i - m .. i + m ([B, F, (2m+1) L, D_a]); the reference
frame gets no audio (its audio mask is 0, so its attn2 output, bias included, is dropped).
Simplification (the paper does not say): all 1 + F frames share the video's timestep embedding rather than frame 0
getting t = 0; frame 0 is recognisable by its position (motion-module position encoding, no audio).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from distill.teachers.sd_video.blocks import Context, SpatialTransformerBlock
from distill.teachers.sd_video.unet3d import DenoisingUNet3D


def stack_reference(ref_latents: Tensor, video_latents: Tensor) -> Tensor:
    """ref_latents [B, C, h, w] (clean), video_latents [B, C, F, h, w] (noisy) -> [B, C, 1 + F, h, w]."""
    if ref_latents.dim() != 4 or video_latents.dim() != 5:
        raise ValueError(f"ref_latents/video_latents: expected [B, C, h, w] and [B, C, F, h, w], got "
                         f"{list(ref_latents.shape)} and {list(video_latents.shape)}")
    b, c, _, h, w = video_latents.shape
    if ref_latents.shape != (b, c, h, w):
        raise ValueError(f"ref_latents: expected {[b, c, h, w]} to match the video, got {list(ref_latents.shape)}")
    return torch.cat([ref_latents[:, :, None].to(video_latents.dtype), video_latents], dim=2)


class UnifiedTransformerBlock(SpatialTransformerBlock):
    """Spatial block whose self-attention also attends to frame 0's tokens (the reference) of the same video."""

    def forward(self, x: Tensor, ctx: Context, mask: Tensor | None) -> Tensor:
        bf, n_tok, c = x.shape
        f = ctx.num_frames
        n = self.norm1(x)
        ref = n.reshape(bf // f, f, n_tok, c)[:, :1].expand(-1, f, -1, -1).reshape(bf, n_tok, c)
        x = self.attn1(n, encoder_hidden_states=torch.cat([n, ref], dim=1)) + x
        if ctx.audio_ratio > 0:
            a = self.attn2(self.norm2(x), encoder_hidden_states=ctx.audio.to(x.dtype)) * ctx.audio_ratio
            x = x + (a if mask is None else a * mask.to(a.dtype))
        return self.ff(self.norm3(x)) + x


def _swap_blocks(unet: nn.Module) -> None:
    """Replace every SpatialTransformerBlock by a UnifiedTransformerBlock with the same parameters' shapes."""
    for module in list(unet.modules()):
        blocks = getattr(module, "transformer_blocks", None)
        if blocks is None:
            continue
        for i, old in enumerate(blocks):
            if isinstance(old, SpatialTransformerBlock) and not isinstance(old, UnifiedTransformerBlock):
                dim, heads = old.norm1.normalized_shape[0], old.attn1.heads
                new = UnifiedTransformerBlock(dim, heads, old.attn2.cross_attention_dim)
                new.path = old.path
                blocks[i] = new


class UniVDM(nn.Module):
    """eps prediction for the video frames, given the clean reference latent and per-frame audio tokens."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.unet = DenoisingUNet3D(cfg)
        _swap_blocks(self.unet)

    def _inputs(self, ref_latents: Tensor, noisy: Tensor, audio: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """-> (sample [B, C, 1+F, h, w], audio [B, 1+F, L, D] with zeros for frame 0, audio mask [B, 1+F, h, w])."""
        sample = stack_reference(ref_latents, noisy)
        b, _, f1, h, w = sample.shape
        d = self.cfg.audio_dim
        if audio is None:
            audio = sample.new_zeros(b, f1 - 1, 1, d)
        if audio.dim() != 4 or audio.shape[:2] != (b, f1 - 1) or audio.shape[-1] != d:
            raise ValueError(f"audio: expected [{b}, {f1 - 1}, L, {d}], got {list(audio.shape)}")
        audio = torch.cat([audio.new_zeros(b, 1, *audio.shape[2:]), audio], dim=1).to(sample.dtype)
        mask = sample.new_ones(b, f1, h, w)
        mask[:, 0] = 0
        return sample, audio, mask

    def forward(self, ref_latents: Tensor, noisy: Tensor, timestep: Tensor | float | int,
                audio: Tensor | None = None) -> Tensor:
        """ref_latents [B, C, h, w], noisy [B, C, F, h, w], timestep scalar or [B], audio [B, F, L, D_a] or None
        (zeros: no audio) -> predicted eps [B, C, F, h, w] for the F video frames (frame 0's output dropped)."""
        sample, audio, mask = self._inputs(ref_latents, noisy, audio)
        return self.unet(sample, timestep, audio=audio, audio_mask=mask)[:, :, 1:]

    def encoder_features(self, ref_latents: Tensor, noisy: Tensor, timestep: Tensor | float | int,
                         audio: Tensor | None = None) -> Tensor:
        """The diffusion encoder (conv_in, down blocks, mid block) -> mid-block features [B, C_mid, F, h', w'] of the
        F video frames (PCE's input). Runs the same layers as forward() up to the mid block."""
        unet = self.unet
        sample, audio, mask = self._inputs(ref_latents, noisy, audio)
        b, _, f, h, w = sample.shape
        t = torch.as_tensor(timestep, device=sample.device)
        if t.numel() not in (1, b):
            raise ValueError(f"timestep: expected a scalar or [{b}] values, got shape {list(t.shape)}")
        t = t.reshape(-1).expand(b)
        temb = unet.time_embedding(unet.time_proj(t).to(sample.dtype)).repeat_interleave(f, dim=0)
        x = unet.conv_in(sample.permute(0, 2, 1, 3, 4).reshape(b * f, -1, h, w))
        ctx = Context(temb, f, audio.reshape(b * f, *audio.shape[2:]), None, mask.reshape(b * f, 1, h, w),
                      self.cfg.audio_feature_ratio)
        for block in unet.down_blocks:
            x, _ = block(x, ctx)
        x = unet.mid_block(x, ctx)
        return x.reshape(b, f, *x.shape[1:]).permute(0, 2, 1, 3, 4)[:, :, 1:]
