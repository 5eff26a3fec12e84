"""Audio in, 25 fps features out: file reading, mono mixing, resampling, causal log-mel and RMS frames.

Speech reaches the engine as a file (`load_audio`, `audio_features`) or as live PCM chunks from an agent or a
microphone (`AudioStream`). Either way it becomes mono float32 at 16 kHz (`to_mono`, `Resampler`) and then one
feature frame per 640 samples (40 ms, 25 fps, one per video frame): a log-mel spectrum mel [T, n_mels] and a
loudness rms [T]. The features go next to the learned encoder (`engine.audio.encoder.AudioEncoder`) and
from there to the motion generator (engine/motion).

Streaming equals offline. Every stage computes each output from the same input window with the same weights
whether the audio arrives at once or in chunks of any size:
- the resampler puts output n at input time n * src / dst and takes its taps from a fixed window around it;
- mel frame t is the spectrum of the `win` samples ending at sample (t + 1) * hop (zeros before the start), so
  it is final as soon as that sample has arrived: a 40 ms chunk gives one frame;
- arithmetic runs in float64 row by row, so chunking changes nothing but float32 rounding at the very end.

Shapes: S samples, C channels, T frames (25 fps).
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch import Tensor

SAMPLE_RATE = 16000
FPS = 25
HOP = SAMPLE_RATE // FPS  # 640 samples per video frame
MAX_CHANNELS = 16         # a second dimension larger than this is taken for a channels-first mistake
MAX_PHASES = 4096         # dst / gcd(src, dst) above this: the polyphase table would be unreasonably large

__all__ = ["SAMPLE_RATE", "FPS", "HOP", "read_audio", "load_audio", "to_mono", "Resampler", "MelConfig",
           "mel_filterbank", "log_mel", "frame_rms", "audio_features", "AudioStream"]


# ----------------------------------------------------------------------------------------------------- input
def _check_wave(name: str, x) -> Tensor:
    """ValueError naming `name` unless x is a finite float tensor [S]; returns it detached on the CPU."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor [S], got {type(x).__name__}")
    if x.dim() != 1:
        raise ValueError(f"{name}: expected a 1-D tensor [S] of samples, got shape {list(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got {x.dtype} (use to_mono for integer PCM)")
    x = x.detach().cpu()
    _check_finite(name, _np(x))
    return x


def _np(x: Tensor) -> np.ndarray:
    """A CPU float tensor as a numpy array (shared memory where numpy has the dtype)."""
    return x.numpy() if x.dtype in (torch.float16, torch.float32, torch.float64) else x.float().numpy()


def _check_finite(name: str, a: np.ndarray) -> None:
    # numpy, not torch: element-wise torch ops over 32k elements go to its thread pool, which can stall for
    # tens of milliseconds when the cores are busy (rendering); numpy runs them on the calling thread.
    bad = a.size - int(np.count_nonzero(np.isfinite(a)))
    if bad:
        raise ValueError(f"{name}: {bad} of {a.size} samples are NaN or inf (audio must be finite)")


_PCM_DTYPES = "float16/32/64, int16 or int32"


def to_mono(pcm, name: str = "pcm") -> Tensor:
    """PCM [S] or [S, C] (numpy or torch; float16/32/64, int16 or int32) -> mono [S] float32 in [-1, 1].

    Integers are scaled by their full scale (int16: / 32768, int32: / 2**31). Float samples beyond [-1, 1] are
    clipped, per channel, before the channels are averaged. NaN or inf samples are a ValueError giving their
    count. Zero samples give an empty [0] tensor (a live chunk may be empty).
    """
    if isinstance(pcm, Tensor):
        if pcm.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int16, torch.int32):
            raise ValueError(f"{name}: expected {_PCM_DTYPES} samples, got {pcm.dtype}")
        pcm = pcm.detach().cpu()
        x = (pcm.float() if pcm.dtype == torch.bfloat16 else pcm).numpy()
    elif isinstance(pcm, np.ndarray):
        x = pcm
    else:
        raise ValueError(f"{name}: expected a numpy array or torch.Tensor of samples, got {type(pcm).__name__}")
    if x.dtype.kind not in "fi" or x.dtype.itemsize not in ((2, 4, 8) if x.dtype.kind == "f" else (2, 4)):
        raise ValueError(f"{name}: expected {_PCM_DTYPES} samples, got numpy {x.dtype}")
    if x.ndim == 1:
        x = x[:, None]
    elif x.ndim != 2 or not 1 <= x.shape[1] <= MAX_CHANNELS:
        hint = " (channels first? pass pcm.T)" if x.ndim == 2 and x.shape[0] <= MAX_CHANNELS else ""
        raise ValueError(f"{name}: expected shape [S] or [S, C] with 1 <= C <= {MAX_CHANNELS}, "
                         f"got {list(x.shape)}{hint}")
    if x.dtype.kind == "f":
        _check_finite(name, x)
        x = np.clip(x.astype(np.float32), -1.0, 1.0)
    else:  # a power-of-two scale: exact for int16
        x = x.astype(np.float32) * np.float32(1.0 / (32768.0 if x.dtype.itemsize == 2 else 2147483648.0))
    mono = x[:, 0] if x.shape[1] == 1 else x.mean(axis=1, dtype=np.float64).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(mono))


def read_audio(path) -> tuple[Tensor, int]:
    """Read an audio file (WAV/FLAC/OGG/MP3/... through libsndfile) -> (mono [S] float32 in [-1, 1], its rate).

    ValueError for a missing file, a folder, a file libsndfile cannot decode, no samples, or NaN/inf samples.
    """
    if not isinstance(path, (str, Path)):
        raise ValueError(f"path: expected a str or Path to an audio file, got {type(path).__name__}")
    p = Path(path)
    if not p.exists():
        raise ValueError(f"path: audio file not found: {p}")
    if not p.is_file():
        raise ValueError(f"path: expected an audio file, got a folder or special file: {p}")
    try:
        data, rate = sf.read(str(p), dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, EOFError) as e:
        raise ValueError(f"path: {p} is not a readable audio file ({e})") from e
    if data.shape[0] == 0:
        raise ValueError(f"path: {p} holds no audio samples (0 frames)")
    return to_mono(data, name=f"path {p}"), int(rate)


def load_audio(path) -> Tensor:
    """Read an audio file as mono float32 at 16 kHz: [S] in [-1, 1] (see read_audio for the errors)."""
    wave, rate = read_audio(path)
    return Resampler(rate, SAMPLE_RATE)(wave)


# ------------------------------------------------------------------------------------------------ resampling
def _check_rate(name: str, rate) -> int:
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise ValueError(f"{name}: expected a positive integer sample rate in Hz, got {rate!r}")
    return int(rate)


class Resampler:
    """Windowed-sinc resampling from any integer rate to any other, offline or streaming, with equal results.

    Output sample n sits at input time n * src / dst = i + p / up (up = dst / gcd, down = src / gcd, phase
    p = n * down mod up). It is sum_k x[i - W + 1 + k] * w[p, k] over 2W taps, with x = 0 before the start
    and (at flush) after the end. w[p] samples the Kaiser-windowed (beta) ideal lowpass at the taps: cutoff
    fc = rolloff * min(src, dst) / 2, `zeros` sinc zero-crossings each side (so W = ceil(zeros * src / (2 fc))
    input samples), every row normalised to sum to 1 (DC passes exactly). The defaults (cutoff at the lower
    Nyquist rate, 64 zeros, beta 8.6) are flat within 0.001 dB to 0.95 of that rate, -6 dB at it and more than
    85 dB down from 1.05 of it on (measured in tests/test_audio.py): for 48 kHz -> 16 kHz that is flat to
    7.6 kHz (MelConfig.fmax), and what folds back from above 8.4 kHz lands below 7.6 kHz 85 dB down, while
    8-8.4 kHz folds into 7.6-8 kHz, outside the mel bands. src == dst is an exact pass-through.

    The sums run in float64 in numpy (single-threaded: a live push never waits on torch's thread pool), by
    blocks of `up` outputs: block q reads the K = 2W + down - 1 inputs from q * down - W + 1 on, against the
    [up, K] table whose row r holds w[(r down) mod up] at offset floor(r down / up).

    Offline `r(x)`: [S] -> [floor(S * dst / src)] float32. Streaming: `push(chunk)` returns the outputs whose
    taps have all arrived, `flush()` the rest (and resets the stream for reuse); the concatenation equals r(x).
    """

    def __init__(self, src_rate: int, dst_rate: int = SAMPLE_RATE, *, zeros: int = 64, rolloff: float = 1.0,
                 beta: float = 8.6):
        self.src_rate, self.dst_rate = _check_rate("src_rate", src_rate), _check_rate("dst_rate", dst_rate)
        if isinstance(zeros, bool) or not isinstance(zeros, int) or zeros < 1:
            raise ValueError(f"zeros: expected an integer >= 1 (sinc zero-crossings each side), got {zeros!r}")
        if not 0.0 < rolloff <= 1.0:
            raise ValueError(f"rolloff: expected 0 < rolloff <= 1 (cutoff / lower Nyquist rate), got {rolloff!r}")
        if not beta >= 0.0:
            raise ValueError(f"beta: expected a Kaiser beta >= 0, got {beta!r}")
        g = math.gcd(self.src_rate, self.dst_rate)
        self.up, self.down = self.dst_rate // g, self.src_rate // g
        if self.up > MAX_PHASES:
            raise ValueError(f"dst_rate: {self.dst_rate} / gcd({self.src_rate}, {self.dst_rate}) = {self.up} "
                             f"filter phases, more than {MAX_PHASES}; resample through a rounder rate")
        cutoff = rolloff * min(1.0, self.dst_rate / self.src_rate)  # as a fraction of the input Nyquist rate
        self.width = w_ = math.ceil(zeros / cutoff)                  # W: half the taps, in input samples
        phase = (np.arange(self.up) * self.down) % self.up
        x = np.arange(2 * w_)[None] - w_ + 1 - phase[:, None] / self.up     # tap time - output time [up, 2W]
        u = np.clip(x * cutoff / zeros, -1.0, 1.0)
        w = np.sinc(cutoff * x) * np.i0(beta * np.sqrt(1.0 - u * u)) / np.i0(beta) * (np.abs(u) < 1.0)
        w /= w.sum(axis=1, keepdims=True)
        self.taps = 2 * w_ + self.down - 1                                   # K
        self.table = np.zeros((self.up, self.taps))                          # [up, K] float64
        for r, off in enumerate((np.arange(self.up) * self.down) // self.up):
            self.table[r, off: off + 2 * w_] = w[r]
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the next push starts a new signal at time 0."""
        self._buf = np.zeros(self.width - 1)  # input samples from absolute index _start on (zeros before 0)
        self._start = -(self.width - 1)
        self._n_in = 0                        # real input samples received
        self._n_out = 0                       # next output index

    def __call__(self, x: Tensor) -> Tensor:
        """Offline: [S] float -> [floor(S * dst / src)] float32 (the stream state of `self` is untouched)."""
        x = _check_wave("x", x)
        if self.up == self.down:
            return torch.from_numpy(_np(x).astype(np.float32))
        fresh = copy.copy(self)
        fresh.reset()
        return torch.cat([fresh.push(x), fresh.flush()])

    def push(self, chunk: Tensor) -> Tensor:
        """Streaming: append chunk [s] (float) and return the new output samples that are now final, float32."""
        chunk = _check_wave("chunk", chunk)
        if self.up == self.down:
            return torch.from_numpy(_np(chunk).astype(np.float32))
        self._buf = np.concatenate([self._buf, _np(chunk).astype(np.float64)])
        self._n_in += chunk.shape[0]
        # Output n is final once its last tap i_n + W has arrived (i_n = floor(n down / up)); it must also lie
        # inside the final length floor(n_in up / down), so that flush never takes back an output given.
        ready = -((-(self._n_in - self.width) * self.up) // self.down) if self._n_in > self.width else 0
        return self._emit(min(ready, self._n_in * self.up // self.down))

    def flush(self) -> Tensor:
        """End of stream: the remaining outputs (zeros after the last input), float32; then reset()."""
        if self.up == self.down:
            return torch.zeros(0)
        out = self._emit(self._n_in * self.up // self.down)
        self.reset()
        return out

    def _emit(self, n_end: int) -> Tensor:
        """Outputs [_n_out, n_end) as float32. Rows of the last block past n_end read zeros (their taps may not
        have arrived) and are dropped; the rows kept have zero weights there, so they see only real input."""
        n0 = self._n_out
        if n_end <= n0:
            return torch.zeros(0)
        q0, q1 = n0 // self.up, (n_end - 1) // self.up + 1                  # blocks [q0, q1)
        a = q0 * self.down - self.width + 1 - self._start                    # buffer index of block q0's tap 0
        need = a + (q1 - q0 - 1) * self.down + self.taps
        buf = self._buf if need <= len(self._buf) else np.concatenate([self._buf, np.zeros(need - len(self._buf))])
        blocks = sliding_window_view(buf[a:need], self.taps)[:: self.down]   # [q1 - q0, K], a view
        out = np.einsum("qk,rk->qr", blocks, self.table).reshape(-1)[n0 - q0 * self.up: n_end - q0 * self.up]
        self._n_out = n_end
        keep = (n_end // self.up) * self.down - self.width + 1               # tap 0 of the next block
        self._buf, self._start = self._buf[keep - self._start:], keep
        return torch.from_numpy(out.astype(np.float32))


# ------------------------------------------------------------------------------------------------- features
@dataclass
class MelConfig:
    """Causal log-mel frames at 16 kHz: frame t = log(max(mel(|rfft(hann * x[(t+1)hop - win : (t+1)hop])|^2),
    floor)), HTK mel scale with unit-peak triangles from fmin to fmax."""
    win: int = 800
    n_fft: int = 1024
    hop: int = HOP
    n_mels: int = 80
    fmin: float = 20.0
    fmax: float = 7600.0
    floor: float = 1e-5

    def __post_init__(self):
        for key in ("win", "n_fft", "hop", "n_mels"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"MelConfig.{key}: expected an integer >= 1, got {v!r}")
        if self.n_fft < self.win:
            raise ValueError(f"MelConfig.n_fft: must be >= win ({self.win}), got {self.n_fft}")
        if not 0.0 <= self.fmin < self.fmax <= SAMPLE_RATE / 2:
            raise ValueError(f"MelConfig.fmin/fmax: need 0 <= fmin < fmax <= {SAMPLE_RATE / 2} (Nyquist), "
                             f"got fmin={self.fmin!r}, fmax={self.fmax!r}")
        if not self.floor > 0.0:
            raise ValueError(f"MelConfig.floor: expected a positive log floor, got {self.floor!r}")


def hz_to_mel(f):
    """HTK mel scale: 2595 log10(1 + f / 700)."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int = SAMPLE_RATE, fmin: float = 20.0,
                   fmax: float = 7600.0) -> Tensor:
    """[n_mels, n_fft // 2 + 1] float64: triangle m rises from edge m to 1 at edge m+1 and falls to 0 at
    edge m+2, with n_mels + 2 edges evenly spaced on the HTK mel scale from fmin to fmax (unit peak, no area
    normalisation), evaluated at the rfft bin frequencies k * sample_rate / n_fft."""
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    f = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    fb = np.maximum(0.0, np.minimum((f - lo) / (mid - lo), (hi - f) / (hi - mid)))
    return torch.from_numpy(fb)


@functools.lru_cache(maxsize=8)
def _mel_tables(key: tuple) -> tuple[Tensor, Tensor]:
    cfg = MelConfig(*key)
    window = torch.hann_window(cfg.win, periodic=True, dtype=torch.float64)
    return window, mel_filterbank(cfg.n_mels, cfg.n_fft, SAMPLE_RATE, cfg.fmin, cfg.fmax).T.contiguous()


def _log_mel_frames(frames: Tensor, cfg: MelConfig) -> Tensor:
    """frames [t, win] float32 -> log-mel [t, n_mels] float32 (float64 inside, row by row)."""
    if frames.shape[0] == 0:
        return torch.zeros(0, cfg.n_mels)
    window, fb_t = _mel_tables(dataclasses.astuple(cfg))
    spec = torch.fft.rfft(frames.double() * window, n=cfg.n_fft)     # [t, n_fft // 2 + 1]
    power = spec.real.square() + spec.imag.square()
    return (power @ fb_t).clamp_min_(cfg.floor).log_().float()


def _rms_rows(seg: Tensor) -> Tensor:
    """seg [t, hop] -> RMS [t] float32."""
    return seg.double().square().mean(dim=1).sqrt().float()


def _check_cfg(cfg) -> MelConfig:
    if not isinstance(cfg, MelConfig):
        raise ValueError(f"cfg: expected a MelConfig, got {type(cfg).__name__}")
    return cfg


def log_mel(wave: Tensor, cfg: MelConfig = MelConfig()) -> Tensor:
    """wave [S] float at 16 kHz -> causal log-mel [T, n_mels] float32 with T = S // hop.

    Frame t is the log-mel spectrum of samples [(t+1) hop - win, (t+1) hop) (zeros before sample 0)."""
    wave, cfg = _check_wave("wave", wave).float(), _check_cfg(cfg)
    t = wave.shape[0] // cfg.hop
    if t == 0:
        return torch.zeros(0, cfg.n_mels)
    padded = torch.cat([torch.zeros(cfg.win), wave])  # frame t = padded[(t+1) hop : (t+1) hop + win]
    return _log_mel_frames(padded[cfg.hop: t * cfg.hop + cfg.win].unfold(0, cfg.win, cfg.hop), cfg)


def frame_rms(wave: Tensor, hop: int = HOP) -> Tensor:
    """wave [S] float -> [T] float32, T = S // hop: the RMS of samples [t hop, (t+1) hop)."""
    wave = _check_wave("wave", wave).float()
    if isinstance(hop, bool) or not isinstance(hop, int) or hop < 1:
        raise ValueError(f"hop: expected an integer >= 1, got {hop!r}")
    t = wave.shape[0] // hop
    return _rms_rows(wave[: t * hop].reshape(t, hop))


def audio_features(wave_or_path, sample_rate: int | None = None,
                   cfg: MelConfig = MelConfig()) -> tuple[Tensor, Tensor]:
    """Offline features: (mel [T, n_mels], rms [T]) float32 at 25 fps, T = S16k // hop.

    wave_or_path: a file path (its own rate is used; `sample_rate` must then be None), or PCM [S] / [S, C]
    (numpy or torch, float or int16/int32) at `sample_rate` Hz (None: 16 kHz). Equals what AudioStream gives
    for the same PCM pushed in chunks of any size and flushed.
    """
    cfg = _check_cfg(cfg)
    if isinstance(wave_or_path, (str, Path)):
        if sample_rate is not None:
            raise ValueError(f"sample_rate: must be None for a file (its own rate is used), got {sample_rate!r}")
        wave16 = load_audio(wave_or_path)
    else:
        rate = SAMPLE_RATE if sample_rate is None else _check_rate("sample_rate", sample_rate)
        wave16 = Resampler(rate, SAMPLE_RATE)(to_mono(wave_or_path, name="wave_or_path"))
    return log_mel(wave16, cfg), frame_rms(wave16, cfg.hop)


class AudioStream:
    """Live features: PCM chunks at any rate and channel count in, (mel [t, n_mels], rms [t]) frames out.

    push(pcm) takes a chunk [s] or [s, C] (numpy or torch, float or int16/int32; see to_mono) and returns the
    frames completed by it: frame t is out as soon as 16 kHz sample (t + 1) * hop exists (after the resampler's
    look-ahead of `Resampler.width` input samples for a non-16 kHz input). flush() ends the utterance, returns
    the last frames and resets the stream for the next one. Pushes + flush equal audio_features (<= 1e-5).
    """

    def __init__(self, sample_rate: int, cfg: MelConfig = MelConfig()):
        self.sample_rate = _check_rate("sample_rate", sample_rate)
        self.cfg = _check_cfg(cfg)
        self._resampler = Resampler(self.sample_rate, SAMPLE_RATE)
        self.reset()

    def reset(self) -> None:
        """Drop everything buffered; the next push starts a new utterance at frame 0."""
        self._resampler.reset()
        self._x = torch.zeros(self.cfg.win)   # 16 kHz samples from index _x0 on (zeros before 0)
        self._x0 = -self.cfg.win
        self.frames = 0                       # frames given out so far (the next frame's index)

    def push(self, pcm) -> tuple[Tensor, Tensor]:
        """Add a chunk; return (mel [t, n_mels], rms [t]) for the frames it completes (t may be 0)."""
        return self._take(self._resampler.push(to_mono(pcm, name="pcm")))

    def flush(self) -> tuple[Tensor, Tensor]:
        """End of stream: the frames completed by the resampler's tail; then reset()."""
        out = self._take(self._resampler.flush())
        self.reset()
        return out

    def _take(self, x16: Tensor) -> tuple[Tensor, Tensor]:
        cfg, t0 = self.cfg, self.frames
        self._x = torch.cat([self._x, x16])
        t1 = (self._x0 + self._x.shape[0]) // cfg.hop
        if t1 <= t0:
            return torch.zeros(0, cfg.n_mels), torch.zeros(0)
        n, a = t1 - t0, (t0 + 1) * cfg.hop - cfg.win - self._x0   # a: buffer index where frame t0 starts
        mel = _log_mel_frames(self._x[a: a + (n - 1) * cfg.hop + cfg.win].unfold(0, cfg.win, cfg.hop), cfg)
        b = t0 * cfg.hop - self._x0
        rms = _rms_rows(self._x[b: b + n * cfg.hop].reshape(n, cfg.hop))
        keep = min((t1 + 1) * cfg.hop - cfg.win, t1 * cfg.hop)      # first sample the next frame needs
        self._x, self._x0, self.frames = self._x[keep - self._x0:], keep, t1
        return mel, rms
