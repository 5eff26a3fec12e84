"""PCE (Parts Consistency Enhancement): regional audio-visual classifiers on the diffusion encoder (PAHA, §PCE).

Two classifiers, "face" and "nonface", judge whether a (noisy) clip's region moves consistently with its audio:
1. features: UniVDM.encoder_features (conv_in, down blocks, mid block) of the noisy clip -> [B, C, F, h', w'];
2. per frame, a global max-pool over the region ([B, F, C]); the region mask is applied to a clip's features with
   probability `mask_prob` = 0.8 [paper] in training (otherwise the whole frame is pooled), and always at guidance;
3. tokens [CLS] + F video tokens + F audio tokens (audio: the frame's whisper tokens averaged, [B, F, D_a]), each
   linearly projected to d, plus a learned modal encoding (cls / video / audio) and a sinusoidal temporal encoding
   of the frame index;
4. a pre-LN Transformer whose attention rotates queries and keys by a 3D RoPE over (t, y, x): a video or audio token
   of frame f sits at (f + 1, y_c, x_c), the centroid of the region on the feature grid (the grid centre when the
   whole frame is pooled), and [CLS] at (0, 0, 0); each axis gets a third of the head width;
5. an MLP on [CLS] -> one logit; BCE with label 1 for real clips and 0 for clips the model generated.
The diffusion encoder is frozen while the classifiers train (`pce_loss` computes its features without gradient).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

REGIONS = ("face", "nonface")


# --- region pooling ------------------------------------------------------------------------------------------------
def feature_mask(mask: Tensor, hw: tuple[int, int]) -> Tensor:
    """A latent-grid mask [B, F, h, w] in [0, 1] -> the feature grid [B, F, h', w'] (1 where the region covers any
    part of the cell)."""
    b, f = mask.shape[:2]
    m = F.adaptive_avg_pool2d(mask.reshape(b * f, 1, *mask.shape[-2:]).float(), hw)
    return (m > 0).reshape(b, f, *hw)


def region_pool(features: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """features [B, C, F, h', w'], mask [B, F, h', w'] bool or None -> (max-pooled [B, F, C], centroid [B, F, 2] as
    (y, x) on the feature grid). A frame with an empty mask pools to zeros with the grid centre."""
    b, c, f, h, w = features.shape
    x = features.permute(0, 2, 1, 3, 4)                                          # [B, F, C, h, w]
    centre = features.new_tensor([(h - 1) / 2, (w - 1) / 2]).expand(b, f, 2)
    if mask is None:
        return x.amax(dim=(-2, -1)), centre
    if mask.shape != (b, f, h, w):
        raise ValueError(f"mask: expected {[b, f, h, w]}, got {list(mask.shape)}")
    m = mask.bool()
    filled = x.masked_fill(~m[:, :, None], float("-inf")).amax(dim=(-2, -1))
    empty = ~m.flatten(2).any(-1)                                                 # [B, F]
    pooled = torch.where(empty[..., None], torch.zeros_like(filled), filled)
    ys = torch.arange(h, device=x.device, dtype=x.dtype).view(h, 1)
    xs = torch.arange(w, device=x.device, dtype=x.dtype).view(1, w)
    mf = m.to(x.dtype)
    area = mf.sum((-2, -1)).clamp_min(1)
    cy, cx = (mf * ys).sum((-2, -1)) / area, (mf * xs).sum((-2, -1)) / area
    cen = torch.stack([cy, cx], -1)
    return pooled, torch.where(empty[..., None], centre, cen)


# --- 3D RoPE -------------------------------------------------------------------------------------------------------
def rope_3d(x: Tensor, pos: Tensor, base: float = 10000.0) -> Tensor:
    """x [B, H, N, D] (D divisible by 6), pos [B, N, 3] -> x with each third of D rotated by one axis' position."""
    d = x.shape[-1]
    if d % 6:
        raise ValueError(f"x: head width must be divisible by 6 for 3D RoPE, got {d}")
    third = d // 3
    freqs = base ** (-torch.arange(0, third, 2, device=x.device, dtype=torch.float32) / third)   # [third/2]
    out = []
    for axis in range(3):
        part = x[..., axis * third:(axis + 1) * third].float()
        ang = pos[:, None, :, axis, None].float() * freqs                      # [B, 1, N, third/2]
        cos, sin = ang.cos(), ang.sin()
        a, b = part[..., 0::2], part[..., 1::2]
        out.append(torch.stack([a * cos - b * sin, a * sin + b * cos], -1).flatten(-2))
    return torch.cat(out, -1).to(x.dtype)


def sinusoid(index: Tensor, dim: int) -> Tensor:
    """index [N] -> [N, dim] sin/cos encoding."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=index.device, dtype=torch.float32) / half)
    ang = index.float()[:, None] * freqs
    enc = torch.cat([ang.sin(), ang.cos()], -1)
    return F.pad(enc, (0, dim - 2 * half))


class RoPELayer(nn.Module):
    """Pre-LN Transformer layer: x + attn(LN(x)) with 3D RoPE on q, k; then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k = rope_3d(q, pos), rope_3d(k, pos)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        x = x + self.proj(a)
        return x + self.mlp(self.norm2(x))


class RegionalAVClassifier(nn.Module):
    """(video [B, F, C_v], audio [B, F, L, D_a], centre [B, F, 2]) -> logit [B] (real vs generated)."""

    def __init__(self, video_dim: int, audio_dim: int, dim: int, heads: int, layers: int):
        super().__init__()
        self.dim = dim
        self.video_proj = nn.Linear(video_dim, dim)
        self.audio_proj = nn.Linear(audio_dim, dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.modal = nn.Embedding(3, dim)                      # 0 cls, 1 video, 2 audio
        self.layers = nn.ModuleList([RoPELayer(dim, heads) for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, 1))
        nn.init.normal_(self.cls, std=0.02)

    def forward(self, video: Tensor, audio: Tensor, centre: Tensor) -> Tensor:
        b, f, _ = video.shape
        if audio.dim() != 4 or audio.shape[:2] != (b, f):
            raise ValueError(f"audio: expected [{b}, {f}, L, D_a], got {list(audio.shape)}")
        if centre.shape != (b, f, 2):
            raise ValueError(f"centre: expected {[b, f, 2]}, got {list(centre.shape)}")
        frames = torch.arange(f, device=video.device)
        temporal = sinusoid(frames, self.dim).to(video.dtype)[None]                # [1, F, d]
        v = self.video_proj(video) + self.modal.weight[1] + temporal
        a = self.audio_proj(audio.mean(2).to(video.dtype)) + self.modal.weight[2] + temporal
        x = torch.cat([self.cls.expand(b, -1, -1) + self.modal.weight[0], v, a], dim=1)   # [B, 1 + 2F, d]
        tpos = (frames + 1).to(video.dtype)[None, :, None].expand(b, f, 1)
        p = torch.cat([tpos, centre.to(video.dtype)], -1)                         # [B, F, 3]
        pos = torch.cat([p.new_zeros(b, 1, 3), p, p], dim=1)
        for layer in self.layers:
            x = layer(x, pos)
        return self.head(self.norm(x[:, 0]))[:, 0]


class PCE(nn.Module):
    """The two regional classifiers, keyed by region name."""

    def __init__(self, cfg):
        super().__init__()
        self.classifiers = nn.ModuleDict({r: RegionalAVClassifier(cfg.block_out_channels[-1], cfg.audio_dim,
                                                                  cfg.pce_dim, cfg.pce_heads, cfg.pce_layers)
                                          for r in REGIONS})

    def logits(self, region: str, features: Tensor, audio: Tensor, mask: Tensor | None) -> Tensor:
        """features [B, C, F, h', w'] (encoder), audio [B, F, L, D_a], mask [B, F, h', w'] bool or None -> [B]."""
        if region not in self.classifiers:
            raise ValueError(f"region: expected one of {REGIONS}, got {region!r}")
        pooled, centre = region_pool(features, mask)
        return self.classifiers[region](pooled, audio, centre)


def region_masks(face: Tensor) -> dict[str, Tensor]:
    """face mask [B, F, h, w] in [0, 1] -> {"face": face, "nonface": 1 - face}."""
    return {"face": face, "nonface": 1 - face}


def pce_loss(pce: PCE, model, ref_latents: Tensor, latents: Tensor, audio: Tensor, labels: Tensor,
             face_mask: Tensor, timesteps: Tensor, noise: Tensor, scheduler, mask_prob: float = 0.8,
             generator: torch.Generator | None = None) -> dict:
    """BCE of both regional classifiers on noisy clips; labels [B] 1 = real, 0 = generated.

    ref_latents [B, C, h, w], latents [B, C, F, h, w] (x0), audio [B, F, L, D_a], face_mask [B, F, h, w] on the latent
    grid, timesteps [B], noise like latents; per clip and region the mask is applied with probability mask_prob."""
    if labels.shape != (latents.shape[0],):
        raise ValueError(f"labels: expected [{latents.shape[0]}], got {list(labels.shape)}")
    noisy = scheduler.add_noise(latents, noise, timesteps)
    with torch.no_grad():
        feats = model.encoder_features(ref_latents, noisy, timesteps, audio)
    hw = feats.shape[-2:]
    out, total = {}, 0.0
    for region, m in region_masks(face_mask).items():
        use = torch.rand(latents.shape[0], generator=generator) < mask_prob          # [B]
        fm = feature_mask(m, hw)
        fm = torch.where(use.to(fm.device)[:, None, None, None], fm, torch.ones_like(fm))
        logits = pce.logits(region, feats, audio, fm)
        loss = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
        out[f"loss_pce_{region}"] = loss
        out[f"pce_acc_{region}"] = ((logits > 0) == (labels > 0.5)).float().mean().detach()
        total = total + loss
    out["loss_pce"] = total
    return out


def guidance_loss(pce: PCE, model, region: str, ref_latents: Tensor, z: Tensor, timestep, audio: Tensor,
                  mask: Tensor) -> Tensor:
    """L_region(z): BCE of the region's classifier against "real" for noisy latents z [B, C, F, h, w] (summed over
    the batch, so each clip's gradient is its own); mask [B, F, h, w] is the region on the latent grid."""
    feats = model.encoder_features(ref_latents, z, timestep, audio)
    logits = pce.logits(region, feats, audio, feature_mask(mask, feats.shape[-2:]))
    return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="sum")
