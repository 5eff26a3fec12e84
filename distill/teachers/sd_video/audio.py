"""Audio features: whisper-tiny encoder hidden states, cut into one window of tokens per video frame.

What the released model sees (antgroup/echomimic_v2 src/models/whisper/audio2feature.py, whisper/transcribe.py,
whisper/audio.py, whisper/model.py):
1. log-mel of the whole clip: STFT n_fft 400, hop 160, Hann window (centered, reflect pad), the last frame dropped,
   power, 80 slaney mel filters, log10 clamped at 1e-10, floored at max - 8, then (x + 4) / 4. 100 frames/s.
2. 30 s windows (3000 mel frames, zero-padded) through the encoder; for each window, the hidden state after
   conv1/conv2/positions and after each of the 4 layers (no final LayerNorm): [1500, 5, 384]; the first
   (mel frames in this window) // 2 steps are kept (50 steps/s) and the windows concatenated -> [T50, 5, 384].
3. per video frame i (at `fps`): steps (c - 2*2) ... (c + 3*2 - 1) with c = int(i * 50 / fps), clamped to the clip,
   i.e. 10 steps x 5 hidden states = 50 tokens of 384 (get_sliced_feature with audio_feat_length [2, 2]).
The encoder is transformers' WhisperEncoder; the OpenAI checkpoint keys are renamed for it in checkpoint.py. The
mel filters are transformers' mel_filter_bank with the slaney scale and norm (what WhisperFeatureExtractor uses).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import WhisperConfig
from transformers.audio_utils import mel_filter_bank
from transformers.models.whisper.modeling_whisper import WhisperEncoder

SAMPLE_RATE, N_FFT, HOP = 16000, 400, 160


def whisper_config(cfg) -> WhisperConfig:
    return WhisperConfig(num_mel_bins=cfg.whisper_mels, d_model=cfg.audio_dim, encoder_layers=cfg.whisper_layers,
                         encoder_attention_heads=cfg.whisper_heads, encoder_ffn_dim=cfg.whisper_ffn,
                         decoder_layers=1, decoder_attention_heads=cfg.whisper_heads, decoder_ffn_dim=cfg.whisper_ffn,
                         max_source_positions=cfg.whisper_window_seconds * 50)


class WhisperAudioFeatures(nn.Module):
    """audio [S] at 16 kHz -> per-frame tokens [T, cfg.audio_tokens_per_frame, cfg.audio_dim]."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.encoder = WhisperEncoder(whisper_config(cfg))
        filters = mel_filter_bank(num_frequency_bins=1 + N_FFT // 2, num_mel_filters=cfg.whisper_mels,
                                  min_frequency=0.0, max_frequency=8000.0, sampling_rate=SAMPLE_RATE,
                                  norm="slaney", mel_scale="slaney")
        self.register_buffer("mel_filters", torch.from_numpy(filters).float().T.contiguous(), persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)

    @property
    def window_frames(self) -> int:
        return self.cfg.whisper_window_seconds * SAMPLE_RATE // HOP

    def log_mel(self, audio: Tensor) -> Tensor:
        """audio [S] -> [n_mels, S // 160]."""
        window = self.window.to(audio.device, torch.float32)
        stft = torch.stft(audio.float(), N_FFT, HOP, window=window, return_complex=True)
        power = stft[:, :-1].abs() ** 2
        mel = self.mel_filters.to(audio.device, torch.float32) @ power
        log = torch.clamp(mel, min=1e-10).log10()
        log = torch.maximum(log, log.max() - 8.0)
        return (log + 4.0) / 4.0

    def hidden_states(self, audio: Tensor) -> Tensor:
        """audio [S] -> [T50, layers + 1, D]: the encoder's hidden states at 50 steps per second."""
        if audio.dim() != 1 or audio.numel() < N_FFT:
            raise ValueError(f"audio: expected [S] with S >= {N_FFT} samples at 16 kHz, got {list(audio.shape)}")
        mel = self.log_mel(audio)
        enc = self.encoder
        dtype = enc.conv1.weight.dtype
        out = []
        for start in range(0, mel.shape[1], self.window_frames):
            seg = mel[:, start:start + self.window_frames]
            keep = seg.shape[1] // 2
            seg = F.pad(seg, (0, self.window_frames - seg.shape[1]))[None].to(dtype)
            x = F.gelu(enc.conv2(F.gelu(enc.conv1(seg)))).permute(0, 2, 1)
            x = x + enc.embed_positions.weight[: x.shape[1]].to(x.dtype)
            states = [x]
            for layer in enc.layers:
                x = layer(x, None)
                x = x[0] if isinstance(x, tuple) else x
                states.append(x)
            out.append(torch.stack(states, dim=2)[0, :keep])      # [keep, layers + 1, D]
        return torch.cat(out, dim=0)

    def windows(self, states: Tensor, num_frames: int) -> Tensor:
        """states [T50, L, D] -> [num_frames, (before + 1 + after) * 50/fps * L, D]."""
        step = 50 // self.cfg.fps
        before, after = self.cfg.audio_context
        centers = (torch.arange(num_frames, device=states.device) * 50) // self.cfg.fps
        offsets = torch.arange(-before * step, (after + 1) * step, device=states.device)
        idx = (centers[:, None] + offsets[None]).clamp(0, states.shape[0] - 1)   # [F, W]
        return states[idx].reshape(num_frames, -1, states.shape[-1])

    def forward(self, audio: Tensor, num_frames: int | None = None) -> Tensor:
        if num_frames is None:
            num_frames = audio.numel() * self.cfg.fps // SAMPLE_RATE
        if num_frames < 1:
            raise ValueError(f"num_frames: expected >= 1, got {num_frames}")
        return self.windows(self.hidden_states(audio), num_frames)

