"""The particle-motion encoder E_X and the audio-particle contrastive embedding (AudioAvatar §3.1).

Data path: audio features a_t [B, T, audio_dim] (engine/audio, 25 fps) and canonical particle motions
x_t [B, T, K_c, C] (engine/avatar/particles slots, face units; from distill/fit4d or engine/motion) -> two encoders ->
L2-normalised per-frame embeddings [B, T, dim] in one shared space. Training (distill/train) minimises
`losses()` (symmetric InfoNCE over frames and over short patches); afterwards `sync_score()` scores how well a
generated motion matches its audio, and the motion encoder E_X serves the motion generator as a feature space.

An avatar holds only the canonical slots its photo showed: `slot_mask` [K_c] (or [B, K_c]) is True for those,
and the encoder zeroes the others, so every identity is encoded in the same K_c-slot layout.

No zero-initialised heads here (unlike the decoder and the motion generator): an embedding is normalised to unit
length, and a zero vector has no direction to normalise, so the projections keep PyTorch's default init.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.pretrained import Pretrained


@dataclass
class EmbeddingConfig:
    n_slots: int = 204          # K_c canonical particle slots (engine.avatar.particles.canonical_slots)
    channels: int = 3           # C motion channels per slot
    audio_dim: int = 128        # D_a audio feature size
    dim: int = 128              # shared embedding size
    hidden: int = 256           # width of both encoders
    kernel: int = 5             # temporal conv kernel (odd, "same" padding)
    layers: int = 2             # temporal conv layers per encoder
    patch: int = 8              # frames per patch for the patch-level loss
    patch_stride: int = 4       # frames between patch starts
    temperature: float = 0.07   # InfoNCE temperature (fixed)

    def __post_init__(self) -> None:
        for name in ("n_slots", "channels", "audio_dim", "dim", "hidden", "kernel", "patch", "patch_stride"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"EmbeddingConfig.{name}: must be a positive int, got {value!r}")
        if not isinstance(self.layers, int) or isinstance(self.layers, bool) or self.layers < 0:
            raise ValueError(f"EmbeddingConfig.layers: must be an int >= 0, got {self.layers!r}")
        if self.kernel % 2 == 0:
            raise ValueError(f"EmbeddingConfig.kernel: must be odd (symmetric 'same' padding), got {self.kernel}")
        if not (isinstance(self.temperature, (int, float)) and self.temperature > 0):
            raise ValueError(f"EmbeddingConfig.temperature: must be a positive number, got {self.temperature!r}")


class TemporalEncoder(nn.Module):
    """Per-frame MLP, then residual temporal 1-D convs ('same' padding, so T is kept), then a projection.

    x [B, T, in_dim] -> [B, T, out_dim] (not normalised).
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, kernel: int, layers: int):
        super().__init__()
        self.frame = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.convs = nn.ModuleList(nn.Conv1d(hidden, hidden, kernel, padding=kernel // 2) for _ in range(layers))
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        h = self.frame(x).transpose(1, 2)                      # [B, hidden, T]
        for conv in self.convs:
            h = h + F.gelu(conv(h))
        return self.out(self.norm(h.transpose(1, 2)))          # [B, T, out_dim]


class MotionEncoder(nn.Module):
    """E_X: canonical particle motion [B, T, K_c, C] (+ slot_mask) -> per-frame features [B, T, dim]."""

    def __init__(self, config: EmbeddingConfig):
        super().__init__()
        self.config = config
        c = config
        self.encoder = TemporalEncoder(c.n_slots * c.channels, c.hidden, c.dim, c.kernel, c.layers)

    def forward(self, motion: Tensor, slot_mask: Tensor | None = None) -> Tensor:
        c = self.config
        _check_tensor("motion", motion, 4, f"[B, T, {c.n_slots}, {c.channels}]")
        B, T, K, C = motion.shape
        if (K, C) != (c.n_slots, c.channels):
            raise ValueError(f"motion: expected shape [B, T, {c.n_slots}, {c.channels}], got {list(motion.shape)}")
        if slot_mask is not None:
            if not isinstance(slot_mask, Tensor) or slot_mask.dtype != torch.bool or \
                    tuple(slot_mask.shape) not in ((K,), (B, K)):
                got = f"{slot_mask.dtype} {list(slot_mask.shape)}" if isinstance(slot_mask, Tensor) \
                    else type(slot_mask).__name__
                raise ValueError(f"slot_mask: expected a bool tensor [{K}] or [{B}, {K}], got {got}")
            mask = slot_mask.view(-1, 1, K, 1) if slot_mask.ndim == 2 else slot_mask.view(1, 1, K, 1)
            motion = motion * mask.to(motion.dtype)
        return self.encoder(motion.reshape(B, T, K * C))


class AudioMotionEmbedding(Pretrained, nn.Module):
    """Audio and particle motion in one L2-normalised per-frame space, trained with symmetric InfoNCE."""
    config_class = EmbeddingConfig

    def __init__(self, config: EmbeddingConfig):
        super().__init__()
        if not isinstance(config, EmbeddingConfig):
            raise ValueError(f"config: expected an EmbeddingConfig, got {type(config).__name__}")
        self.config = config
        c = config
        self.motion_encoder = MotionEncoder(c)
        self.audio_proj = TemporalEncoder(c.audio_dim, c.hidden, c.dim, c.kernel, c.layers)

    def embed(self, audio: Tensor, motion: Tensor, slot_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """audio [B, T, audio_dim], motion [B, T, K_c, C] -> unit-length (audio, motion) embeddings [B, T, dim]."""
        c = self.config
        _check_tensor("audio", audio, 3, f"[B, T, {c.audio_dim}]")
        if audio.shape[-1] != c.audio_dim:
            raise ValueError(f"audio: expected shape [B, T, {c.audio_dim}], got {list(audio.shape)}")
        _check_tensor("motion", motion, 4, f"[B, T, {c.n_slots}, {c.channels}]")
        if motion.shape[:2] != audio.shape[:2]:
            raise ValueError(f"motion: expected the same [B, T] as audio {list(audio.shape[:2])}, "
                             f"got {list(motion.shape[:2])}")
        za = self.audio_proj(audio)
        zm = self.motion_encoder(motion, slot_mask)
        return F.normalize(za, dim=-1), F.normalize(zm, dim=-1)

    def losses(self, audio: Tensor, motion: Tensor, slot_mask: Tensor | None = None) -> dict[str, Tensor]:
        """{"loss": loss_frame + loss_patch, "loss_frame", "loss_patch", "acc_frame" (detached)}.

        loss_frame: symmetric InfoNCE over all B*T frames; the positive of audio frame (b, t) is motion frame
        (b, t), every other frame of the batch is a negative. loss_patch: the same over patches (embeddings
        averaged over windows of `patch` frames every `patch_stride` frames, then re-normalised; see
        patch_pool). acc_frame: top-1 audio -> motion retrieval accuracy over the B*T frames (chance 1/(B*T)).
        """
        c = self.config
        za, zm = self.embed(audio, motion, slot_mask)
        loss_frame, acc_frame = info_nce(za.flatten(0, 1), zm.flatten(0, 1), c.temperature)
        pa, pm = patch_pool(za, c.patch, c.patch_stride), patch_pool(zm, c.patch, c.patch_stride)
        loss_patch, _ = info_nce(pa.flatten(0, 1), pm.flatten(0, 1), c.temperature)
        return {"loss": loss_frame + loss_patch, "loss_frame": loss_frame, "loss_patch": loss_patch,
                "acc_frame": acc_frame}

    def sync_score(self, audio: Tensor, motion: Tensor, slot_mask: Tensor | None = None) -> Tensor:
        """Cosine between the audio and motion embeddings of each frame [B, T], in [-1, 1]; higher = in sync."""
        za, zm = self.embed(audio, motion, slot_mask)
        return (za * zm).sum(-1)


def info_nce(a: Tensor, m: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """Symmetric InfoNCE between unit embeddings a [M, d] and m [M, d], where row i of each is a positive pair.

    logits = a @ m^T / temperature; loss = (CE(logits, diag) + CE(logits^T, diag)) / 2, i.e. the mean over i of
    -log softmax_j(s_ij / tau)[i] (audio -> motion) and -log softmax_j(s_ji / tau)[i] (motion -> audio).
    Returns (loss, top-1 audio -> motion accuracy, detached).
    """
    if a.ndim != 2 or a.shape != m.shape or a.shape[0] < 1:
        raise ValueError(f"a, m: expected two equal shapes [M, d] with M >= 1, got {list(a.shape)} and {list(m.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature: must be > 0, got {temperature}")
    logits = a @ m.T / temperature
    target = torch.arange(a.shape[0], device=a.device)
    loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    acc = (logits.detach().argmax(dim=1) == target).float().mean()
    return loss, acc


def patch_pool(z: Tensor, patch: int, stride: int) -> Tensor:
    """Unit embeddings z [B, T, d] -> re-normalised window means [B, P, d], P = (T - patch) // stride + 1.

    Window p covers frames [p * stride, p * stride + patch). A clip shorter than `patch` gives one window over
    all its T frames, so short clips still contribute a patch term.
    """
    if z.ndim != 3:
        raise ValueError(f"z: expected shape [B, T, d], got {list(z.shape)}")
    if patch < 1 or stride < 1:
        raise ValueError(f"patch, stride: must be >= 1, got {patch} and {stride}")
    if z.shape[1] < patch:
        return F.normalize(z.mean(dim=1, keepdim=True), dim=-1)
    windows = z.unfold(1, patch, stride)                      # [B, P, d, patch]
    return F.normalize(windows.mean(dim=-1), dim=-1)


def _check_tensor(name: str, t: Tensor, ndim: int, want: str) -> None:
    if not isinstance(t, Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor {want}, got {type(t).__name__}")
    if t.ndim != ndim:
        raise ValueError(f"{name}: expected shape {want}, got {list(t.shape)}")
    if not t.is_floating_point():
        raise ValueError(f"{name}: expected a floating dtype, got {t.dtype}")
    if t.shape[1] < 1:
        raise ValueError(f"{name}: expected at least one frame (T >= 1), got shape {list(t.shape)}")
