"""Learned audio features a_t [T, D_a] at 25 fps, the input of the motion generator (engine/motion).

`AudioEncoder` turns causal log-mel frames from engine.audio (mel [B, T, n_mels]; per frame normalised over
the bins, plus that frame's mean and spread, its level) into features [B, T, dim] with residual CAUSAL dilated
temporal convolutions: output t depends on mel frames <= t only, so the live path (`AudioEncoder.stream().push`)
gives the same numbers as `forward` on the whole utterance, frame by frame,
with a receptive field of 1 + (kernel - 1) (2^layers - 1) frames. It is trained in distill/ and saved with
save_pretrained / from_pretrained (engine.pretrained).

`PretrainedSpeechEncoder` is the optional alternative: a wav2vec2-family or Whisper encoder from a LOCAL
transformers model folder, whose hidden states are brought to the same 25 fps grid (offline only: those
models look at the future).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.audio import HOP, SAMPLE_RATE, _check_wave
from engine.pretrained import Pretrained


@dataclass
class AudioEncoderConfig:
    n_mels: int = 80     # input log-mel bins (engine.audio.MelConfig.n_mels)
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


# ------------------------------------------------------------------------------------- pretrained (optional)
def _import_transformers():
    try:
        import transformers
    except ImportError as e:
        raise ImportError("PretrainedSpeechEncoder needs the `transformers` package, which is not installed "
                          f"(pip install transformers): {e}") from e
    return transformers


def _interp_time(feat: Tensor, centres: Tensor, targets: Tensor) -> Tensor:
    """Linear interpolation in time: feat [K, D] at increasing sample times centres [K] -> [T, D] at
    targets [T] (held constant beyond the ends)."""
    if feat.shape[0] == 1:
        return feat.expand(targets.shape[0], -1).clone()
    j = torch.searchsorted(centres, targets).clamp(1, feat.shape[0] - 1)
    a = ((targets - centres[j - 1]) / (centres[j] - centres[j - 1])).clamp(0.0, 1.0)[:, None]
    return feat[j - 1] * (1 - a) + feat[j] * a


class PretrainedSpeechEncoder:
    """A speech encoder from a local transformers folder: wave [S] at 16 kHz -> features [S // HOP, D].

    Supported: the wav2vec2 family (wav2vec2, HuBERT, WavLM, data2vec-audio: any config with conv_stride;
    the last hidden state) and Whisper (its encoder). The model's frames are placed at the sample times of their
    receptive-field centres and linearly interpolated to 25 fps frame centres (t + 1/2) * HOP. Audio longer
    than `max_seconds` is encoded in windows of at most that length, cut at frame boundaries (attention costs
    the square of the length; Whisper only takes a fixed window). Offline only: these models see the future.
    """

    def __init__(self, path, device: str | torch.device = "cpu", max_seconds: float = 30.0):
        if not isinstance(path, (str, Path)):
            raise ValueError(f"path: expected a str or Path to a local model folder, got {type(path).__name__}")
        p = Path(path)
        if not p.is_dir():
            raise ValueError(f"path: no model folder at {p} (a local folder is required; hub names are not "
                             "downloaded)")
        if not (p / "config.json").is_file():
            raise ValueError(f"path: {p} is not a transformers model folder (missing config.json)")
        if not max_seconds >= HOP / SAMPLE_RATE:
            raise ValueError(f"max_seconds: expected at least one frame ({HOP / SAMPLE_RATE} s), got {max_seconds!r}")
        tf = _import_transformers()
        try:
            cfg = tf.AutoConfig.from_pretrained(str(p), local_files_only=True)
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(f"path: {p} holds no readable transformers config ({e})") from e
        try:
            model = self._load(tf, p, cfg)
        except OSError as e:  # config present, weights or preprocessor files missing or unreadable
            raise ValueError(f"path: could not load the {cfg.model_type!r} model in {p} ({e})") from e
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.max_samples = max(HOP, int(max_seconds * SAMPLE_RATE) // HOP * HOP)
        if self._window is not None:
            self.max_samples = min(self.max_samples, max(HOP, self._window // HOP * HOP))

    def _load(self, tf, p: Path, cfg):
        """The model (encoder part) for `cfg`; sets kind, dim, stride, offset, the window and the preprocessing."""
        has_fe = (p / "preprocessor_config.json").is_file()
        if cfg.model_type == "whisper":
            self.kind = "whisper"
            model = tf.WhisperModel.from_pretrained(str(p), local_files_only=True).get_encoder()
            self._fe = (tf.WhisperFeatureExtractor.from_pretrained(str(p), local_files_only=True) if has_fe
                        else tf.WhisperFeatureExtractor(feature_size=cfg.num_mel_bins))
            self._window = model.config.max_source_positions * 2 * self._fe.hop_length  # samples per input
            self.stride, self.offset = 2 * self._fe.hop_length, 0.0  # centred mel frames, conv2 stride 2
            self.dim = cfg.d_model
        elif hasattr(cfg, "conv_stride") and hasattr(cfg, "conv_kernel"):
            self.kind = "wav2vec2"
            model = tf.AutoModel.from_pretrained(str(p), local_files_only=True)
            fe = tf.AutoFeatureExtractor.from_pretrained(str(p), local_files_only=True) if has_fe else None
            self._normalize = bool(getattr(fe, "do_normalize", True))
            self.stride, rf = 1, 1
            for k, s in zip(cfg.conv_kernel, cfg.conv_stride):
                rf, self.stride = rf + (k - 1) * self.stride, self.stride * s
            self.offset = (rf - 1) / 2.0                              # centre of frame 0's receptive field
            self._window = None
            self.dim = cfg.hidden_size
        else:
            raise ValueError(f"path: {p} holds a {cfg.model_type!r} model; expected wav2vec2-family or whisper")
        return model

    def _encode(self, x: Tensor) -> Tensor:
        """One window x [L] -> model frames [K, D] (K >= 1)."""
        if self.kind == "whisper":
            feats = self._fe(x.numpy(), sampling_rate=SAMPLE_RATE, padding="max_length", max_length=self._window,
                             return_tensors="pt").input_features
            h = self.model(feats.to(self.device, next(self.model.parameters()).dtype)).last_hidden_state[0]
            return h[: math.ceil(x.shape[0] / self.stride)]
        if self._normalize:
            x = (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-7)
        return self.model(x[None].to(self.device, next(self.model.parameters()).dtype)).last_hidden_state[0]

    def __call__(self, wave16k: Tensor) -> Tensor:
        """wave16k [S] float at 16 kHz -> [S // HOP, D] float32 on the CPU."""
        wave = _check_wave("wave16k", wave16k).float()
        t = wave.shape[0] // HOP
        if t == 0:
            return torch.zeros(0, self.dim)
        n_win = math.ceil(t * HOP / self.max_samples)
        bounds = [round(i * t / n_win) * HOP for i in range(n_win + 1)]  # even windows cut on frames, up to t HOP
        feats, centres = [], []
        with torch.inference_mode():
            for a, b in zip(bounds[:-1], bounds[1:]):
                h = self._encode(wave[a:b]).float().cpu()
                feats.append(h)
                centres.append(a + self.offset + self.stride * torch.arange(h.shape[0], dtype=torch.float64))
        targets = (torch.arange(t, dtype=torch.float64) + 0.5) * HOP
        feat, cen = torch.cat(feats), torch.cat(centres)
        return _interp_time(feat.double(), cen, targets).float()
