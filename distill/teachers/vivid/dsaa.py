"""DSAA, VividAnimator's Dual-Stream Audio-Aware module (WACV 2026): the head-aware stream's audio path.

The two streams read the same audio windows W_a [B, F, T, D] (paper: F = 24 frames, T = 50 tokens, D = 384):
- lip stream: audio cross-attention on W_a[:, f] in every U-Net transformer block (the shared spatial block's attn2,
  sd_video/blocks.py), everywhere in the frame;
- head-aware stream (this file + masked_attention.py): W_a is average-pooled over T to [B, F, D], passed through an
  audio adapter (an MLP), and cross-attended under the head mask M_head only.
Our reading of the head stream's keys: every frame attends to the pooled tokens of all F frames of its clip (a
single key per frame would make the softmax trivial and the output independent of the query), with a fixed
sinusoidal frame-position encoding added after the adapter so a frame can tell its own audio from its
neighbours'.
"""
from __future__ import annotations

from diffusers.models.embeddings import SinusoidalPositionalEmbedding
from torch import Tensor, nn


class HeadAudioAdapter(nn.Module):
    """W_a [B, F, T, D] -> head-stream keys [B*F, F, D_h] (the clip's pooled, adapted audio, one copy per frame)."""

    def __init__(self, audio_dim: int, hidden: int, out_dim: int, max_frames: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(audio_dim, hidden), nn.SiLU(), nn.Linear(hidden, out_dim))
        self.pos_encoder = SinusoidalPositionalEmbedding(out_dim, max_seq_length=max_frames)
        self.audio_dim = audio_dim

    def pooled(self, windows: Tensor) -> Tensor:
        """W_a [B, F, T, D] -> adapted, position-encoded [B, F, D_h]."""
        if windows.dim() != 4 or windows.shape[-1] != self.audio_dim:
            raise ValueError(f"windows: expected W_a [B, F, T, {self.audio_dim}], got {list(windows.shape)}")
        f = windows.shape[1]
        if f > self.pos_encoder.pe.shape[1]:
            raise ValueError(f"windows: at most {self.pos_encoder.pe.shape[1]} frames per clip, got {f}")
        return self.pos_encoder(self.mlp(windows.mean(dim=2)))

    def forward(self, windows: Tensor) -> Tensor:
        a = self.pooled(windows)                                   # [B, F, D_h]
        return a.repeat_interleave(a.shape[1], dim=0)              # [B*F, F, D_h]: frame f of clip b sees clip b


def make_head_adapter(cfg) -> HeadAudioAdapter:
    return HeadAudioAdapter(cfg.audio_dim, cfg.head_adapter_hidden, cfg.head_audio_dim, cfg.motion_max_len)
