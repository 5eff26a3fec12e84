"""engine.motion.dit: zero-init rest pose, save/load round trip, noise schedule, DDIM against an oracle, prefix
inpainting, streaming == offline, classifier-free guidance, and a short training sanity check."""
import json
import math

import pytest
import torch
from torch import nn

import engine.motion.dit as motion
from engine.motion.dit import (MotionDiT, MotionDiTConfig, MotionStream, alpha_bar_schedule, ddim_sample, frame_noise,
                           generate, q_sample, sampling_timesteps, x0_to_eps)

K, C, D = 5, 3, 8


pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


def tiny(**kw) -> MotionDiTConfig:
    base = dict(n_slots=K, channels=C, audio_dim=D, dim=32, depth=2, heads=2, max_len=16, window=8, overlap=3,
                diffusion_steps=100)
    return MotionDiTConfig(**{**base, **kw})


def perturbed(cfg: MotionDiTConfig, seed: int = 0) -> MotionDiT:
    """A model moved away from zero-init, so outputs depend on every weight."""
    torch.manual_seed(seed)
    model = MotionDiT(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def test_config_checks():
    with pytest.raises(ValueError, match="overlap"):
        tiny(overlap=8)
    with pytest.raises(ValueError, match="window"):
        tiny(window=32)
    with pytest.raises(ValueError, match="schedule"):
        tiny(schedule="sigmoid")


def test_untrained_is_rest_pose():
    model = MotionDiT(tiny())
    x = torch.randn(2, 6, K, C)
    out = model(x, torch.tensor([3, 90]), torch.randn(2, 6, D))
    assert torch.equal(out, torch.zeros_like(out))
    sample = ddim_sample(model, torch.randn(2, 6, D), steps=4, seed=5)
    assert torch.equal(sample, torch.zeros(2, 6, K, C))
    assert torch.equal(generate(model, torch.randn(20, D)), torch.zeros(20, K, C))


def test_pretrained_round_trip(tmp_path):
    model = perturbed(tiny())
    x, t, a = torch.randn(2, 7, K, C), torch.tensor([1, 50]), torch.randn(2, 7, D)
    model.save_pretrained(tmp_path / "dit")
    loaded = MotionDiT.from_pretrained(tmp_path / "dit")
    assert loaded.config == model.config
    assert torch.equal(loaded(x, t, a), model(x, t, a))
    assert torch.equal(generate(loaded, a[0], seed=2), generate(model, a[0], seed=2))
    assert not torch.equal(model(x, t, a), torch.zeros_like(x))           # the comparison means something

    cfg_file = tmp_path / "dit" / "config.json"
    data = json.loads(cfg_file.read_text())
    cfg_file.write_text(json.dumps({**data, "class": "FaceHandRefiner"}))
    with pytest.raises(ValueError, match="FaceHandRefiner"):
        MotionDiT.from_pretrained(tmp_path / "dit")
    cfg_file.write_text(json.dumps({**data, "depthh": 3}))
    with pytest.raises(ValueError, match="depthh"):
        MotionDiT.from_pretrained(tmp_path / "dit")
    cfg_file.write_text(json.dumps(data))
    (tmp_path / "dit" / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="model.safetensors"):
        MotionDiT.from_pretrained(tmp_path / "dit")


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_noise_schedule_and_inversion(schedule):
    ab = alpha_bar_schedule(1000, schedule)
    assert ab.shape == (1000,) and bool((ab[1:] < ab[:-1]).all())
    assert ab[0] > 0.999 and ab[-1] < 1e-3
    x0, eps = torch.randn(4, 6, K, C), torch.randn(4, 6, K, C)
    t = torch.tensor([0, 10, 500, 999])
    x_t = q_sample(x0, t, eps, ab)
    for b in range(4):                                                      # the hand formula, row by row
        a = float(ab[t[b]])
        assert torch.allclose(x_t[b], math.sqrt(a) * x0[b] + math.sqrt(1 - a) * eps[b], atol=1e-6)
    assert torch.allclose(x0_to_eps(x_t, t, x0, ab), eps, atol=1e-3)         # t = 0: 1 - ab ~ 4e-5
    assert torch.allclose(x0_to_eps(x_t[1:], t[1:], x0[1:], ab), eps[1:], atol=1e-5)
    assert sampling_timesteps(1000, 4) == [999, 749, 499, 249]
    assert sampling_timesteps(100, 100) == list(range(99, -1, -1))


class Oracle(nn.Module):
    """Stands in for the DiT: always predicts the true x0, and records the x_t it was given."""

    def __init__(self, cfg, x0):
        super().__init__()
        self.config, self.x0, self.seen = cfg, x0, []

    def forward(self, x_t, t, audio, audio_mask=None):
        self.seen.append((int(t[0]), x_t.clone()))
        return self.x0[:, :x_t.shape[1]].clone()


@pytest.mark.parametrize("steps", [1, 2, 4, 17, 100])
def test_ddim_with_oracle_returns_x0(steps):
    cfg = tiny()
    x0 = torch.randn(2, 7, K, C)
    oracle = Oracle(cfg, x0)
    out = ddim_sample(oracle, torch.randn(2, 7, D), steps=steps, seed=3, frame_offset=11)
    assert (out - x0).abs().max() <= 1e-5
    # Sampling starts from the frame noise x_T; with a perfect x0 every DDIM (eta = 0) step keeps the implied
    # noise eps* = (x_T - sqrt(ab_T) x0) / sqrt(1 - ab_T), so step t sees exactly q_sample(x0, t, eps*).
    ab, x_T = alpha_bar_schedule(cfg.diffusion_steps, cfg.schedule), frame_noise(3, 11, 2, 7, K, C)
    ts = sampling_timesteps(cfg.diffusion_steps, steps)
    assert [t for t, _ in oracle.seen] == ts and torch.equal(oracle.seen[0][1], x_T)
    eps_star = x0_to_eps(x_T, ts[0], x0, ab)
    for t, x_t in oracle.seen:
        assert (x_t - q_sample(x0, t, eps_star, ab)).abs().max() <= 1e-5
    prefix = torch.randn(2, 3, K, C)
    out = ddim_sample(Oracle(cfg, x0), torch.randn(2, 7, D), steps=steps, prefix=prefix)
    assert torch.equal(out[:, :3], prefix) and (out[:, 3:] - x0[:, 3:]).abs().max() <= 1e-5


def test_noise_depends_on_absolute_frame_only():
    whole = frame_noise(7, 10, 2, 6, K, C)
    for i in range(6):
        assert torch.equal(whole[:, i], frame_noise(7, 10 + i, 2, 1, K, C)[:, 0])
    assert not torch.equal(whole[0], whole[1])                                 # rows differ
    assert not torch.equal(frame_noise(8, 10, 1, 1, K, C), whole[:1, :1])       # seeds differ


def test_inpainted_prefix_is_exact():
    model = perturbed(tiny())
    prefix = torch.randn(1, 4, K, C)
    out = ddim_sample(model, torch.randn(1, 8, D), steps=3, prefix=prefix, seed=1, frame_offset=20)
    assert torch.equal(out[:, :4], prefix) and torch.isfinite(out).all()
    assert not torch.equal(out[:, 4:], torch.zeros_like(out[:, 4:]))


@pytest.mark.parametrize("overlap", [3, 0])
def test_stream_in_window_chunks_equals_generate(overlap):
    cfg = tiny(overlap=overlap)
    model = perturbed(cfg, seed=1)
    audio = torch.randn(31, D)
    offline = generate(model, audio, steps=4, seed=9)
    stream = MotionStream(model, steps=4, seed=9)
    chunks, pos = [stream.push(audio[:cfg.window])], cfg.window
    while pos < len(audio):
        chunks.append(stream.push(audio[pos:pos + cfg.window - cfg.overlap]))
        pos += cfg.window - cfg.overlap
    live = torch.cat(chunks)
    assert live.shape == offline.shape == (31, K, C)
    assert (live - offline).abs().max() <= 1e-5
    stream.reset()
    assert (stream.push(audio) - offline).abs().max() <= 1e-5                   # one push, same windows


@pytest.mark.parametrize("chunk", [1, 3, 7])
def test_stream_any_chunk_size_has_seamless_windows(chunk, monkeypatch):
    cfg = tiny()
    model = perturbed(cfg, seed=2)
    windows = []
    real = motion.ddim_sample

    def spy(model, audio, steps=4, prefix=None, seed=0, frame_offset=0, guidance=1.0):
        out = real(model, audio, steps, prefix, seed, frame_offset, guidance)
        windows.append((frame_offset, out[0].clone()))
        return out

    monkeypatch.setattr(motion, "ddim_sample", spy)
    audio = torch.randn(23, D)
    stream = MotionStream(model, steps=2, seed=4)
    outs = [stream.push(audio[i:i + chunk]) for i in range(0, 23, chunk)]
    assert [len(o) for o in outs] == [len(audio[i:i + chunk]) for i in range(0, 23, chunk)]  # zero latency
    assert stream.push(audio[:0]).shape == (0, K, C)
    produced = torch.cat(outs)
    assert produced.shape == (23, K, C) and torch.isfinite(produced).all()
    prev_end = 0
    for offset, win in windows:
        P = prev_end - offset                                                 # frames already produced
        assert P == min(cfg.overlap, prev_end) and len(win) <= cfg.window
        assert torch.equal(win[:P], produced[offset:prev_end])               # the seam reproduces the past
        assert torch.equal(win[P:], produced[prev_end:offset + len(win)])
        prev_end = offset + len(win)
    assert prev_end == 23


def test_max_new_caps_the_window():
    model = perturbed(tiny())
    stream = MotionStream(model, steps=1, max_new=2)
    assert stream.push(torch.randn(9, D)).shape == (9, K, C)
    with pytest.raises(ValueError, match="max_new"):
        MotionStream(model, max_new=0)


def test_classifier_free_guidance():
    model = perturbed(tiny())
    x, t, a = torch.randn(2, 5, K, C), 40, torch.randn(2, 5, D)
    tt = torch.full((2,), t)
    cond = model(x, tt, a)
    assert torch.equal(motion.predict_x0(model, x, t, a, 1.0), cond)            # guidance 1 = conditional path
    null = model(x, tt, a, torch.tensor([True, True]))
    assert torch.allclose(motion.predict_x0(model, x, t, a, 3.0), null + 3.0 * (cond - null), atol=1e-5)
    assert not torch.equal(ddim_sample(model, a, guidance=3.0), ddim_sample(model, a, guidance=1.0))
    # audio_mask True uses the learned null vector: changing it changes only the masked rows.
    mask = torch.tensor([True, False])
    before = model(x, tt, a, mask)
    with torch.no_grad():
        model.null_audio.add_(1.0)
    after = model(x, tt, a, mask)
    assert not torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
    assert torch.equal(before[1], cond[1])


def test_input_checks():
    model = MotionDiT(tiny())
    with pytest.raises(ValueError, match="x_t|x:"):
        model(torch.randn(1, 4, K + 1, C), torch.tensor([0]), torch.randn(1, 4, D))
    with pytest.raises(ValueError, match="audio"):
        model(torch.randn(1, 4, K, C), torch.tensor([0]), torch.randn(1, 4, D + 1))
    with pytest.raises(ValueError, match="t:"):
        model(torch.randn(1, 4, K, C), torch.tensor([100]), torch.randn(1, 4, D))
    with pytest.raises(ValueError, match="steps"):
        ddim_sample(model, torch.randn(1, 4, D), steps=0)
    with pytest.raises(ValueError, match="prefix"):
        ddim_sample(model, torch.randn(1, 4, D), prefix=torch.randn(1, 5, K, C))
    with pytest.raises(ValueError, match="audio"):
        ddim_sample(model, torch.randn(1, 17, D))                               # longer than max_len
    with pytest.raises(ValueError, match="audio_frames"):
        MotionStream(model).push(torch.randn(4, D + 1))


def test_training_learns_audio_to_motion():
    """Motion is a fixed linear function of the audio; 120 Adam steps cut L_simple by > 5x."""
    torch.manual_seed(0)
    model = MotionDiT(tiny(n_slots=4, depth=1, audio_dropout=0.0))
    mix = torch.randn(D, 4 * C) * 0.5
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def batch():
        a = torch.randn(8, 8, D, generator=gen)
        return (a @ mix).view(8, 8, 4, C), a

    def eval_loss():
        g = torch.Generator().manual_seed(123)
        with torch.no_grad():
            return sum(float(model.loss(*fixed, generator=g)["loss"]) for _ in range(8)) / 8

    fixed = batch()
    start = eval_loss()
    for _ in range(120):
        out = model.loss(*batch(), slot_mask=torch.ones(4, dtype=torch.bool), generator=gen)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    assert eval_loss() < start / 5


def test_windows_of_many_streams_sample_as_one_batch(monkeypatch):
    """sample_windows: three streams' windows (own seeds, offsets, prefixes) in one ddim_sample call give what each
    stream's own push gives; a window of another length is a group of its own."""
    from engine.motion.batch import run_together
    cfg = tiny()
    model = perturbed(cfg, seed=5)
    audio = [torch.randn(20, D) for _ in range(4)]
    alone = [MotionStream(model, steps=2, seed=s) for s in (1, 2, 3, 4)]
    together = [MotionStream(model, steps=2, seed=s) for s in (1, 2, 3, 4)]
    calls = []
    real = motion.ddim_sample

    def spy(model, audio, *args, **kw):
        calls.append(audio.shape[0])
        return real(model, audio, *args, **kw)
    for streams in (alone, together):
        for k, s in enumerate(streams):
            s.push(audio[k][:4 + k])                          # different histories
    monkeypatch.setattr(motion, "ddim_sample", spy)
    sizes = (1, 1, 1, 2)                                      # the last stream's window is one frame longer
    want = [s.push(a[10:10 + n]) for s, a, n in zip(alone, audio, sizes)]
    calls.clear()
    got = run_together([s.push_steps(a[10:10 + n]) for s, a, n in zip(together, audio, sizes)])
    assert sorted(calls) == [1, 3]                            # one batch of three, and the odd one alone
    assert all(float((g - w).abs().max()) <= 1e-5 for g, w in zip(got, want))


def test_stream_context_shortens_the_known_part_of_each_window(monkeypatch):
    """MotionStream(context=c): every window's inpainted prefix is at most c frames (the shipped overlap otherwise),
    the frames still come one window after another with the seam reproducing the past, and c is checked."""
    cfg = tiny(overlap=3)
    model = perturbed(cfg, seed=6)
    prefixes = []
    real = motion.ddim_sample

    def spy(model, audio, steps=4, prefix=None, *args, **kw):
        prefixes.append(0 if prefix is None else prefix.shape[1])
        return real(model, audio, steps, prefix, *args, **kw)
    monkeypatch.setattr(motion, "ddim_sample", spy)
    audio = torch.randn(12, D)
    short = MotionStream(model, steps=2, seed=1, context=1)
    out = torch.cat([short.push(audio[i:i + 1]) for i in range(12)])
    assert out.shape == (12, K, C) and prefixes == [0] + [1] * 11
    prefixes.clear()
    full = MotionStream(model, steps=2, seed=1)
    torch.cat([full.push(audio[i:i + 1]) for i in range(12)])
    assert prefixes == [0, 1, 2] + [3] * 9
    for bad in (-1, 4, 1.5):
        with pytest.raises(ValueError, match="context"):
            MotionStream(model, context=bad)
