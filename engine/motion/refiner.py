"""The face/hand refiner (AudioAvatar §3.2): a residual on the dense face, lip, eye and hand particles.

Data path: engine/motion (MotionDiT + generate / MotionStream) gives particle motion x [T, K, C] over the
canonical slots -> FaceHandRefiner(x, audio, frame_index) adds a residual to the face/lips/eyes/hands slots
only -> engine/deform/decoder (ΔG per Gaussian). The refiner is conditioned on the TIME INDEX t of each frame in the
clip (sinusoidal embedding, FiLM through adaLN), not on a diffusion step: it runs once per frame, after sampling.

Tokens: the S refined particles of one frame, each Linear(its motion) + a learned slot embedding + a projection
of that frame's audio. A Transformer mixes the S tokens of a frame (all B*T frames batched); a zero-initialised
head gives the residual [S, C], so an untrained refiner is exactly the identity and every other slot passes
through untouched.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from engine.avatar.particles import canonical_slots
from engine.avatar.regions import EYES, FACE, HANDS, LIPS
from engine.motion.dit import AdaLNBlock, FinalLayer, check_tensor, masked_mse, sinusoidal_embedding
from engine.pretrained import Pretrained

REFINED_REGIONS = (FACE, LIPS, EYES, HANDS)    # engine.avatar.regions ids


@dataclass
class RefinerConfig:
    n_slots: int = 204            # K: must equal len(engine.avatar.particles.canonical_slots())
    channels: int = 3             # C
    audio_dim: int = 128          # D_a
    dim: int = 64                 # sized for the live CPU budget: 190 tokens a frame (bench/avatar_engine.py)
    depth: int = 1
    heads: int = 4
    time_period: int = 10000      # longest period (frames) of the frame-index sinusoids

    def __post_init__(self):
        for name in ("n_slots", "channels", "audio_dim", "dim", "depth", "heads", "time_period"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"RefinerConfig.{name}: must be a positive int, got {value!r}")
        if self.dim % self.heads:
            raise ValueError(f"RefinerConfig.dim: must be divisible by heads={self.heads}, got {self.dim}")


def refined_slots() -> Tensor:
    """Indices [S] (int64) of the canonical slots whose region is face, lips, eyes or hands."""
    return torch.tensor([i for i, (_, region) in enumerate(canonical_slots()) if region in REFINED_REGIONS],
                        dtype=torch.long)


class FaceHandRefiner(Pretrained, nn.Module):
    """motion [B, T, K, C], audio [B, T, audio_dim], frame_index [B, T] -> refined motion [B, T, K, C]."""
    config_class = RefinerConfig

    def __init__(self, config: RefinerConfig | None = None):
        super().__init__()
        self.config = cfg = config if config is not None else RefinerConfig()
        if cfg.n_slots != len(canonical_slots()):
            raise ValueError(f"RefinerConfig.n_slots: must equal the canonical slot count "
                             f"{len(canonical_slots())} (the refined slots are canonical indices), got {cfg.n_slots}")
        self.register_buffer("slots", refined_slots(), persistent=False)          # [S]
        S = self.slots.numel()
        self.in_proj = nn.Linear(cfg.channels, cfg.dim)
        self.slot_emb = nn.Parameter(torch.randn(S, cfg.dim) * 0.02)
        self.audio_proj = nn.Linear(cfg.audio_dim, cfg.dim)
        self.time_mlp = nn.Sequential(nn.Linear(cfg.dim, cfg.dim), nn.SiLU(), nn.Linear(cfg.dim, cfg.dim))
        self.blocks = nn.ModuleList(AdaLNBlock(cfg.dim, cfg.heads) for _ in range(cfg.depth))
        self.final = FinalLayer(cfg.dim, cfg.channels)

    def _check_inputs(self, motion: Tensor, audio: Tensor, frame_index: Tensor) -> tuple[int, int]:
        cfg = self.config
        check_tensor("motion", motion, "[B, T, K, C]")
        B, T, K, C = motion.shape
        if (K, C) != (cfg.n_slots, cfg.channels):
            raise ValueError(f"motion: must be [B, T, K={cfg.n_slots}, C={cfg.channels}], got {tuple(motion.shape)}")
        check_tensor("audio", audio, "[B, T, D]")
        if tuple(audio.shape) != (B, T, cfg.audio_dim):
            raise ValueError(f"audio: must be [B={B}, T={T}, audio_dim={cfg.audio_dim}], got {tuple(audio.shape)}")
        check_tensor("frame_index", frame_index, "[B, T]")
        if tuple(frame_index.shape) != (B, T) or frame_index.is_floating_point() or frame_index.dtype == torch.bool:
            raise ValueError(f"frame_index: must be an integer tensor [B={B}, T={T}], "
                             f"got {frame_index.dtype} {tuple(frame_index.shape)}")
        if frame_index.numel() and int(frame_index.min()) < 0:
            raise ValueError(f"frame_index: must be >= 0 (time index of the frame in the clip), "
                             f"got min {int(frame_index.min())}")
        return B, T

    def residual(self, motion: Tensor, audio: Tensor, frame_index: Tensor) -> Tensor:
        """The residual [B, T, S, C] for the refined slots `self.slots` (exactly 0 untrained)."""
        B, T = self._check_inputs(motion, audio, frame_index)
        cfg, S = self.config, self.slots.numel()
        x = motion[:, :, self.slots]                                                        # [B, T, S, C]
        h = self.in_proj(x) + self.slot_emb + self.audio_proj(audio.to(motion.dtype))[:, :, None]
        h = h.reshape(B * T, S, cfg.dim)                                                   # one sequence per frame
        c = self.time_mlp(sinusoidal_embedding(frame_index.reshape(B * T), cfg.dim, cfg.time_period))
        for block in self.blocks:
            h = block(h, c)
        return self.final(h, c).view(B, T, S, cfg.channels)

    def forward(self, motion: Tensor, audio: Tensor, frame_index: Tensor) -> Tensor:
        """motion [B, T, K, C] + residual on the face/lips/eyes/hands slots; other slots are copied unchanged."""
        res = self.residual(motion, audio, frame_index)
        out = motion.clone()
        out[:, :, self.slots] = motion[:, :, self.slots] + res
        return out

    def loss(self, motion_in: Tensor, target: Tensor, audio: Tensor, frame_index: Tensor,
             slot_mask: Tensor | None = None) -> dict[str, Tensor]:
        """{"loss", "loss_refine"}: masked MSE between refine(motion_in) and target [B, T, K, C] on the refined
        slots only; slot_mask ([K], [B, K] or [B, T, K] over the canonical slots) further restricts them."""
        if not isinstance(target, Tensor) or target.shape != motion_in.shape:
            raise ValueError(f"target: must have the shape of motion_in {tuple(motion_in.shape)}, "
                             f"got {tuple(target.shape) if isinstance(target, Tensor) else target!r}")
        refined = motion_in[:, :, self.slots] + self.residual(motion_in, audio, frame_index)
        mask = None
        if slot_mask is not None:
            if not isinstance(slot_mask, Tensor) or slot_mask.dim() not in (1, 2, 3) or \
                    slot_mask.shape[-1] != self.config.n_slots:
                raise ValueError(f"slot_mask: must be [K], [B, K] or [B, T, K] with K={self.config.n_slots}, "
                                 f"got {tuple(slot_mask.shape) if isinstance(slot_mask, Tensor) else slot_mask!r}")
            mask = slot_mask[..., self.slots.to(slot_mask.device)]
        loss = masked_mse(refined, target[:, :, self.slots], mask)
        return {"loss": loss, "loss_refine": loss.detach()}
