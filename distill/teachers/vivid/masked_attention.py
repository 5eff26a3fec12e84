"""Region-limited cross-attention: the shared mechanism of VividAnimator's DSAA head stream and HCC codebook
attention (WACV 2026).

    y = x + Attention(LayerNorm(x), keys/values = c) * M
x: U-Net tokens [N, L, C] (N = B*F, L = h*w); c: condition tokens [N, K, D_c]; M: the region mask on the token
grid [N, L, 1] in [0, 1] (the head mask for DSAA, the hand mask for HCC). Where M = 0 the tokens come out exactly
as they went in (x + a * 0 = x), so the condition can only change its own region.
`resize_mask` takes a pixel- or latent-grid mask to a U-Net level by area averaging (a soft mask at coarse levels;
a token no region pixel touches stays exactly 0).
"""
from __future__ import annotations

import torch.nn.functional as F
from diffusers.models.attention_processor import Attention
from torch import Tensor, nn


class MaskedCrossAttention(nn.Module):
    def __init__(self, dim: int, context_dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"heads: dim {dim} is not divisible by heads={heads}")
        self.norm = nn.LayerNorm(dim)
        self.attn = Attention(query_dim=dim, cross_attention_dim=context_dim, heads=heads, dim_head=dim // heads,
                              bias=False)
        self.context_dim = context_dim

    def forward(self, x: Tensor, context: Tensor, mask: Tensor) -> Tensor:
        """x [N, L, C], context [N, K, D_c], mask [N, L, 1] -> [N, L, C]."""
        n, length, c = x.shape
        if context.dim() != 3 or context.shape[0] != n or context.shape[-1] != self.context_dim:
            raise ValueError(f"context: expected [{n}, K, {self.context_dim}], got {list(context.shape)}")
        if mask.shape != (n, length, 1):
            raise ValueError(f"mask: expected [{n}, {length}, 1], got {list(mask.shape)}")
        a = self.attn(self.norm(x), encoder_hidden_states=context.to(x.dtype))
        return x + a * mask.to(a.dtype)


def resize_mask(mask: Tensor, h: int, w: int) -> Tensor:
    """mask [N, 1, H0, W0] -> tokens [N, h*w, 1] (area average; the identity at the same size)."""
    if mask.dim() != 4 or mask.shape[1] != 1:
        raise ValueError(f"mask: expected [N, 1, H, W], got {list(mask.shape)}")
    m = mask if mask.shape[-2:] == (h, w) else F.adaptive_avg_pool2d(mask, (h, w))
    return m.flatten(2).transpose(1, 2)
