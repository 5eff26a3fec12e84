"""engine.audio.features / engine.audio.encoder: resampling, causal log-mel, streaming == offline, files, bad
audio, the encoder.

References are independent of the code under test: hand-computed filterbank values, numpy FFTs, pure tones of
known frequency and amplitude, and scipy.signal.resample_poly where scipy is installed.
"""
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from engine.audio.encoder import AudioEncoder, AudioEncoderConfig, AudioEncoderStream
from engine.audio.features import (
    FPS, HOP, SAMPLE_RATE, AudioStream, MelConfig, Resampler, audio_features, frame_rms, load_audio, log_mel,
    mel_filterbank, read_audio, to_mono,
)


def tone(freq, rate, seconds, amp=0.5, phase=0.3):
    t = np.arange(int(round(rate * seconds))) / rate
    return amp * np.sin(2 * np.pi * freq * t + phase)


def fft_peak(x, rate):
    """(frequency of the largest rfft bin, amplitude there) of a real signal holding whole periods."""
    spec = np.abs(np.fft.rfft(x)) * 2 / len(x)
    k = int(np.argmax(spec))
    return k * rate / len(x), spec[k]


def chunked(n, sizes, rng):
    """Split range(n) into consecutive chunks: sizes is an int, or 'random' (0 to 0.5 s at 16 kHz-ish)."""
    i, out = 0, []
    while i < n:
        step = int(rng.integers(0, 8000)) if sizes == "random" else sizes
        out.append((i, min(n, i + step)))
        i += step
    return out


# ------------------------------------------------------------------------------------------------ constants
def test_constants_and_frame_count():
    assert (SAMPLE_RATE, FPS, HOP) == (16000, 25, 640)
    for s in (0, 1, 639, 640, 641, 1279, 1280, 16000, 16639):
        w = torch.rand(s) - 0.5
        mel, rms = log_mel(w), frame_rms(w)
        assert mel.shape == (s // 640, 80) and rms.shape == (s // 640,) and mel.dtype == rms.dtype == torch.float32


# ---------------------------------------------------------------------------------------------- mel and rms
def test_mel_filterbank_hand_computation():
    # n_fft = 8 at 16 kHz: bins at 0, 2000, 4000, 6000, 8000 Hz. One band from 0 to 8000 Hz on the HTK scale:
    # mel(8000) = 2595 log10(1 + 8000/700) = 2840.023; the centre is mel 1420.012, i.e.
    # 700 (10^(1420.012/2595) - 1) = 1767.79 Hz. The bins all lie on the falling edge (8000 - f) / (8000 - 1767.79):
    # 2000 Hz -> 6000/6232.21 = 0.9627, 4000 -> 0.6418, 6000 -> 0.3209, 0 and 8000 Hz -> 0.
    fb = mel_filterbank(1, 8, 16000, 0.0, 8000.0)
    np.testing.assert_allclose(fb.numpy(), [[0.0, 0.9627, 0.6418, 0.3209, 0.0]], atol=1e-4)


def test_mel_rows_peak_at_mel_spaced_centres():
    cfg = MelConfig()
    fb = mel_filterbank(cfg.n_mels, cfg.n_fft, SAMPLE_RATE, cfg.fmin, cfg.fmax).numpy()
    assert fb.shape == (80, 513) and (fb.max(axis=1) > 0.5).all()       # no empty or starved band
    lo, hi = 2595 * math.log10(1 + 20 / 700), 2595 * math.log10(1 + 7600 / 700)
    centres = [700 * (10 ** ((lo + (m + 1) * (hi - lo) / 81) / 2595) - 1) for m in range(80)]
    df = SAMPLE_RATE / cfg.n_fft
    for m in range(80):
        assert abs(np.argmax(fb[m]) * df - centres[m]) < df, m          # peak bin brackets the centre
    # By hand: mel(20) = 31.75, mel(7600) = 2786.98, spacing 2755.23 / 81 = 34.02; the first centre is at mel
    # 65.76 -> 700 (10^(65.76/2595) - 1) = 42.06 Hz, the last at mel 2752.96 -> 7353.2 Hz.
    assert abs(centres[0] - 42.06) < 0.01 and abs(centres[-1] - 7353.2) < 0.1


def test_log_mel_of_1khz_tone_peaks_in_its_band():
    mel = log_mel(torch.from_numpy(tone(1000.0, SAMPLE_RATE, 1.0)).float())
    band = int(mel[2:].mean(0).argmax())
    lo, hi = 2595 * math.log10(1 + 20 / 700), 2595 * math.log10(1 + 7600 / 700)
    centres = np.array([700 * (10 ** ((lo + (m + 1) * (hi - lo) / 81) / 2595) - 1) for m in range(80)])
    assert band == int(np.argmin(np.abs(centres - 1000.0)))
    assert centres[band - 1] < 1000.0 < centres[band + 1]


def test_log_mel_matches_a_numpy_reference_and_is_causal():
    cfg = MelConfig()
    rng = np.random.default_rng(0)
    wave = rng.uniform(-0.5, 0.5, 5000).astype(np.float32)
    mel = log_mel(torch.from_numpy(wave), cfg).numpy()
    fb = mel_filterbank(cfg.n_mels, cfg.n_fft).numpy()
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(800) / 800)          # periodic Hann
    padded = np.concatenate([np.zeros(800), wave.astype(np.float64)])
    for t in range(mel.shape[0]):
        seg = padded[(t + 1) * 640: (t + 1) * 640 + 800]                  # samples [(t+1)640 - 800, (t+1)640)
        ref = np.log(np.maximum(fb @ (np.abs(np.fft.rfft(seg * hann, 1024)) ** 2), 1e-5))
        np.testing.assert_allclose(mel[t], ref, rtol=0, atol=1e-5)
    later = wave.copy()
    later[3 * 640:] = rng.uniform(-1, 1, len(wave) - 3 * 640)             # change only the future of frame 2
    np.testing.assert_array_equal(log_mel(torch.from_numpy(later))[:3].numpy(), mel[:3])


def test_frame_rms_hand_values():
    w = torch.cat([torch.full((640,), 0.5), torch.full((640,), -0.25), torch.zeros(100)])
    torch.testing.assert_close(frame_rms(w), torch.tensor([0.5, 0.25]))
    sine = torch.from_numpy(tone(250.0, SAMPLE_RATE, 0.4, amp=0.8)).float()  # 250 Hz: whole periods per frame
    torch.testing.assert_close(frame_rms(sine), torch.full((10,), 0.8 / math.sqrt(2)), rtol=1e-4, atol=0)


# ------------------------------------------------------------------------------------------------ resampler
@pytest.mark.parametrize("rate", [48000, 44100, 22050, 8000])
def test_resampled_tone_keeps_frequency_and_amplitude(rate):
    y = Resampler(rate)(torch.from_numpy(tone(1000.0, rate, 1.5, amp=0.6))).numpy()
    assert y.shape == (1.5 * rate * 16000 // rate,) and y.dtype == np.float32
    f, a = fft_peak(y[4000:20000], SAMPLE_RATE)                            # 1 s away from both edges
    assert abs(f - 1000.0) <= 0.01 * 1000.0 and abs(a - 0.6) <= 0.01 * 0.6, (f, a)


def test_resampler_against_scipy_resample_poly():
    signal = pytest.importorskip("scipy.signal")
    x = sum(tone(f, 48000, 1.0, amp=0.2, phase=f / 1000) for f in (300.0, 1234.0, 3000.0, 5000.0, 6000.0))
    ours = Resampler(48000)(torch.from_numpy(x)).double().numpy()
    ref = signal.resample_poly(x, 1, 3)                                   # output n also sits at input 3n
    # Tolerance: both filters pass these tones (<= 0.75 of the 8 kHz Nyquist rate) at unit gain up to their
    # passband error: ours < 0.004 %, scipy's default (Kaiser beta 5, 10 zero-crossings) up to ~0.1 %
    # (measured 0.08 % at 5 kHz). Five tones of amplitude 0.2 bound the difference by ~5 * 0.2 * 0.1 % = 1e-3;
    # 2e-3 leaves room for float32 output, and is ~500x below the signal's peak. Edges differ (different
    # filter lengths meet the zero padding), so 200 samples at each end are left out.
    np.testing.assert_allclose(ours[200:-200], ref[200:len(ours) - 200], rtol=0, atol=2e-3)


@pytest.mark.parametrize("rate", [48000, 44100])
def test_resampler_filter_response(rate):
    r = Resampler(rate)
    nyq = 8000.0
    f = np.linspace(0, rate / 2, 4001)
    for p in range(0, r.up, max(1, r.up // 8)):                          # several phases
        off = p * r.down // r.up
        w = r.table[p, off: off + 2 * r.width]
        gain = 20 * np.log10(np.abs(np.exp(-2j * np.pi * np.outer(f / rate, np.arange(len(w)))) @ w) + 1e-15)
        assert np.abs(gain[f <= 0.95 * nyq]).max() < 0.01                 # flat to 7.6 kHz
        assert gain[f >= 1.05 * nyq].max() < -80                          # nothing from 8.4 kHz up aliases


@pytest.mark.parametrize("rate", [48000, 44100, 22050, 11025, 8000, 16000])
def test_resampler_stream_equals_offline(rate):
    rng = np.random.default_rng(rate)
    x = torch.from_numpy(rng.uniform(-0.7, 0.7, int(rate * 0.6))).float()
    r = Resampler(rate)
    off = r(x)
    assert off.shape == (len(x) * 16000 // rate,)
    for sizes in (97, rate // 100, rate, "random"):                       # odd, 10 ms, 1 s, random
        parts = [r.push(x[a:b]) for a, b in chunked(len(x), sizes, rng)] + [r.flush()]
        got = torch.cat(parts)
        assert got.shape == off.shape and float((got - off).abs().max()) <= 1e-5, sizes
    assert r.flush().numel() == 0                                         # flushed streams restart empty


def test_resampler_identity_and_bad_arguments():
    x = torch.rand(1000) - 0.5
    assert torch.equal(Resampler(16000)(x), x)
    for bad in (0, -8000, 8000.0, True, "48k"):
        with pytest.raises(ValueError, match="src_rate"):
            Resampler(bad)
    with pytest.raises(ValueError, match="phases"):
        Resampler(16000, 16001 * 7)
    with pytest.raises(ValueError, match="chunk"):
        Resampler(48000).push(torch.zeros(10, dtype=torch.int16))
    with pytest.raises(ValueError, match="chunk"):
        Resampler(48000).push(torch.zeros(10, 2))


# ---------------------------------------------------------------------------------- streaming == offline
@pytest.mark.parametrize("rate,channels,dtype", [(48000, 2, np.int16), (8000, 2, np.int16),
                                                 (16000, 1, np.float32), (44100, 1, np.float64)])
def test_audio_stream_equals_offline(rate, channels, dtype):
    rng = np.random.default_rng(rate + channels)
    n = int(rate * 1.6)
    env = np.abs(np.sin(np.linspace(0, 9, n)))[:, None]                   # speech-like loudness changes
    pcm = rng.standard_normal((n, channels)) * env * 0.2
    pcm = (pcm * 32767).astype(np.int16) if dtype == np.int16 else pcm.astype(dtype)
    if channels == 1:
        pcm = pcm[:, 0]
    mel, rms = audio_features(pcm, rate)
    assert mel.shape == (n * 16000 // rate // HOP, 80) and rms.shape == mel.shape[:1]
    stream = AudioStream(rate)
    for sizes in (rate // 100, rate * 40 // 1000, rate, "random"):       # 10 ms, 40 ms, 1 s, random
        parts = [stream.push(pcm[a:b]) for a, b in chunked(n, sizes, rng)] + [stream.flush()]
        got_mel, got_rms = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        assert got_mel.shape == mel.shape
        assert float((got_mel - mel).abs().max()) <= 1e-5 and float((got_rms - rms).abs().max()) <= 1e-5, sizes


def test_40ms_chunks_at_16khz_give_one_frame_each():
    stream = AudioStream(16000)
    x = torch.rand(640 * 5) - 0.5
    counts = [stream.push(x[i * 640:(i + 1) * 640])[0].shape[0] for i in range(5)]
    assert counts == [1] * 5 and stream.frames == 5
    assert stream.push(torch.zeros(0))[0].shape == (0, 80)


# ------------------------------------------------------------------------------------------------------ files
@pytest.mark.parametrize("fmt,subtype,ext,lossless", [
    ("WAV", "PCM_16", "wav", True), ("WAV", "FLOAT", "wav", True), ("FLAC", "PCM_16", "flac", True),
    ("OGG", "VORBIS", "ogg", False), ("MP3", "MPEG_LAYER_III", "mp3", False)])
@pytest.mark.parametrize("rate", [44100, 8000])
def test_file_round_trip(tmp_path, fmt, subtype, ext, lossless, rate):
    if rate == 8000 and fmt == "MP3":
        rate = 16000                                                      # MPEG-1/2 layer III has no 8 kHz
    x = np.stack([tone(440.0, rate, 1.0, amp=0.5), tone(440.0, rate, 1.0, amp=0.3)], axis=1)
    path = tmp_path / f"a.{ext}"
    sf.write(path, x, rate, format=fmt, subtype=subtype)
    wave, got_rate = read_audio(path)
    assert got_rate == rate and wave.dtype == torch.float32 and wave.dim() == 1
    y = load_audio(str(path))
    if lossless:                                                          # exact up to the int16 step
        expect = Resampler(rate)(torch.from_numpy(x.mean(axis=1)))
        assert y.shape == expect.shape and float((y - expect).abs().max()) <= 1.5 / 32768
    else:                                                                 # lossy: the tone survives
        assert abs(y.shape[0] - 16000) <= 420                             # within one MP3 frame
        f, a = fft_peak(y[2000:14000].numpy(), SAMPLE_RATE)               # 0.75 s: 330 whole periods
        assert abs(f - 440.0) <= 2.0 and abs(a - 0.4) <= 0.04, (f, a)
    mel, rms = audio_features(path)
    assert mel.shape == (y.shape[0] // HOP, 80) and bool(torch.isfinite(mel).all())


# ------------------------------------------------------------------------------------------------- bad audio
def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ValueError, match="path: audio file not found"):
        load_audio(tmp_path / "nope.wav")
    with pytest.raises(ValueError, match="path: expected an audio file"):
        load_audio(tmp_path)
    with pytest.raises(ValueError, match="path: expected a str or Path"):
        load_audio(123)


def test_corrupt_files(tmp_path):
    text = tmp_path / "text.wav"
    text.write_text("this is not audio at all\n" * 20)
    good = tmp_path / "good.wav"
    sf.write(good, tone(440, 16000, 0.2), 16000, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(good.read_bytes()[:20])                              # header cut inside the fmt chunk
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    for p in (text, cut, empty):
        with pytest.raises(ValueError, match="not a readable audio file"):
            load_audio(p)


def test_zero_samples(tmp_path):
    p = tmp_path / "zero.wav"
    sf.write(p, np.zeros((0, 1)), 16000, subtype="PCM_16")
    with pytest.raises(ValueError, match="no audio samples"):
        load_audio(p)
    assert to_mono(np.zeros((0, 2), np.int16)).shape == (0,)
    mel, rms = audio_features(np.zeros(0, np.float32), 16000)
    assert mel.shape == (0, 80) and rms.shape == (0,)


def test_silence_gives_finite_features(tmp_path):
    p = tmp_path / "silence.flac"
    sf.write(p, np.zeros(48000, np.int16), 48000)
    mel, rms = audio_features(p)
    assert mel.shape == (25, 80) and bool(torch.isfinite(mel).all())
    assert bool((mel == math.log(1e-5)).all()) and bool((rms == 0).all())


def test_clipping_and_full_scale(tmp_path):
    torch.testing.assert_close(to_mono(torch.tensor([2.0, -3.0, 0.5, -1.0])), torch.tensor([1.0, -1.0, 0.5, -1.0]))
    np.testing.assert_array_equal(to_mono(np.array([-32768, 32767, 0], np.int16)).numpy(),
                                  np.array([-1.0, 32767 / 32768, 0.0], np.float32))
    np.testing.assert_array_equal(to_mono(np.array([-2**31, 2**30], np.int32)).numpy(), [-1.0, 0.5])
    p = tmp_path / "hot.wav"
    sf.write(p, tone(440, 16000, 0.5, amp=1.7), 16000, subtype="FLOAT")   # float WAV may exceed full scale
    wave, _ = read_audio(p)
    assert float(wave.abs().max()) == 1.0


def test_stereo_is_the_mean_of_channels():
    pcm = np.stack([np.full(10, 0.5), np.full(10, -0.1), np.full(10, 0.3)], axis=1).astype(np.float32)
    torch.testing.assert_close(to_mono(pcm), torch.full((10,), 0.7 / 3))
    torch.testing.assert_close(to_mono(torch.from_numpy(pcm[:, :1])), torch.full((10,), 0.5))
    big_endian = np.array([[1000, -1000], [16384, 16384]], dtype=">i2")
    torch.testing.assert_close(to_mono(big_endian), torch.tensor([0.0, 0.5]))


def test_nan_and_inf_are_rejected_with_their_count(tmp_path):
    bad = np.array([0.0, np.nan, 0.1, np.inf, -np.inf], np.float32)
    with pytest.raises(ValueError, match="pcm: 3 of 5 samples are NaN or inf"):
        to_mono(bad)
    with pytest.raises(ValueError, match="pcm: 3 of 5 samples are NaN or inf"):
        AudioStream(48000).push(bad)
    with pytest.raises(ValueError, match="wave: 1 of 3 samples"):
        log_mel(torch.tensor([0.0, float("nan"), 0.0]))
    p = tmp_path / "nan.wav"
    x = tone(440, 16000, 0.1).astype(np.float32)
    x[[5, 50]] = np.nan
    sf.write(p, x, 16000, subtype="FLOAT")
    with pytest.raises(ValueError, match="2 of 1600 samples are NaN or inf"):
        load_audio(p)


def test_wrong_dtype_and_shape():
    for bad in (np.zeros(10, np.uint8), np.zeros(10, np.int64), torch.zeros(10, dtype=torch.bool),
                torch.zeros(10, dtype=torch.complex64), np.zeros(10, np.int8)):
        with pytest.raises(ValueError, match="pcm: expected float16/32/64, int16 or int32"):
            to_mono(bad)
    with pytest.raises(ValueError, match="channels first"):
        to_mono(np.zeros((2, 48000), np.int16))
    with pytest.raises(ValueError, match=r"pcm: expected shape \[S\] or \[S, C\]"):
        to_mono(np.zeros((10, 2, 2), np.float32))
    with pytest.raises(ValueError, match="pcm: expected a numpy array or torch.Tensor"):
        to_mono([0.0, 0.1])
    with pytest.raises(ValueError, match="wave: expected a 1-D tensor"):
        log_mel(torch.zeros(2, 640))
    with pytest.raises(ValueError, match="wave: expected a floating-point tensor"):
        frame_rms(torch.zeros(640, dtype=torch.int16))
    with pytest.raises(ValueError, match="sample_rate: must be None for a file"):
        audio_features("x.wav", 16000)
    with pytest.raises(ValueError, match="sample_rate"):
        AudioStream(0)
    with pytest.raises(ValueError, match="MelConfig.fmin/fmax"):
        MelConfig(fmax=9000.0)
    with pytest.raises(ValueError, match="MelConfig.n_fft"):
        MelConfig(win=1024, n_fft=512)


# ---------------------------------------------------------------------------------------------- the encoder
TINY = AudioEncoderConfig(n_mels=16, dim=8, hidden=24, layers=3, kernel=3)


@torch.no_grad()
def test_encoder_shapes_and_causality():
    torch.manual_seed(0)
    enc = AudioEncoder(TINY)
    mel = torch.randn(2, 40, 16) * 2 - 5
    y = enc(mel)
    assert y.shape == (2, 40, 8) and enc.receptive_field == 15
    assert float((enc(mel[0]) - y[0]).abs().max()) < 1e-6              # unbatched input
    future = mel.clone()
    future[:, 25:] = torch.randn(2, 15, 16)
    assert float((enc(future)[:, :25] - y[:, :25]).abs().max()) == 0.0   # no look-ahead
    assert enc(mel[:, :0]).shape == (2, 0, 8)
    with pytest.raises(ValueError, match="mel: expected a float tensor"):
        enc(torch.randn(2, 40, 15))
    with pytest.raises(ValueError, match="AudioEncoderConfig.layers"):
        AudioEncoderConfig(layers=0)


def test_encoder_stream_equals_forward():
    torch.manual_seed(1)
    enc = AudioEncoder(TINY).eval()
    mel = torch.randn(57, 16) * 2 - 5
    with torch.no_grad():
        full = enc(mel)
    rng = np.random.default_rng(0)
    for sizes in (1, 4, 25, "random"):
        stream = enc.stream()
        i, parts = 0, []
        while i < 57:
            step = int(rng.integers(0, 9)) if sizes == "random" else sizes
            parts.append(stream.push(mel[i:i + step]))
            i += step
        got = torch.cat(parts)
        assert got.shape == full.shape and float((got - full).abs().max()) <= 1e-5, sizes


def test_encoder_save_load_round_trip(tmp_path):
    torch.manual_seed(2)
    enc = AudioEncoder(TINY).eval()
    enc.save_pretrained(tmp_path / "enc")
    back = AudioEncoder.from_pretrained(tmp_path / "enc")
    mel, _ = audio_features(tone(300, 16000, 0.5), 16000, MelConfig(n_mels=16))
    assert back.config == TINY and torch.equal(back(mel[None]), enc(mel[None]))


@pytest.mark.parametrize("level", [False, True])
def test_the_encoder_hears_loudness_only_through_its_level_inputs(level):
    """Noise 12 dB quieter shifts every log-mel bin by the same amount, which the per-frame LayerNorm removes:
    without the level inputs the encoder cannot tell the two apart; with them (the default) it can."""
    from engine.audio.encoder import AudioEncoder, AudioEncoderConfig
    noise = 0.2 * torch.randn(16000, generator=torch.Generator().manual_seed(0))
    loud, _ = audio_features(noise)
    quiet, _ = audio_features(noise * 10 ** (-12 / 20))
    shift = (loud - quiet)[5:-5]
    assert torch.allclose(shift, shift.mean().expand_as(shift), atol=1e-3)       # a uniform shift of every bin
    torch.manual_seed(0)
    encoder = AudioEncoder(AudioEncoderConfig(level=level))
    with torch.no_grad():
        diff = float((encoder(loud) - encoder(quiet))[5:-5].abs().max())
    if level:
        assert diff > 1e-2, diff
    else:
        assert diff < 1e-4, diff


def test_encoder_streams_pushed_together_equal_each_alone():
    """AudioEncoderStream.push_many (many live sessions as one batch) gives each stream what its own push gives,
    its history carried on."""
    torch.manual_seed(3)
    enc = AudioEncoder(TINY).eval()
    mels = [torch.randn(12, 16) * 2 - 5 for _ in range(3)]
    alone, together = [enc.stream() for _ in mels], [enc.stream() for _ in mels]
    for a, m in zip(alone, mels):
        a.push(m[:5])
    for t, m in zip(together, mels):
        t.push(m[:5])                                 # different histories per stream
    for step in (1, 2, 4):
        i0 = 5 + {1: 0, 2: 1, 4: 3}[step]
        want = [a.push(m[i0:i0 + step]) for a, m in zip(alone, mels)]
        got = AudioEncoderStream.push_many(together, [m[i0:i0 + step] for m in mels])
        assert all(float((g - w).abs().max()) <= 1e-5 for g, w in zip(got, want)), step
    assert [t.frames for t in together] == [a.frames for a in alone]
    with pytest.raises(ValueError, match="one length"):
        AudioEncoderStream.push_many(together[:2], [mels[0][:1], mels[1][:2]])
