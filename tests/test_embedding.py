"""distill/embedding.py: InfoNCE and patch pooling against hand computations, retrieval accuracy, a training
sanity run on synthetic audio -> motion data, slot masking, save/load round trip and input checks."""
import math

import pytest
import torch
import torch.nn.functional as F

from engine.deform.decoder import DecoderConfig, GaussianDecoder
from distill.embedding import AudioMotionEmbedding, EmbeddingConfig, info_nce, patch_pool

TINY = dict(n_slots=6, channels=3, audio_dim=8, dim=16, hidden=32, kernel=3, layers=1, patch=4, patch_stride=2,
            temperature=0.1)


pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


def tiny(**kw) -> AudioMotionEmbedding:
    torch.manual_seed(0)
    return AudioMotionEmbedding(EmbeddingConfig(**{**TINY, **kw}))


def _hand_info_nce(s: list[list[float]], tau: float) -> float:
    """Symmetric InfoNCE written out with math.exp/log from a similarity matrix s[i][j] = a_i . m_j."""
    M = len(s)
    rows = [-s[i][i] / tau + math.log(sum(math.exp(s[i][j] / tau) for j in range(M))) for i in range(M)]
    cols = [-s[j][j] / tau + math.log(sum(math.exp(s[i][j] / tau) for i in range(M))) for j in range(M)]
    return 0.5 * (sum(rows) / M + sum(cols) / M)


def test_info_nce_matches_hand_computation_2x2():
    alpha, tau = 0.7, 0.5
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    m = torch.tensor([[math.cos(alpha), math.sin(alpha)], [0.0, 1.0]], dtype=torch.float64)
    s = [[math.cos(alpha), 0.0], [math.sin(alpha), 1.0]]          # s_ij = a_i . m_j by hand
    loss, acc = info_nce(a, m, tau)
    assert loss.item() == pytest.approx(_hand_info_nce(s, tau), abs=1e-12)
    assert acc.item() == 1.0


def test_info_nce_3x3_and_accuracy_on_constructed_embeddings():
    tau = 0.07
    a = torch.eye(3, dtype=torch.float64)
    # motion 1 points at audio 2, so audio 2 retrieves motion 1 (wrong); audio 0 and 1 retrieve correctly.
    m = F.normalize(torch.tensor([[1.0, 0.2, 0.0], [0.0, 0.6, 0.8], [0.8, 0.0, 0.6]], dtype=torch.float64), dim=-1)
    s = (a @ m.T).tolist()
    loss, acc = info_nce(a, m, tau)
    assert loss.item() == pytest.approx(_hand_info_nce(s, tau), abs=1e-9)
    assert acc.item() == pytest.approx(2 / 3)
    assert not acc.requires_grad


def test_patch_pool_matches_hand_computation():
    # 6 frames of 2-D unit vectors at angles 0, 10, ..., 50 degrees; patch 4, stride 2 -> windows {0..3}, {2..5}.
    angles = [math.radians(10 * t) for t in range(6)]
    z = torch.tensor([[[math.cos(t), math.sin(t)] for t in angles]], dtype=torch.float64)
    out = patch_pool(z, 4, 2)
    assert out.shape == (1, 2, 2)
    for p, frames in enumerate(([0, 1, 2, 3], [2, 3, 4, 5])):
        mx = sum(math.cos(angles[t]) for t in frames) / 4
        my = sum(math.sin(angles[t]) for t in frames) / 4
        n = math.hypot(mx, my)
        assert out[0, p].tolist() == pytest.approx([mx / n, my / n], abs=1e-12)
    # the mean of symmetric angles points at their middle angle: window 0 at 15 degrees
    assert math.degrees(math.atan2(out[0, 0, 1].item(), out[0, 0, 0].item())) == pytest.approx(15.0)
    short = patch_pool(z[:, :3], 4, 2)                  # T < patch: one window over all frames
    assert short.shape == (1, 1, 2)
    assert torch.allclose(short[0, 0], F.normalize(z[0, :3].mean(0), dim=-1))


def test_losses_use_frames_and_patches_of_the_embeddings(monkeypatch):
    model = tiny()
    B, T, d = 2, 6, TINY["dim"]
    torch.manual_seed(1)
    za = F.normalize(torch.randn(B, T, d), dim=-1)
    zm = F.normalize(za + 0.3 * torch.randn(B, T, d), dim=-1)
    zm[1, 2] = za[0, 4]                                   # frame (1, 2) retrieves (0, 4): exactly one miss
    monkeypatch.setattr(model, "embed", lambda audio, motion, slot_mask=None: (za, zm))
    out = model.losses(torch.zeros(B, T, 8), torch.zeros(B, T, 6, 3))
    want_frame, want_acc = info_nce(za.reshape(B * T, d), zm.reshape(B * T, d), 0.1)
    want_patch, _ = info_nce(patch_pool(za, 4, 2).reshape(-1, d), patch_pool(zm, 4, 2).reshape(-1, d), 0.1)
    assert set(out) == {"loss", "loss_frame", "loss_patch", "acc_frame"}
    assert torch.allclose(out["loss_frame"], want_frame) and torch.allclose(out["loss_patch"], want_patch)
    assert torch.allclose(out["loss"], want_frame + want_patch)
    sims = za.reshape(B * T, d) @ zm.reshape(B * T, d).T
    hand_acc = sum(int(sims[i].argmax()) == i for i in range(B * T)) / (B * T)
    assert out["acc_frame"].item() == pytest.approx(hand_acc) and hand_acc <= 11 / 12


def _synthetic(W: torch.Tensor, B: int, T: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    audio = torch.randn(B, T, 8, generator=gen)
    motion = (audio @ W).view(B, T, 6, 3) + 0.05 * torch.randn(B, T, 6, 3, generator=gen)
    return audio, motion


def test_training_raises_retrieval_accuracy_and_lowers_both_losses():
    model = tiny()
    gen = torch.Generator().manual_seed(2)
    W = torch.randn(8, 18, generator=gen)                    # motion is a fixed random linear function of audio
    eval_audio, eval_motion = _synthetic(W, 4, 16, gen)      # 64 frames: chance accuracy 1/64
    with torch.no_grad():
        before = model.losses(eval_audio, eval_motion)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(100):
        audio, motion = _synthetic(W, 4, 16, gen)
        loss = model.losses(audio, motion)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = model.losses(eval_audio, eval_motion)
        score = model.sync_score(eval_audio, eval_motion)
        shuffled = model.sync_score(eval_audio, eval_motion[:, torch.randperm(16, generator=gen)])
    assert after["acc_frame"] > 0.5 > 10 / 64 > before["acc_frame"]
    assert after["loss_frame"] < 0.25 * before["loss_frame"]
    assert after["loss_patch"] < 0.25 * before["loss_patch"]
    assert score.shape == (4, 16) and score.mean() > shuffled.mean() + 0.3


def test_embed_is_unit_length_and_sync_score_is_the_frame_cosine():
    model = tiny()
    audio, motion = torch.randn(2, 5, 8), torch.randn(2, 5, 6, 3)
    za, zm = model.embed(audio, motion)
    assert za.shape == zm.shape == (2, 5, 16)
    assert torch.allclose(za.norm(dim=-1), torch.ones(2, 5)) and torch.allclose(zm.norm(dim=-1), torch.ones(2, 5))
    assert torch.allclose(model.sync_score(audio, motion), (za * zm).sum(-1))


def test_slot_mask_zeroes_missing_slots():
    model = tiny()
    audio, motion = torch.randn(2, 5, 8), torch.randn(2, 5, 6, 3)
    mask = torch.tensor([True, True, False, True, False, True])
    changed = motion.clone()
    changed[:, :, ~mask] = 100.0                            # whatever a missing slot holds is ignored
    assert torch.equal(model.embed(audio, motion, mask)[1], model.embed(audio, changed, mask)[1])
    zeroed = motion * mask.view(1, 1, 6, 1)
    assert torch.equal(model.embed(audio, motion, mask)[1], model.embed(audio, zeroed)[1])
    per_sample = torch.stack([mask, torch.ones(6, dtype=torch.bool)])   # [B, K] masks: one per avatar
    out = model.embed(audio, changed, per_sample)[1]
    assert torch.equal(out[0], model.embed(audio, motion, mask)[1][0])
    assert not torch.equal(out[1], model.embed(audio, motion)[1][1])


def test_save_load_round_trip(tmp_path):
    model = tiny()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.eval()
    audio, motion = torch.randn(2, 7, 8), torch.randn(2, 7, 6, 3)
    path = model.save_pretrained(tmp_path / "emb")
    loaded = AudioMotionEmbedding.from_pretrained(path)
    assert loaded.config == model.config
    with torch.no_grad():
        for x, y in zip(model.embed(audio, motion), loaded.embed(audio, motion)):
            assert torch.equal(x, y)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="missing"):
        AudioMotionEmbedding.from_pretrained(tmp_path / "empty")
    GaussianDecoder(DecoderConfig(n_particles=3)).save_pretrained(tmp_path / "dec")
    with pytest.raises(ValueError, match="GaussianDecoder"):
        AudioMotionEmbedding.from_pretrained(tmp_path / "dec")


def test_bad_inputs_raise_value_errors():
    model = tiny()
    audio, motion = torch.randn(2, 5, 8), torch.randn(2, 5, 6, 3)
    with pytest.raises(ValueError, match="audio"):
        model.embed(torch.randn(2, 5, 9), motion)
    with pytest.raises(ValueError, match="motion"):
        model.embed(audio, torch.randn(2, 5, 7, 3))
    with pytest.raises(ValueError, match="motion"):
        model.embed(audio, torch.randn(2, 4, 6, 3))
    with pytest.raises(ValueError, match="motion"):
        model.embed(audio, torch.randn(2, 5, 18))
    with pytest.raises(ValueError, match="slot_mask"):
        model.embed(audio, motion, torch.ones(6))
    with pytest.raises(ValueError, match="slot_mask"):
        model.embed(audio, motion, torch.ones(5, dtype=torch.bool))
    with pytest.raises(ValueError, match="kernel"):
        EmbeddingConfig(kernel=4)
    with pytest.raises(ValueError, match="temperature"):
        EmbeddingConfig(temperature=0.0)
    with pytest.raises(ValueError, match="n_slots"):
        EmbeddingConfig(n_slots=0)
