"""VividAnimator's denoising U-Net over video latents [B, C, F, h, w] (WACV 2026), built on the shared one.

It is the shared DenoisingUNet3D (sd_video/unet3d.py, EchoMimicV2's architecture: SD-1.x spatial blocks with frames
folded into the batch, a temporal motion module after each, ReferenceNet tokens as extra keys/values of every
self-attention, the lip-stream audio cross-attention in every transformer block) with two region-limited
cross-attentions appended to every spatial transformer block:
    x = shared block(x)                                      reference attention, lip-stream audio, feed-forward
    x = x + HeadAttn(LN(x), DSAA head tokens) * M_head        head-aware stream (dsaa.py)
    x = x + HandAttn(LN(x), F_h) * M_hand                     HCC codebook attention (hcc.py)
The hand-pose features (hands.py, a light conv encoder) are added after conv_in, where EchoMimicV2 adds its pose
features.
The extra conditions reach the blocks through `RegionConditions`, one object the U-Net fills for the duration of
a forward (the blocks' own signature is the shared one, so the down/mid/up blocks run unchanged).
"""
from __future__ import annotations

import torch
from torch import Tensor

from distill.teachers.sd_video.blocks import SpatialTransformer, SpatialTransformerBlock
from distill.teachers.sd_video.unet3d import DenoisingUNet3D

from .dsaa import make_head_adapter
from .masked_attention import MaskedCrossAttention, resize_mask


class RegionConditions:
    """Head-stream tokens, F_h and the two masks for the forward in progress (frames folded into the batch)."""

    def __init__(self):
        self.clear()

    def clear(self) -> None:
        self.head_tokens = self.hand_tokens = None     # [B*F, K, D]
        self.masks: dict[str, Tensor] = {}             # {"head" | "hand": [B*F, 1, h0, w0]} latent grid
        self._cache: dict[tuple[str, int], Tensor] = {}

    def mask(self, which: str, n_tokens: int) -> Tensor:
        """The region mask at the U-Net level with n_tokens = h*w tokens -> [B*F, h*w, 1]."""
        key = (which, n_tokens)
        if key not in self._cache:
            m = self.masks[which]
            h, w = m.shape[-2:]
            while h * w > n_tokens and h > 1 and w > 1:
                h, w = (h + 1) // 2, (w + 1) // 2
            if h * w != n_tokens:
                raise ValueError(f"{which} mask: no U-Net level of {n_tokens} tokens under a {list(m.shape[-2:])} "
                                 f"latent grid")
            self._cache[key] = resize_mask(m, h, w)
        return self._cache[key]


class VividTransformerBlock(SpatialTransformerBlock):
    def __init__(self, dim: int, heads: int, audio_dim: int, head_audio_dim: int, code_dim: int,
                 conditions: RegionConditions):
        super().__init__(dim, heads, audio_dim)
        self.head_attn = MaskedCrossAttention(dim, head_audio_dim, heads)
        self.hand_attn = MaskedCrossAttention(dim, code_dim, heads)
        self.conditions = conditions                   # shared with the U-Net; not a module

    def forward(self, x: Tensor, ctx, mask: Tensor | None) -> Tensor:
        x = super().forward(x, ctx, mask)
        c = self.conditions
        if c.head_tokens is not None:
            x = self.head_attn(x, c.head_tokens, c.mask("head", x.shape[1]))
        if c.hand_tokens is not None:
            x = self.hand_attn(x, c.hand_tokens, c.mask("hand", x.shape[1]))
        return x


class VividUNet3D(DenoisingUNet3D):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.head_adapter = make_head_adapter(cfg)
        self.conditions = RegionConditions()
        for name, module in list(self.named_modules()):
            if isinstance(module, SpatialTransformer):
                dim = module.proj_in.out_channels
                block = VividTransformerBlock(dim, cfg.attention_heads, cfg.audio_dim, cfg.head_audio_dim,
                                              cfg.hcc_code_dim, self.conditions)
                block.path = f"{name}.transformer_blocks.0"
                module.transformer_blocks = torch.nn.ModuleList([block])

    def forward(self, sample: Tensor, timestep: Tensor | float | int, audio: Tensor | None = None,
                hand_features: Tensor | None = None, reference: dict[str, Tensor] | None = None,
                hand_tokens: Tensor | None = None, head_mask: Tensor | None = None,
                hand_mask: Tensor | None = None) -> Tensor:
        """Predict the model output (eps or v, cfg.prediction_type) for video latents.

        sample [B, C, F, h, w]; timestep scalar or [B]; audio W_a [B, F, T, D_a] (None: zeros, "no audio", for both
        streams); hand_features [B, C0, F, h, w] (hand encoder output) or None; reference {block path: [B, L, C]}
        or None; hand_tokens F_h [B, K, D_code] or None (codebook attention off); head_mask / hand_mask
        [B, F, h, w] in [0, 1] (head_mask None: everywhere; hand_mask is required with hand_tokens).
        -> [B, C, F, h, w].
        """
        # 1. inputs (the rest are checked by DenoisingUNet3D.forward)
        if sample.dim() != 5:
            raise ValueError(f"sample: expected [B, C, F, h, w], got {list(sample.shape)}")
        b, _, f, h, w = sample.shape
        if audio is None:
            audio = sample.new_zeros(b, f, 1, self.cfg.audio_dim)
        if head_mask is None:
            head_mask = sample.new_ones(b, f, h, w)
        for name, m in (("head_mask", head_mask), ("hand_mask", hand_mask)):
            if m is not None and m.shape != (b, f, h, w):
                raise ValueError(f"{name}: expected {[b, f, h, w]}, got {list(m.shape)}")
        if hand_tokens is not None:
            if hand_mask is None:
                raise ValueError("hand_mask: required with hand_tokens (the codebook attention's region)")
            if hand_tokens.dim() != 3 or hand_tokens.shape[0] != b or hand_tokens.shape[2] != self.cfg.hcc_code_dim:
                raise ValueError(f"hand_tokens: expected [{b}, K, {self.cfg.hcc_code_dim}], "
                                 f"got {list(hand_tokens.shape)}")
        # 2. the region conditions, frames folded into the batch
        c = self.conditions
        c.clear()
        try:
            c.head_tokens = self.head_adapter(audio.to(sample.dtype))
            c.masks["head"] = head_mask.reshape(b * f, 1, h, w).to(sample.dtype)
            if hand_tokens is not None:
                c.hand_tokens = hand_tokens.to(sample.dtype).repeat_interleave(f, dim=0)
                c.masks["hand"] = hand_mask.reshape(b * f, 1, h, w).to(sample.dtype)
            # 3. the shared forward: conv_in (+ hand features), down, mid, up, out
            return super().forward(sample, timestep, audio=audio, pose_features=hand_features, reference=reference)
        finally:
            c.clear()
