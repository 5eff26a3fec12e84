"""PAHA teacher (distill/teachers/paha): exact checks of PAR weights, SG/DG updates, pooling and RoPE; one training
step per loss and sampling through the Teacher interface on a tiny random model (CPU)."""
import dataclasses

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import distill.teachers.paha  # noqa: E402,F401
from distill.teachers.paha import pipeline as P  # noqa: E402
from distill.teachers.paha import training as T  # noqa: E402
from distill.teachers.paha.config import PAHAConfig  # noqa: E402
from distill.teachers.paha.guidance import (GuidanceWeights, differential_guidance, guided_step_count,  # noqa: E402
                                            sequential_guidance)
from distill.teachers.paha.par import (PARSettings, PartIndices, gaussian_blur, par_loss, par_weights,  # noqa: E402
                                       to_latent_grid)
from distill.teachers.paha.pce import region_pool, rope_3d  # noqa: E402
from engine.config import load_config  # noqa: E402
from sd_video_tiny import TEACHER_YAMLS, as_lists, check_strict_config, random_clip, tiny_components  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
YAML = TEACHER_YAMLS / "paha.yaml"


@pytest.fixture(scope="module")
def tiny():
    return tiny_components(P, PAHAConfig)


def tiny_batch(comp, b=1, f=3, seed=0, keypoints=None):
    _, clip = random_clip(comp.cfg, b, f, seed)
    return T.TrainBatch(**clip, keypoints=keypoints)


# --- config ---------------------------------------------------------------------------------------------------------
def test_yaml_equals_the_full_defaults():
    assert as_lists(load_config(PAHAConfig, YAML)) == as_lists(PAHAConfig.full()) == as_lists(PAHAConfig())
    full = PAHAConfig.full()   # the published numbers
    assert (full.par_tau, full.par_radius, full.par_omega1, full.par_omega2) == (0.8, 10.0, 10.0, 2.0)
    assert (full.lambda_nonface, full.lambda_face, full.lambda_diff) == (1.0, 0.1, 0.25)
    assert (full.num_inference_steps, full.guidance_fraction, full.pce_mask_prob) == (30, 0.5, 0.8)


def test_unknown_key_and_missing_weights_are_value_errors():
    from distill.teachers.paha import PAHATeacher
    check_strict_config(PAHATeacher, P, PAHAConfig)
    with pytest.raises(ValueError, match="guidance_mode"):
        PAHAConfig.tiny(guidance_mode="cfg")


# --- PAR ------------------------------------------------------------------------------------------------------------
PARTS = PartIndices(face=(0, 1), hands=(2, 3), body=(4, 5, 6))
KEYPOINTS = torch.tensor([
    [5.0, 5.0, 0.9],     # face, confident
    [6.0, 5.0, 1.0],     # face, confident, its disc overlaps the first
    [20.0, 6.0, 0.85],   # hand, confident
    [26.0, 26.0, 0.5],   # hand, below tau: no disc
    [10.0, 15.0, 0.9],   # body
    [18.0, 25.0, 1.0],   # body
    [2.0, 30.0, 0.3],    # body, below tau: outside the rectangle's definition
])


def test_par_weights_exact_without_smoothing():
    s = PARSettings(tau=0.8, radius=2.0, omega1=10.0, omega2=2.0, sigma=0.0)
    w = par_weights(KEYPOINTS, (32, 32), s, PARTS)
    assert w.shape == (32, 32)
    # by hand: pixel (row y, col x); discs dx^2 + dy^2 <= 4; body box x in [10, 18], y in [15, 25], mean conf 0.95
    expected = np.ones((32, 32))
    for y in range(32):
        for x in range(32):
            for kx, ky, c in ((5, 5, 0.9), (6, 5, 1.0), (20, 6, 0.85)):
                if (x - kx) ** 2 + (y - ky) ** 2 <= 4:
                    expected[y, x] += 10 * c
            if 10 <= x <= 18 and 15 <= y <= 25:
                expected[y, x] += 2 * 0.95
    assert np.allclose(w.numpy(), expected, atol=1e-6)
    assert w[5, 5] == pytest.approx(1 + 10 * 1.9)          # inside both face discs
    assert w[5, 3] == pytest.approx(1 + 10 * 0.9)          # first face disc only (2 px left of it)
    assert w[5, 8] == pytest.approx(1 + 10 * 1.0)          # second face disc only
    assert w[6, 20] == pytest.approx(1 + 10 * 0.85) and w[6, 23] == 1.0   # hand disc, and 3 px away
    assert w[26, 26] == 1.0                                  # unconfident hand keypoint
    assert w[15, 10] == pytest.approx(2.9) and w[25, 18] == pytest.approx(2.9)   # rectangle corners (closed)
    assert w[14, 10] == 1.0 and w[15, 19] == 1.0 and w[30, 2] == 1.0


def test_par_smoothing_preserves_mass_and_spreads():
    sharp = par_weights(KEYPOINTS, (32, 32), PARSettings(radius=2.0, sigma=0.0), PARTS)
    smooth = par_weights(KEYPOINTS, (32, 32), PARSettings(radius=2.0, sigma=0.8), PARTS)   # support + 3 sigma inside
    assert float((smooth - 1).sum()) == pytest.approx(float((sharp - 1).sum()), rel=1e-5)
    assert float(smooth.max()) < float(sharp.max()) and smooth[5, 2] > 1.0 == sharp[5, 2]
    blob = torch.zeros(1, 9, 9)
    blob[0, 4, 4] = 1.0
    g = gaussian_blur(blob, 1.0)[0]
    k = np.exp(-0.5 * np.arange(-3, 4) ** 2)
    k /= k.sum()
    assert np.allclose(g.numpy()[1:8, 1:8], np.outer(k, k), atol=1e-7)   # separable normalised Gaussian


def test_par_default_parts_follow_coco_wholebody():
    p = PartIndices()
    assert len(p.face) == 68 and len(p.hands) == 42 and len(p.body) == 23
    assert sorted(p.face + p.hands + p.body) == list(range(133))
    with pytest.raises(ValueError, match="keypoints"):
        par_weights(torch.zeros(10, 3), (32, 32))          # 10 points do not fit the 133-point layout


def test_par_latent_grid_and_loss_by_hand():
    w = torch.ones(1, 1, 4, 4)
    w[0, 0, 0, 0] = 5.0                                      # one pixel in the top-left 2x2 cell
    lat = to_latent_grid(w, 2)
    assert lat[0, 0].tolist() == [[2.0, 1.0], [1.0, 1.0]]   # (5 + 1 + 1 + 1) / 4
    eps = torch.zeros(1, 2, 1, 2, 2)
    eps_hat = torch.zeros(1, 2, 1, 2, 2)
    eps_hat[0, :, 0, 0, 0] = 3.0                             # error 9 in that cell, both channels
    eps_hat[0, 0, 0, 1, 1] = 1.0                             # error 1 in a weight-1 cell, one channel
    assert float(par_loss(eps_hat, eps, lat)) == pytest.approx((2 * 9 * 2 + 1) / 8)


# --- SG / DG --------------------------------------------------------------------------------------------------------
def test_sg_and_dg_scalar_by_hand():
    z = torch.tensor([2.0], dtype=torch.float64)
    face = lambda v: ((v - 1) ** 2).sum()                   # grad 2 (z - 1) = 2 at z = 2          # noqa: E731
    nonface = lambda v: (3 * v ** 2).sum()                  # grad 6 z = 12 at z = 2               # noqa: E731
    m_face, m_nonface = torch.tensor([1.0], dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64)
    w = GuidanceWeights()                                    # 1, 0.1, 0.25
    z_star, _ = sequential_guidance(z, face, nonface, m_face, m_nonface, w)
    # z_nonface = 2 - 1 * 0.5 * 12 = -4; z_face = 2 - 0.1 * 1 * 2 = 1.8; z* = 1.8 + (-4) - 2 = -4.2
    assert float(z_star) == pytest.approx(-4.2, abs=1e-12)
    # at z*: face grad 2 (-5.2) = -10.4 (diff -12.4); nonface grad -25.2 (diff -37.2)
    # c = -(0.5 * -37.2 + 1 * -12.4) = 31; z_DG = -4.2 + 0.25 * 31 = 3.55
    assert float(differential_guidance(z, face, nonface, m_face, m_nonface, w)) == pytest.approx(3.55, abs=1e-12)


def test_sg_and_dg_quadratic_closed_form():
    g = torch.Generator().manual_seed(0)
    shape = (1, 2, 2, 2, 2)
    n = int(np.prod(shape))
    qa, qb = torch.randn(n, n, generator=g, dtype=torch.float64), torch.randn(n, n, generator=g, dtype=torch.float64)
    A, B = qa @ qa.T / n + torch.eye(n, dtype=torch.float64), qb @ qb.T / n   # coupled, symmetric
    a, c = torch.randn(n, generator=g, dtype=torch.float64), torch.randn(n, generator=g, dtype=torch.float64)
    z = torch.randn(shape, generator=g, dtype=torch.float64)
    face = lambda v: 0.5 * (v.reshape(-1) - a) @ A @ (v.reshape(-1) - a)     # noqa: E731
    nonface = lambda v: 0.5 * (v.reshape(-1) - c) @ B @ (v.reshape(-1) - c)  # noqa: E731
    m_face = torch.zeros(1, 1, 2, 2, 2, dtype=torch.float64)
    m_face[..., 0, :] = 1.0                                   # top row of each frame is "face"
    m_nonface = 1 - m_face
    w = GuidanceWeights(lambda_nonface=1.0, lambda_face=0.1, lambda_diff=0.25)
    zf, mf, mn = z.reshape(-1), m_face.expand(shape).reshape(-1), m_nonface.expand(shape).reshape(-1)
    g_f, g_n = A @ (zf - a), B @ (zf - c)
    star = (zf - 0.1 * mf * g_f) + (zf - 1.0 * mn * g_n) - zf
    dg = star - 0.25 * (mn * (B @ (star - zf)) + mf * (A @ (star - zf)))
    z_star, grads = sequential_guidance(z, face, nonface, m_face, m_nonface, w)
    assert torch.allclose(grads["face"].reshape(-1), g_f, atol=1e-12)
    assert torch.allclose(z_star.reshape(-1), star, atol=1e-12)
    assert torch.allclose(differential_guidance(z, face, nonface, m_face, m_nonface, w).reshape(-1), dg, atol=1e-12)
    assert not torch.allclose(dg, star)                      # the compensation is not zero here


def test_guided_steps_are_the_first_half():
    assert guided_step_count(30, 0.5) == 15 and guided_step_count(30, 0.0) == 0
    with pytest.raises(ValueError):
        guided_step_count(30, 1.5)


# --- PCE pieces -----------------------------------------------------------------------------------------------------
def test_region_pool_masked_max_and_centroid():
    feats = torch.arange(2 * 1 * 3 * 3, dtype=torch.float32).reshape(1, 2, 1, 3, 3)   # [B, C, F, h, w]
    mask = torch.zeros(1, 1, 3, 3, dtype=torch.bool)
    mask[0, 0, 0, 0] = mask[0, 0, 2, 0] = True               # pixels (0, 0) and (2, 0)
    pooled, centre = region_pool(feats, mask)
    assert pooled[0, 0].tolist() == [6.0, 15.0]              # channel 0: max(0, 6); channel 1: max(9, 15)
    assert centre[0, 0].tolist() == [1.0, 0.0]
    pooled, centre = region_pool(feats, None)
    assert pooled[0, 0].tolist() == [8.0, 17.0] and centre[0, 0].tolist() == [1.0, 1.0]
    pooled, _ = region_pool(feats, torch.zeros_like(mask))
    assert pooled[0, 0].tolist() == [0.0, 0.0]               # empty region


def test_rope_3d_depends_on_relative_position_only():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, 12, generator=g), torch.randn(1, 1, 1, 12, generator=g)
    p1, p2 = torch.tensor([[[3.0, 1.0, 2.0]]]), torch.tensor([[[1.0, 4.0, 0.5]]])
    shift = torch.tensor([[[2.0, -1.5, 7.0]]])
    dot = lambda pa, pb: float((rope_3d(q, pa) * rope_3d(k, pb)).sum())   # noqa: E731
    assert dot(p1, p2) == pytest.approx(dot(p1 + shift, p2 + shift), abs=1e-5)
    assert dot(p1, p2) != pytest.approx(dot(p1, p2 + shift), abs=1e-3)
    assert torch.allclose(rope_3d(q, p1).norm(), q.norm(), atol=1e-6)


# --- UniVDM ---------------------------------------------------------------------------------------------------------
def capture_unet_inputs(comp):
    seen = []
    handle = comp.model.unet.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    return seen, handle


def test_frame0_is_the_clean_reference_in_training_and_sampling(tiny):
    b = tiny_batch(tiny, b=2, f=3)
    seen, handle = capture_unet_inputs(tiny)
    try:
        out = T.univdm_loss(tiny, b, torch.tensor([999, 500]), torch.randn(b.latents.shape))
        ref = b.ref_latents[:1]
        P.sample(tiny, P.SampleInputs(ref, b.audio[:1], torch.zeros(1, 3, 16, 16)), torch.Generator().manual_seed(0),
                 steps=2, guidance_mode="none")
    finally:
        handle.remove()
    assert torch.isfinite(out["loss_univdm"])
    assert seen[0].shape == (2, 4, 4, 16, 16)                # [B, C, 1 + F, h, w]
    assert torch.equal(seen[0][:, :, 0], b.ref_latents)     # even at t = 999
    assert len(seen) == 3 and all(torch.equal(s[:, :, 0], ref) for s in seen[1:])   # every sampling step
    sched = tiny.scheduler()
    noisy = sched.add_noise(b.latents, torch.randn(b.latents.shape), torch.tensor([999, 500]))
    with torch.no_grad():
        eps = tiny.model(b.ref_latents, noisy, torch.tensor([999, 500]), b.audio)
        other = tiny.model(b.ref_latents + 1.0, noisy, torch.tensor([999, 500]), b.audio)
    assert eps.shape == b.latents.shape and not torch.allclose(eps, other)   # frames 1..F see the reference


def test_audio_tokens_concatenate_neighbour_frames(tiny):
    cfg = tiny.cfg                                            # m = 1: frames i-1, i, i+1
    steps = torch.arange(40, dtype=torch.float32)[:, None, None].expand(40, cfg.whisper_layers + 1, cfg.audio_dim)
    win = tiny.audio.windows(steps, 20)
    assert win.shape == (20, (2 * 1 + 1) * 2 * (cfg.whisper_layers + 1), cfg.audio_dim)
    assert win[5, :: cfg.whisper_layers + 1, 0].tolist() == list(range(8, 14))   # 50 Hz steps of frames 4, 5, 6


def test_univdm_par_training_step_changes_the_parameters():
    torch.manual_seed(1)
    comp = P.build_components(PAHAConfig.tiny())
    kp = KEYPOINTS[None, None].expand(1, 3, -1, -1).clone()
    batch = tiny_batch(comp, b=1, f=3, seed=1, keypoints=kp)
    parts = PARTS
    before = {k: v.detach().clone() for k, v in comp.model.named_parameters()}
    opt = torch.optim.Adam(comp.model.parameters(), lr=1e-3)
    out = T.univdm_loss(comp, batch, torch.tensor([400]), torch.randn(batch.latents.shape), parts)
    assert torch.isfinite(out["loss_univdm"]) and float(out["par_weight_max"]) > 1.0
    opt.zero_grad()
    out["loss_univdm"].backward()
    opt.step()
    changed = [k for k, v in comp.model.named_parameters() if not torch.equal(v, before[k])]
    assert len(changed) > 0.5 * len(before)
    assert any("attn2" in k for k in changed)                 # the audio cross-attention trains too


# --- PCE training ---------------------------------------------------------------------------------------------------
def test_pce_bce_falls_on_real_vs_generated(tiny):
    cfg = tiny.cfg
    g = torch.Generator().manual_seed(4)
    h, w = cfg.latent_hw
    ref = torch.randn(2, 4, h, w, generator=g)
    audio = torch.randn(2, 3, cfg.audio_tokens_per_frame, cfg.audio_dim, generator=g)
    face = P.face_mask_from_box(cfg.face_box, 3, (h, w)).expand(2, -1, -1, -1)
    real = torch.randn(2, 4, 3, h, w, generator=g)
    fake = T.generated_clips(tiny, ref, audio, face, seed=0, steps=2)
    assert fake.shape == real.shape and torch.isfinite(fake).all()
    latents = torch.cat([real, fake])
    labels = torch.tensor([1.0, 1.0, 0.0, 0.0])
    args = (ref.repeat(2, 1, 1, 1), latents, audio.repeat(2, 1, 1, 1), labels, face.repeat(2, 1, 1, 1),
            torch.tensor([200, 400, 200, 400]), torch.randn(latents.shape, generator=g))

    def evaluate():
        with torch.no_grad():
            return float(T.classifier_loss(tiny, *args, generator=torch.Generator().manual_seed(0))["loss_pce"])

    start = evaluate()
    opt = torch.optim.Adam(tiny.pce.parameters(), lr=1e-2)
    for _ in range(20):                                       # a fixed batch: same clips, noise and mask draws
        out = T.classifier_loss(tiny, *args, generator=torch.Generator().manual_seed(0))
        opt.zero_grad()
        out["loss_pce"].backward()
        opt.step()
    assert set(out) >= {"loss_pce_face", "loss_pce_nonface", "pce_acc_face"}
    end = evaluate()
    assert end < 0.7 * start, (start, end)


def test_pce_mask_prob_decides_masked_or_whole_frame_pooling(tiny):
    from distill.teachers.paha.pce import feature_mask, pce_loss
    cfg = tiny.cfg
    b = tiny_batch(tiny, b=2, f=3, seed=6)
    face = P.face_mask_from_box(cfg.face_box, 3, cfg.latent_hw).expand(2, -1, -1, -1)
    t, noise, labels = torch.tensor([300, 600]), torch.randn(b.latents.shape), torch.tensor([1.0, 0.0])
    sched = tiny.scheduler()
    with torch.no_grad():
        feats = tiny.model.encoder_features(b.ref_latents, sched.add_noise(b.latents, noise, t), t, b.audio)
        fm = feature_mask(face, feats.shape[-2:])
        assert 0 < float(fm.float().mean()) < 1
        for prob, mask in ((0.0, None), (1.0, fm)):
            out = pce_loss(tiny.pce, tiny.model, b.ref_latents, b.latents, b.audio, labels, face, t, noise, sched,
                           mask_prob=prob)
            logits = tiny.pce.logits("face", feats, b.audio, mask)
            bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
            assert float(out["loss_pce_face"]) == pytest.approx(float(bce), abs=1e-6)


# --- sampling and the Teacher interface -----------------------------------------------------------------------------
def test_guidance_moves_the_sample_only_when_on(tiny):
    b = tiny_batch(tiny, f=3, seed=5)
    face = P.face_mask_from_box(tiny.cfg.face_box, 3, tiny.cfg.latent_hw)
    inputs = P.SampleInputs(b.ref_latents, b.audio, face)
    def run(mode, comp=tiny):
        return P.sample(comp, inputs, torch.Generator().manual_seed(0), steps=2, guidance_mode=mode)
    plain, sg, dg = run("none"), run("sg"), run("dg")
    assert torch.isfinite(sg).all() and torch.isfinite(dg).all()
    assert not torch.allclose(plain, sg) and not torch.allclose(sg, dg)
    never = dataclasses.replace(tiny, cfg=tiny.cfg.replace(guidance_fraction=0.0))   # no guided step
    assert torch.equal(run("dg", never), plain)
    with pytest.raises(ValueError, match="guidance_mode"):
        run("cfg")


def test_teacher_generate_score_and_save_round_trip(tmp_path):
    from distill.teachers import make_teacher
    from distill.teachers.paha import PAHATeacher
    torch.manual_seed(0)
    teacher = make_teacher("paha", **vars(PAHAConfig.tiny(context_frames=6, context_overlap=2)))
    assert isinstance(teacher, PAHATeacher) and teacher.is_diffusion
    photo = np.random.default_rng(0).integers(0, 255, (40, 36, 3), dtype=np.uint8)
    audio = torch.randn(8 * 640) * 0.1
    frames = teacher.generate(photo, audio, seed=3)
    assert frames.shape == (8, 32, 32, 3) and frames.dtype == np.uint8
    face = np.zeros((40, 36))
    face[:16, 10:26] = 1
    cond = teacher.make_conditions(photo, audio, face_mask=face)
    cfg = teacher.config
    assert cond["audio"].shape == (1, 8, cfg.audio_tokens_per_frame, cfg.audio_dim)
    assert cond["face_mask"].shape == (1, 8, 16, 16) and 0 < float(cond["face_mask"].mean()) < 1
    x = torch.randn(1, 4, 8, 16, 16)
    eps = teacher.score(x, torch.tensor(400), cond)
    assert eps.shape == x.shape and torch.isfinite(eps).all()
    one = teacher.score(x[:, :, 0], torch.tensor(400), {**cond, "audio": cond["audio"][:, :1]})
    assert one.shape == (1, 4, 16, 16)
    lat = teacher.encode(torch.zeros(1, 3, 32, 32))
    assert lat.shape == (1, 4, 16, 16) and teacher.decode(lat).shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="reference_latents"):
        teacher.score(x, torch.tensor(400), {})
    # save -> load through weights_dir: same tensors, same score
    teacher.save_pretrained(tmp_path)
    loaded = make_teacher("paha", **vars(cfg.replace(weights_dir=str(tmp_path), random_init=False)))
    for name, module in teacher.components.modules().items():
        theirs = loaded.components.modules()[name].state_dict()
        assert all(torch.equal(v, theirs[k]) for k, v in module.state_dict().items()), name
    assert torch.equal(loaded.score(x, torch.tensor(400), cond), eps)
    again = PAHATeacher.from_pretrained(tmp_path)
    assert again.config == loaded.config and torch.equal(again.score(x, torch.tensor(400), cond), eps)
    with pytest.raises(ValueError, match="block_out_channels"):
        P.build_components(cfg.replace(weights_dir=str(tmp_path), block_out_channels=(16, 32), norm_num_groups=8))
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="missing file"):
        P.build_components(cfg.replace(weights_dir=str(tmp_path)))
