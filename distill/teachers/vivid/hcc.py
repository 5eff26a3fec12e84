"""HCC, the Hand Clarity Codebook of VividAnimator (WACV 2026): a VQ-VAE over hand crops, pretrained offline.

Paper numbers: 256x256 hand crops, a 16x16 latent grid, 1024 codes of 256 dimensions, commitment beta = 0.25.
    encoder:   crops [B, 3, S, S] in [-1, 1] -> z_e [B, D, g, g]        (S = g * 2^(len(channels) - 1))
    quantize:  each z_e vector -> its nearest code (squared L2) -> z_q; the straight-through estimator passes the
               decoder's gradient to the encoder unchanged: z_st = z_e + sg(z_q - z_e)
    decoder:   z_st -> reconstruction [B, 3, S, S]
    loss:      ||x - x_hat||^2 + ||sg(z_e) - z_q||^2 (codebook) + beta ||z_e - sg(z_q)||^2 (commitment)
               (van den Oord et al., "Neural Discrete Representation Learning", the VQ-VAE objective)
    pretraining starts the codebook from encoder outputs of a batch (`init_codebook`; our choice), so that codes
    are used from the first step.
While denoising, `hand_tokens` encodes and quantizes the reference's left and right crops and concatenates them into
F_h [B, 2 g^2, D], the keys/values of the codebook attention (unet.py).
Layers (our choice; the paper gives the codebook, not the conv stack), VQGAN-like: conv_in, then per level a
residual block (GroupNorm, SiLU, conv) and a stride-2 conv, a residual block, GroupNorm, SiLU, a 1x1 conv to D; the
decoder mirrors it with nearest-neighbour upsampling.
Saved and loaded with engine.pretrained (config.json + model.safetensors).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.pretrained import Pretrained


@dataclass
class HCCConfig:
    codes: int = 1024
    code_dim: int = 256
    crop: int = 256
    grid: int = 16
    beta: float = 0.25
    channels: tuple[int, ...] = (64, 128, 128, 256, 256)

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)
        if self.codes < 2 or self.code_dim < 1:
            raise ValueError(f"HCCConfig.codes/code_dim: expected >= 2 codes of >= 1 dims, got {self.codes}, "
                             f"{self.code_dim}")
        if not self.channels or self.crop != self.grid * 2 ** (len(self.channels) - 1):
            raise ValueError(f"HCCConfig.channels: crop {self.crop} must equal grid {self.grid} x "
                             f"2^(len(channels) - 1), got channels {self.channels}")
        if self.beta < 0:
            raise ValueError(f"HCCConfig.beta: expected >= 0, got {self.beta}")

    @classmethod
    def tiny(cls, **overrides) -> "HCCConfig":
        """32 codes of 16 dims on 32x32 crops (an 8x8 grid), widths 8/16/16."""
        base = dict(codes=32, code_dim=16, crop=32, grid=8, channels=(8, 16, 16))
        base.update(overrides)
        return cls(**base)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(32, channels), channels, eps=1e-6)


class _Residual(nn.Module):
    """GroupNorm, SiLU, 3x3 conv, twice, plus the input (the VQGAN residual block)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(channels), nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2, self.conv2 = _norm(channels), nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.silu(self.norm2(self.conv1(F.silu(self.norm1(x))))))


class HandEncoder(nn.Module):
    """crops [B, 3, S, S] -> z_e [B, D, g, g]."""

    def __init__(self, cfg: HCCConfig):
        super().__init__()
        c = cfg.channels
        layers: list[nn.Module] = [nn.Conv2d(3, c[0], 3, padding=1)]
        for a, b in zip(c[:-1], c[1:]):
            layers += [_Residual(a), nn.Conv2d(a, b, 4, stride=2, padding=1)]
        layers += [_Residual(c[-1]), _norm(c[-1]), nn.SiLU(), nn.Conv2d(c[-1], cfg.code_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class HandDecoder(nn.Module):
    """z [B, D, g, g] -> crops [B, 3, S, S]."""

    def __init__(self, cfg: HCCConfig):
        super().__init__()
        c = cfg.channels[::-1]
        layers: list[nn.Module] = [nn.Conv2d(cfg.code_dim, c[0], 3, padding=1), _Residual(c[0])]
        for a, b in zip(c[:-1], c[1:]):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(a, b, 3, padding=1), _Residual(b)]
        layers += [_norm(c[-1]), nn.SiLU(), nn.Conv2d(c[-1], 3, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


@dataclass
class VQOut:
    recon: Tensor        # [B, 3, S, S]
    z_e: Tensor          # [B, D, g, g] encoder output
    z_q: Tensor          # [B, D, g, g] nearest codes (no straight-through)
    indices: Tensor      # [B, g, g] code ids


class HandCodebookVAE(Pretrained, nn.Module):
    """The HCC VQ-VAE: hand crops [B, 3, S, S] in [-1, 1] <-> code ids [B, g, g]."""
    config_class = HCCConfig

    def __init__(self, config: HCCConfig | None = None):
        super().__init__()
        self.config = config or HCCConfig()
        cfg = self.config
        self.encoder = HandEncoder(cfg)
        self.decoder = HandDecoder(cfg)
        self.codebook = nn.Embedding(cfg.codes, cfg.code_dim)
        nn.init.normal_(self.codebook.weight)     # before pretraining, start it from data: init_codebook

    def _check(self, crops: Tensor) -> None:
        s = self.config.crop
        if crops.dim() != 4 or crops.shape[1:] != (3, s, s):
            raise ValueError(f"crops: expected [B, 3, {s}, {s}] in [-1, 1], got {list(crops.shape)}")

    def quantize(self, z_e: Tensor) -> tuple[Tensor, Tensor]:
        """z_e [B, D, g, g] -> (z_q [B, D, g, g] nearest codes, indices [B, g, g])."""
        b, d, h, w = z_e.shape
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, d)
        book = self.codebook.weight
        dist = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ book.t() + book.pow(2).sum(1)[None])
        idx = dist.argmin(1)
        z_q = book[idx].reshape(b, h, w, d).permute(0, 3, 1, 2)
        return z_q, idx.reshape(b, h, w)

    @torch.no_grad()
    def init_codebook(self, crops: Tensor, generator: torch.Generator | None = None) -> None:
        """Data-dependent codebook start: the codes become encoder outputs of `crops` [B, 3, S, S] drawn at random
        (with replacement when there are fewer vectors than codes), so every code starts next to data and is used
        (random codes far from the encoder's outputs stay dead; SoundStream likewise starts its codebook from the
        first batch's encoder outputs)."""
        self._check(crops)
        flat = self.encoder(crops).permute(0, 2, 3, 1).reshape(-1, self.config.code_dim)
        k = self.config.codes
        pick = torch.randperm(flat.shape[0], generator=generator)[:k] if flat.shape[0] >= k else \
            torch.randint(flat.shape[0], (k,), generator=generator)
        self.codebook.weight.copy_(flat[pick.to(flat.device)])

    def forward(self, crops: Tensor) -> VQOut:
        self._check(crops)
        z_e = self.encoder(crops)
        z_q, idx = self.quantize(z_e)
        z_st = z_e + (z_q - z_e).detach()                 # straight-through: d z_st / d z_e = identity
        return VQOut(self.decoder(z_st), z_e, z_q, idx)

    def loss(self, crops: Tensor) -> dict:
        """The VQ-VAE objective on crops [B, 3, S, S] (loss-dict contract)."""
        out = self(crops)
        recon = F.mse_loss(out.recon, crops)
        codebook = F.mse_loss(out.z_q, out.z_e.detach())
        commit = F.mse_loss(out.z_e, out.z_q.detach())
        return {"loss_hcc": recon + codebook + self.config.beta * commit, "hcc_recon": recon.detach(),
                "hcc_codebook": codebook.detach(), "hcc_commit": commit.detach(),
                "hcc_codes_used": codebook_usage(out.indices)}

    def hand_tokens(self, crops: Tensor) -> Tensor:
        """crops [B, 2, 3, S, S] (left, right) -> F_h [B, 2 g^2, D]: quantized codes, left then right."""
        if crops.dim() != 5 or crops.shape[1] != 2:
            raise ValueError(f"crops: expected [B, 2 (left, right), 3, S, S], got {list(crops.shape)}")
        b = crops.shape[0]
        flat = crops.flatten(0, 1)
        self._check(flat)
        z_q, _ = self.quantize(self.encoder(flat))                    # [2B, D, g, g]
        tokens = z_q.flatten(2).transpose(1, 2)                       # [2B, g^2, D]
        return tokens.reshape(b, -1, self.config.code_dim)


def codebook_usage(indices: Tensor) -> Tensor:
    """The number of distinct codes in `indices` (any shape), as a 0-d long tensor."""
    return torch.tensor(torch.unique(indices).numel(), dtype=torch.long)
