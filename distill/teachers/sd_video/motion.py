"""The temporal motion module: self-attention over frames, after the spatial layers of each UNet block.

Layout and names follow the AnimateDiff "Vanilla" module that EchoMimicV2 ships (antgroup/echomimic_v2
src/models/motion_module.py: VanillaTemporalModule -> TemporalTransformer3DModel -> TemporalTransformerBlock ->
VersatileAttention), so the released motion_module.pth keys load as they are:
    motion_modules.{i}.temporal_transformer.{norm, proj_in, proj_out}
    ....transformer_blocks.{j}.attention_blocks.{k}.{to_q, to_k, to_v, to_out.0, pos_encoder.pe}
    ....transformer_blocks.{j}.{norms.{k}, ff.net.0.proj, ff.net.2, ff_norm}
Behaviour (same file): GroupNorm (eps 1e-6) per frame -> Linear in -> blocks -> Linear out (zero-initialised) ->
residual. In each block, every attention is pre-LayerNorm + residual; it attends over the F frames of each pixel
((b f) d c -> (b d) f c) after adding a sinusoidal position encoding (buffer `pe` [1, max_len, C]); a GEGLU
feed-forward follows. attention_head_dim = C // heads (temporal_attention_dim_div 1).
Tensors are [B*F, C, h, w] here (frames folded into the batch), with `num_frames` passed alongside.
"""
from __future__ import annotations

from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import SinusoidalPositionalEmbedding
from torch import Tensor, nn


class TemporalAttention(Attention):
    """Self-attention across frames (one sequence per pixel) with a sinusoidal frame-position encoding."""

    def __init__(self, dim: int, heads: int, max_len: int):
        super().__init__(query_dim=dim, heads=heads, dim_head=dim // heads, bias=False)
        self.pos_encoder = SinusoidalPositionalEmbedding(dim, max_seq_length=max_len)

    def forward(self, hidden_states: Tensor, num_frames: int) -> Tensor:
        """hidden_states [B*F, D, C] (D = h*w tokens) -> [B*F, D, C]."""
        bf, d, c = hidden_states.shape
        if num_frames > self.pos_encoder.pe.shape[1]:
            raise ValueError(f"num_frames: the motion module encodes at most {self.pos_encoder.pe.shape[1]} "
                             f"frames per window, got {num_frames}")
        x = hidden_states.reshape(bf // num_frames, num_frames, d, c).permute(0, 2, 1, 3)
        x = self.pos_encoder(x.reshape(-1, num_frames, c))
        x = super().forward(x)
        return x.reshape(bf // num_frames, d, num_frames, c).permute(0, 2, 1, 3).reshape(bf, d, c)


class TemporalTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, max_len: int, n_attention: int = 2):
        super().__init__()
        self.attention_blocks = nn.ModuleList([TemporalAttention(dim, heads, max_len) for _ in range(n_attention)])
        self.norms = nn.ModuleList([nn.LayerNorm(dim) for _ in range(n_attention)])
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, num_frames: int) -> Tensor:
        for attention, norm in zip(self.attention_blocks, self.norms):
            x = attention(norm(x), num_frames) + x
        return self.ff(self.ff_norm(x)) + x


class TemporalTransformer(nn.Module):
    def __init__(self, channels: int, heads: int, n_blocks: int, max_len: int, norm_groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(norm_groups, channels, eps=1e-6, affine=True)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList(
            [TemporalTransformerBlock(channels, heads, max_len) for _ in range(n_blocks)])
        self.proj_out = nn.Linear(channels, channels)

    def forward(self, x: Tensor, num_frames: int) -> Tensor:
        bf, c, h, w = x.shape
        y = self.norm(x).permute(0, 2, 3, 1).reshape(bf, h * w, c)
        y = self.proj_in(y)
        for block in self.transformer_blocks:
            y = block(y, num_frames)
        y = self.proj_out(y).reshape(bf, h, w, c).permute(0, 3, 1, 2)
        return y + x


class MotionModule(nn.Module):
    """x [B*F, C, h, w] -> same shape; the identity at initialisation (proj_out is zero)."""

    def __init__(self, channels: int, heads: int, n_blocks: int, max_len: int, norm_groups: int):
        super().__init__()
        self.temporal_transformer = TemporalTransformer(channels, heads, n_blocks, max_len, norm_groups)
        nn.init.zeros_(self.temporal_transformer.proj_out.weight)
        nn.init.zeros_(self.temporal_transformer.proj_out.bias)

    def forward(self, x: Tensor, num_frames: int) -> Tensor:
        if x.shape[0] % num_frames:
            raise ValueError(f"motion module: batch*frames {x.shape[0]} is not a multiple of num_frames={num_frames}")
        return self.temporal_transformer(x, num_frames)


def make_motion_module(cfg, channels: int) -> MotionModule:
    # the released module uses TemporalTransformer3DModel's default 32 groups; cfg.norm_num_groups is 32 full-size
    return MotionModule(channels, cfg.motion_heads, cfg.motion_blocks, cfg.motion_max_len, cfg.norm_num_groups)


__all__ = ["MotionModule", "TemporalAttention", "make_motion_module"]

