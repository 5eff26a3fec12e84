"""The denoiser's blocks: SD-1.x spatial layers on frames folded into the batch, plus a motion module after each.

Names follow the released code so its checkpoints load unchanged (antgroup/echomimic_v2 src/models/
unet_3d_blocks.py, transformer_3d.py, attention.py, resnet.py):
    {down,up}_blocks.{i}.{resnets, attentions, motion_modules}.{j} ; down: downsamplers.0.conv ; up: upsamplers.0.conv
    mid_block.{resnets.0, attentions.0, motion_modules.0, resnets.1}
    attentions.{j}.{norm, proj_in (1x1 conv), transformer_blocks.0.{attn1, norm1, attn2, norm2, ff, norm3}, proj_out}
The released "3D" layers are 2D layers applied per frame (InflatedConv3d, InflatedGroupNorm), so diffusers'
ResnetBlock2D / Downsample2D / Upsample2D / Attention / FeedForward have the same parameters; tensors here are
[B*F, C, h, w] and the motion modules unfold the frames.

The spatial transformer block (TemporalBasicTransformerBlock run through the "read" forward of
src/models/mutual_self_attention.py, which is what the released pipeline executes) computes
    n = norm1(x);  x = attn1(n, keys/values = [n, reference tokens of this block]) + x     (reference attention)
    x = 3.0 * attn2(norm2(x), audio tokens of this frame) * audio_mask + x                   (audio cross-attention)
    x = ff(norm3(x)) + x
With no reference tokens attn1 is plain self-attention (the released classifier-free "unconditional" branch).
The audio mask (APDH / HPA training, training.py) is 1 everywhere at inference.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from diffusers.models.downsampling import Downsample2D
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.upsampling import Upsample2D
from torch import Tensor, nn

from .motion import make_motion_module


class Context:
    """What every block needs besides the hidden states: timestep embedding and conditions, frames folded in."""

    def __init__(self, temb: Tensor, num_frames: int, audio: Tensor, reference: dict | None,
                 audio_mask: Tensor | None, audio_ratio: float):
        self.temb = temb                # [B*F, D_t]
        self.num_frames = num_frames
        self.audio = audio              # [B*F, L, D_a]; all zeros is the released "no audio" (attn2 then adds its bias)
        self.reference = reference      # {block path: [B, L, C]} or None
        self.audio_mask = audio_mask    # [B*F, 1, h0, w0] or None
        self.audio_ratio = audio_ratio

    def mask_tokens(self, h: int, w: int) -> Tensor | None:
        """The audio mask at this resolution as [B*F, h*w, 1] (area-averaged: a soft mask at coarse levels)."""
        if self.audio_mask is None:
            return None
        m = self.audio_mask if self.audio_mask.shape[-2:] == (h, w) else F.adaptive_avg_pool2d(self.audio_mask, (h, w))
        return m.flatten(2).transpose(1, 2)


class SpatialTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, audio_dim: int):
        super().__init__()
        self.attn1 = Attention(query_dim=dim, heads=heads, dim_head=dim // heads, bias=False)
        self.norm1 = nn.LayerNorm(dim)
        self.attn2 = Attention(query_dim=dim, cross_attention_dim=audio_dim, heads=heads, dim_head=dim // heads,
                               bias=False)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.norm3 = nn.LayerNorm(dim)
        self.path = ""  # set by the UNet: this block's module path, the key of its reference tokens

    def forward(self, x: Tensor, ctx: Context, mask: Tensor | None) -> Tensor:
        n = self.norm1(x)
        kv = n
        if ctx.reference is not None:
            if self.path not in ctx.reference:
                raise ValueError(f"reference tokens: none for block {self.path!r} (ReferenceNet/denoiser mismatch)")
            ref = ctx.reference[self.path]                                   # [B, L, C]
            ref = ref.repeat_interleave(ctx.num_frames, dim=0)                # one copy per frame
            kv = torch.cat([n, ref.to(n.dtype)], dim=1)
        x = self.attn1(n, encoder_hidden_states=kv) + x
        if ctx.audio_ratio > 0:
            a = self.attn2(self.norm2(x), encoder_hidden_states=ctx.audio.to(x.dtype)) * ctx.audio_ratio
            x = x + (a if mask is None else a * mask.to(a.dtype))
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    """GroupNorm -> 1x1 conv in -> transformer block -> 1x1 conv out -> residual (use_linear_projection False)."""

    def __init__(self, channels: int, heads: int, audio_dim: int, norm_groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(norm_groups, channels, eps=1e-6, affine=True)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.transformer_blocks = nn.ModuleList([SpatialTransformerBlock(channels, heads, audio_dim)])
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        bf, c, h, w = x.shape
        y = self.proj_in(self.norm(x)).permute(0, 2, 3, 1).reshape(bf, h * w, c)
        mask = ctx.mask_tokens(h, w)
        for block in self.transformer_blocks:
            y = block(y, ctx, mask)
        return self.proj_out(y.reshape(bf, h, w, c).permute(0, 3, 1, 2)) + x


def _resnet(cfg, cin: int, cout: int) -> ResnetBlock2D:
    return ResnetBlock2D(in_channels=cin, out_channels=cout, temb_channels=cfg.time_embed_dim, eps=cfg.norm_eps,
                         groups=cfg.norm_num_groups, non_linearity="silu", output_scale_factor=1.0)


def _attention(cfg, channels: int) -> SpatialTransformer:
    return SpatialTransformer(channels, cfg.attention_heads, cfg.audio_dim, cfg.norm_num_groups)


class DownBlock(nn.Module):
    """resnet -> [spatial transformer] -> motion module, `layers` times; then a stride-2 conv (not at the last
    level)."""

    def __init__(self, cfg, cin: int, cout: int, cross_attention: bool, downsample: bool, motion: bool):
        super().__init__()
        n = cfg.layers_per_block
        self.resnets = nn.ModuleList([_resnet(cfg, cin if i == 0 else cout, cout) for i in range(n)])
        self.attentions = nn.ModuleList([_attention(cfg, cout) for _ in range(n)]) if cross_attention else None
        self.motion_modules = nn.ModuleList([make_motion_module(cfg, cout) for _ in range(n)]) if motion else None
        self.downsamplers = nn.ModuleList(
            [Downsample2D(cout, use_conv=True, out_channels=cout, padding=1, name="op")]) if downsample else None

    def forward(self, x: Tensor, ctx: Context) -> tuple[Tensor, list[Tensor]]:
        skips = []
        for i, resnet in enumerate(self.resnets):
            x = resnet(x, ctx.temb)
            if self.attentions is not None:
                x = self.attentions[i](x, ctx)
            if self.motion_modules is not None:
                x = self.motion_modules[i](x, ctx.num_frames)
            skips.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips.append(x)
        return x, skips


class MidBlock(nn.Module):
    def __init__(self, cfg, channels: int, motion: bool):
        super().__init__()
        self.resnets = nn.ModuleList([_resnet(cfg, channels, channels), _resnet(cfg, channels, channels)])
        self.attentions = nn.ModuleList([_attention(cfg, channels)])
        self.motion_modules = nn.ModuleList([make_motion_module(cfg, channels)]) if motion else None

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        x = self.resnets[0](x, ctx.temb)
        x = self.attentions[0](x, ctx)
        if self.motion_modules is not None:
            x = self.motion_modules[0](x, ctx.num_frames)
        return self.resnets[1](x, ctx.temb)


class UpBlock(nn.Module):
    """(layers + 1) x [concat skip -> resnet -> [spatial transformer] -> motion module]; then upsample (not last)."""

    def __init__(self, cfg, cin: int, cout: int, prev: int, cross_attention: bool, upsample: bool, motion: bool):
        super().__init__()
        n = cfg.layers_per_block + 1
        self.resnets = nn.ModuleList([
            _resnet(cfg, (prev if i == 0 else cout) + (cin if i == n - 1 else cout), cout) for i in range(n)])
        self.attentions = nn.ModuleList([_attention(cfg, cout) for _ in range(n)]) if cross_attention else None
        self.motion_modules = nn.ModuleList([make_motion_module(cfg, cout) for _ in range(n)]) if motion else None
        self.upsamplers = nn.ModuleList([Upsample2D(cout, use_conv=True, out_channels=cout)]) if upsample else None

    def forward(self, x: Tensor, skips: list[Tensor], ctx: Context, size: tuple[int, int] | None) -> Tensor:
        for i, resnet in enumerate(self.resnets):
            x = resnet(torch.cat([x, skips.pop()], dim=1), ctx.temb)
            if self.attentions is not None:
                x = self.attentions[i](x, ctx)
            if self.motion_modules is not None:
                x = self.motion_modules[i](x, ctx.num_frames)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x, output_size=size)
        return x
