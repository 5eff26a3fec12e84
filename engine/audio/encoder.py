"""Learned audio features a_t [T, D_a] at 25 fps, the input of the motion generator (engine/motion).

`AudioEncoder` turns causal log-mel frames from engine.audio.features (mel [B, T, n_mels]; per frame normalised over
the bins, plus that frame's mean and spread, its level) into features [B, T, dim] with residual CAUSAL dilated
temporal convolutions: output t depends on mel frames <= t only, so the live path (`AudioEncoder.stream().push`)
gives the same numbers as `forward` on the whole utterance, frame by frame,
with a receptive field of 1 + (kernel - 1) (2^layers - 1) frames. It is trained in distill/ and saved with
save_pretrained / from_pretrained (engine.pretrained).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.pretrained import Pretrained


@dataclass
class AudioEncoderConfig:
    n_mels: int = 80     # input log-mel bins (engine.audio.features.MelConfig.n_mels)
    dim: int = 128       # output feature size D_a
    hidden: int = 256    # width of the residual stream
    layers: int = 3      # residual causal conv blocks, dilation 1, 2, 4, ...
    kernel: int = 3      # temporal kernel size (frames)
    # The input LayerNorm takes out each frame's mean and spread over the bins, i.e. its loudness, which the jaw
    # follows. level=True feeds them back as two more inputs. Without them the distilled jaw matched the
    # teacher's at r 0.98 on trained voices but 0.80-0.85 on held-out ones (docs/distillation.md).
    level: bool = True

    def __post_init__(self):
        for key in ("n_mels", "dim", "hidden", "layers", "kernel"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"AudioEncoderConfig.{key}: expected an integer >= 1, got {v!r}")
        if not isinstance(self.level, bool):
            raise ValueError(f"AudioEncoderConfig.level: expected true or false, got {self.level!r}")


class _CausalBlock(nn.Module):
    """x + Linear(GELU(CausalConv(LayerNorm(x)))): [B, T, H] -> [B, T, H]; `past` holds the previous
    `context` normalised frames [B, context, H] (zeros before the start).

    The causal conv (kernel k, dilation d) is one Linear over the k stacked frames t - (k - 1 - j) d,
    j = 0..k-1: on the CPU it stays a plain GEMM, where nn.Conv1d goes through oneDNN's thread pool, which
    costs milliseconds per call on a busy 2-core machine (measured: 1.1 ms vs 0.05 ms for one frame). GELU
    is the tanh form for the same reason (the exact erf form took 12 ms on 256 values with 2 threads).
    """

    def __init__(self, hidden: int, kernel: int, dilation: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.conv = nn.Linear(kernel * hidden, hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.kernel, self.dilation = kernel, dilation
        self.context = (kernel - 1) * dilation

    def forward(self, x: Tensor, past: Tensor) -> tuple[Tensor, Tensor]:
        t, d = x.shape[1], self.dilation
        h = torch.cat([past, self.norm(x)], dim=1)                                 # [B, context + T, H]
        taps = torch.cat([h[:, j * d: j * d + t] for j in range(self.kernel)], dim=-1)  # [B, T, k H]
        y = F.gelu(self.conv(taps), approximate="tanh")
        return x + self.proj(y), h[:, h.shape[1] - self.context:]


class AudioEncoder(Pretrained, nn.Module):
    """Causal encoder: log-mel [B, T, n_mels] (or [T, n_mels]) -> features [B, T, dim] (or [T, dim])."""
    config_class = AudioEncoderConfig

    def __init__(self, config: AudioEncoderConfig = AudioEncoderConfig()):
        super().__init__()
        if not isinstance(config, AudioEncoderConfig):
            raise ValueError(f"config: expected an AudioEncoderConfig, got {type(config).__name__}")
        self.config = config
        self.in_norm = nn.LayerNorm(config.n_mels)
        self.in_proj = nn.Linear(config.n_mels + 2 * config.level, config.hidden)
        self.blocks = nn.ModuleList(_CausalBlock(config.hidden, config.kernel, 2 ** i) for i in range(config.layers))
        self.out_norm = nn.LayerNorm(config.hidden)
        self.out_proj = nn.Linear(config.hidden, config.dim)

    @property
    def receptive_field(self) -> int:
        """Frames of mel that one output frame sees (itself and the past)."""
        return 1 + sum(b.context for b in self.blocks)

    def _check_mel(self, mel, shapes: str) -> Tensor:
        if not isinstance(mel, Tensor):
            raise ValueError(f"mel: expected a torch.Tensor {shapes}, got {type(mel).__name__}")
        if mel.dim() not in (2, 3) or mel.shape[-1] != self.config.n_mels or not mel.is_floating_point():
            raise ValueError(f"mel: expected a float tensor {shapes} with n_mels={self.config.n_mels}, "
                             f"got {mel.dtype} {list(mel.shape)}")
        if mel.numel() and not bool(torch.isfinite(mel).all()):
            raise ValueError(f"mel: {int((~torch.isfinite(mel)).sum())} values are NaN or inf")
        p = next(self.parameters())
        return mel.to(device=p.device, dtype=p.dtype)

    def _zero_past(self, batch: int) -> list[Tensor]:
        p = next(self.parameters())
        return [p.new_zeros(batch, b.context, self.config.hidden) for b in self.blocks]

    def _run(self, mel: Tensor, past: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        x = self.in_norm(mel)
        if self.config.level:                       # per frame: mean and std of log-mel over the bins [B, T, 2]
            x = torch.cat([x, mel.mean(-1, keepdim=True), mel.std(-1, unbiased=False, keepdim=True)], -1)
        x = self.in_proj(x)
        new_past = []
        for block, p in zip(self.blocks, past):
            x, p = block(x, p)
            new_past.append(p)
        return self.out_proj(self.out_norm(x)), new_past

    def forward(self, mel: Tensor) -> Tensor:
        """mel [B, T, n_mels] -> [B, T, dim]; a [T, n_mels] input gives [T, dim]."""
        mel = self._check_mel(mel, "[B, T, n_mels] or [T, n_mels]")
        squeeze = mel.dim() == 2
        if squeeze:
            mel = mel[None]
        if mel.shape[1] == 0:
            out = mel.new_zeros(mel.shape[0], 0, self.config.dim)
        else:
            out, _ = self._run(mel, self._zero_past(mel.shape[0]))
        return out[0] if squeeze else out

    def stream(self) -> "AudioEncoderStream":
        """A live encoder over one utterance: push(mel [t, n_mels]) -> [t, dim], equal to forward()."""
        return AudioEncoderStream(self)


class AudioEncoderStream:
    """Frame-by-frame AudioEncoder (no grad). Holds each block's last `context` normalised frames, so
    the concatenation of push() outputs equals model(mel) on the concatenated input."""

    def __init__(self, model: AudioEncoder):
        self.model = model
        self.reset()

    def reset(self) -> None:
        self._past = self.model._zero_past(1)
        self.frames = 0

    def push(self, mel: Tensor) -> Tensor:
        """mel [t, n_mels] -> [t, dim] (t may be 0)."""
        mel = self.model._check_mel(mel, "[t, n_mels]")
        if mel.dim() != 2:
            raise ValueError(f"mel: expected [t, n_mels] (one stream, no batch), got {list(mel.shape)}")
        if mel.shape[0] == 0:
            return mel.new_zeros(0, self.model.config.dim)
        with torch.no_grad():
            out, self._past = self.model._run(mel[None], self._past)
        self.frames += mel.shape[0]
        return out[0]

    @staticmethod
    def push_many(streams: list["AudioEncoderStream"], mels: list[Tensor]) -> list[Tensor]:
        """push for several streams of one model with mels of one length t, as one batch: -> [t, dim] each
        (rows are independent: each stream gets what its own push would give, up to float rounding)."""
        model = streams[0].model
        if any(s.model is not model for s in streams) or len({m.shape[0] for m in mels}) != 1:
            raise ValueError("push_many: the streams must share one model and the mels one length")
        mel = torch.stack([model._check_mel(m, "[t, n_mels]") for m in mels])              # [B, t, n_mels]
        if mel.dim() != 3:
            raise ValueError(f"mels: expected [t, n_mels] each, got {list(mel.shape[1:])}")
        if mel.shape[1] == 0:
            return [mel.new_zeros(0, model.config.dim) for _ in streams]
        past = [torch.cat([s._past[j] for s in streams]) for j in range(len(model.blocks))]
        with torch.no_grad():
            out, new_past = model._run(mel, past)
        for b, s in enumerate(streams):
            s._past = [p[b:b + 1] for p in new_past]
            s.frames += mel.shape[1]
        return list(out)
