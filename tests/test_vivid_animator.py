"""VividAnimator teacher (distill/teachers/vivid): HCC VQ-VAE, DSAA and codebook masked attention, PCT, hands, the
denoiser's training step, sampling through the Teacher interface, config and folder round trips. Tiny random
models on the CPU."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import distill.teachers.vivid  # noqa: E402,F401
from distill.teachers.vivid import pct  # noqa: E402
from distill.teachers.vivid import pipeline as P  # noqa: E402
from distill.teachers.vivid import training as T  # noqa: E402
from distill.teachers.vivid.config import VividAnimatorConfig  # noqa: E402
from distill.teachers.vivid.dsaa import HeadAudioAdapter  # noqa: E402
from distill.teachers.vivid.hands import box_mask, crop_boxes, hand_boxes, hand_heatmaps  # noqa: E402
from distill.teachers.vivid.hcc import HandCodebookVAE, HCCConfig, codebook_usage  # noqa: E402
from distill.teachers.vivid.masked_attention import MaskedCrossAttention, resize_mask  # noqa: E402
from distill.teachers.vivid.unet import RegionConditions, VividTransformerBlock  # noqa: E402
from engine.config import load_config  # noqa: E402
from sd_video_tiny import TEACHER_YAMLS, as_lists, check_strict_config, random_clip, tiny_components  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
YAML = TEACHER_YAMLS / "vivid_animator.yaml"


@pytest.fixture(scope="module")
def tiny():
    return tiny_components(P, VividAnimatorConfig)


def smooth_crops(n, size, seed):
    """Low-frequency random images in [-1, 1] [n, 3, size, size] (something a small VQ-VAE can learn)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g) * 2 - 1
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


# --- HCC --------------------------------------------------------------------------------------------------------
def test_hcc_quantize_is_the_nearest_code():
    torch.manual_seed(0)
    vq = HandCodebookVAE(HCCConfig.tiny())
    z = torch.randn(2, 16, 8, 8)
    z_q, idx = vq.quantize(z)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 16)
    brute = torch.stack([((vq.codebook.weight - v) ** 2).sum(1).argmin() for v in flat])   # one vector at a time
    assert torch.equal(idx.reshape(-1), brute)
    assert torch.equal(z_q.permute(0, 2, 3, 1).reshape(-1, 16), vq.codebook.weight[brute])


def test_hcc_loss_is_recon_plus_codebook_plus_beta_commitment_with_straight_through():
    torch.manual_seed(0)
    vq = HandCodebookVAE(HCCConfig.tiny(beta=0.25))
    x = smooth_crops(3, 32, 0)
    out = vq.loss(x)
    ref = vq(x)
    recon = ((ref.recon - x) ** 2).mean()
    sq = ((ref.z_q - ref.z_e) ** 2).mean()
    assert torch.allclose(out["loss_hcc"], recon + sq + 0.25 * sq, rtol=1e-6)
    assert torch.allclose(out["hcc_codebook"], sq) and torch.allclose(out["hcc_commit"], sq)
    out["loss_hcc"].backward()
    # the decoder's gradient reaches the encoder through the straight-through estimator; codes move too
    assert vq.encoder.net[0].weight.grad.abs().sum() > 0
    assert vq.codebook.weight.grad.abs().sum() > 0


def test_hcc_training_decreases_the_vq_loss_and_uses_several_codes():
    torch.manual_seed(0)
    vq = HandCodebookVAE(HCCConfig.tiny())
    x = smooth_crops(4, 32, 1)
    opt = torch.optim.Adam(vq.parameters(), lr=3e-3)
    losses, used = [], []
    for _ in range(12):
        out = vq.loss(x)
        opt.zero_grad()
        out["loss_hcc"].backward()
        opt.step()
        losses.append(float(out["loss_hcc"].detach()))
        used.append(int(out["hcc_codes_used"]))
    assert losses[-1] < 0.7 * losses[0], losses
    assert min(used) > 1, used
    with torch.no_grad():
        idx = vq(x).indices
    assert int(codebook_usage(idx)) == len(set(idx.reshape(-1).tolist())) > 1


def test_hcc_codebook_starts_from_data():
    torch.manual_seed(0)
    vq = HandCodebookVAE(HCCConfig.tiny())
    x = smooth_crops(4, 32, 1)                                      # 4 x 8 x 8 = 256 encoder vectors, 32 codes
    vq.init_codebook(x, torch.Generator().manual_seed(0))
    with torch.no_grad():
        z = vq.encoder(x).permute(0, 2, 3, 1).reshape(-1, 16)
        out = vq(x)
    d = (vq.codebook.weight.detach()[:, None] - z[None]).abs().amax(-1)   # [codes, vectors]
    assert float(d.min(1).values.max()) == 0.0                      # every code is one of the encoder vectors
    assert int(codebook_usage(out.indices)) == 32                   # and each is the nearest code of itself


def test_codebook_usage_counts_distinct_codes():
    assert int(codebook_usage(torch.tensor([[3, 3, 1], [7, 1, 3]]))) == 3


def test_hcc_save_load_round_trip_is_exact(tmp_path):
    torch.manual_seed(0)
    vq = HandCodebookVAE(HCCConfig.tiny())
    vq.save_pretrained(tmp_path / "hcc")
    back = HandCodebookVAE.from_pretrained(tmp_path / "hcc")
    assert back.config == vq.config
    for key, value in vq.state_dict().items():
        assert torch.equal(value, back.state_dict()[key]), key
    x = smooth_crops(2, 32, 2)
    with torch.no_grad():
        a, b = vq.eval()(x), back(x)
    assert torch.equal(a.recon, b.recon) and torch.equal(a.indices, b.indices)


def test_hcc_hand_tokens_concatenate_left_then_right():
    torch.manual_seed(0)
    vq = HandCodebookVAE(HCCConfig.tiny())
    left, right = smooth_crops(1, 32, 3), smooth_crops(1, 32, 4)
    with torch.no_grad():
        tokens = vq.hand_tokens(torch.stack([left, right], dim=1))
        z_l, _ = vq.quantize(vq.encoder(left))
        z_r, _ = vq.quantize(vq.encoder(right))
    assert tokens.shape == (1, 2 * 64, 16)
    assert torch.equal(tokens[0, :64], z_l[0].flatten(1).T) and torch.equal(tokens[0, 64:], z_r[0].flatten(1).T)
    with pytest.raises(ValueError, match="crops"):
        vq.hand_tokens(left)


def test_hcc_config_errors_name_the_field():
    with pytest.raises(ValueError, match="channels"):
        HCCConfig(crop=256, grid=16, channels=(64, 128))
    assert HCCConfig() == HCCConfig(codes=1024, code_dim=256, crop=256, grid=16, beta=0.25)   # paper numbers


# --- masked attention (DSAA head stream, HCC codebook attention) -------------------------------------------------
def test_masked_cross_attention_changes_only_the_masked_tokens():
    torch.manual_seed(0)
    attn = MaskedCrossAttention(16, 8, 2)
    x = torch.randn(3, 20, 16)
    ctx = torch.randn(3, 5, 8)
    mask = torch.zeros(3, 20, 1)
    mask[:, 4:9] = 1.0
    mask[2, 15] = 0.5
    y = attn(x, ctx, mask)
    outside = mask[..., 0] == 0
    assert torch.equal(y[outside], x[outside])                     # exactly unchanged
    assert ((y - x).abs().sum(-1)[~outside] > 1e-4).all()          # every masked token changed
    full = x + attn.attn(attn.norm(x), encoder_hidden_states=ctx)  # the unmasked residual, independently
    assert torch.allclose(y[:, 4:9], full[:, 4:9], atol=1e-6)
    assert torch.allclose(y[2, 15], x[2, 15] + 0.5 * (full[2, 15] - x[2, 15]), atol=1e-6)


def test_resize_mask_is_the_area_average():
    m = torch.zeros(1, 1, 4, 4)
    m[0, 0, 0, 0] = 1.0
    m[0, 0, 3, 2:] = 1.0
    tokens = resize_mask(m, 2, 2)
    assert tokens[0, :, 0].tolist() == [0.25, 0.0, 0.0, 0.5]
    assert torch.equal(resize_mask(m, 4, 4), m.flatten(2).transpose(1, 2))


def test_region_conditions_find_the_unet_level():
    c = RegionConditions()
    m = torch.rand(2, 1, 16, 16)
    c.masks["head"] = m
    assert torch.equal(c.mask("head", 256), m.flatten(2).transpose(1, 2))
    assert torch.allclose(c.mask("head", 16), F.avg_pool2d(m, 4).flatten(2).transpose(1, 2))
    with pytest.raises(ValueError, match="no U-Net level"):
        c.mask("head", 50)


@pytest.mark.parametrize("stream", ["head", "hand"])
def test_block_streams_touch_only_their_region(stream):
    """In a denoiser block: with the region mask M, tokens outside M come out exactly as with the stream off."""
    torch.manual_seed(0)
    cond = RegionConditions()
    block = VividTransformerBlock(16, 2, audio_dim=8, head_audio_dim=12, code_dim=6, conditions=cond).eval()
    from distill.teachers.sd_video.blocks import Context
    x = torch.randn(2, 36, 16)
    ctx = Context(torch.zeros(2, 4), 1, torch.randn(2, 5, 8), None, None, 1.0)
    mask = torch.zeros(2, 1, 6, 6)
    mask[:, :, 1:3, 2:5] = 1.0
    tokens = torch.randn(2, 7, 12 if stream == "head" else 6)
    with torch.no_grad():
        off = block(x, ctx, None)
        setattr(cond, f"{stream}_tokens", tokens)
        cond.masks[stream] = mask
        on = block(x, ctx, None)
    inside = mask.flatten(2)[:, 0] > 0
    assert torch.equal(on[~inside], off[~inside])
    assert ((on - off).abs().sum(-1)[inside] > 1e-4).all()


def test_head_adapter_pools_over_t_then_adapts():
    torch.manual_seed(0)
    adapter = HeadAudioAdapter(audio_dim=8, hidden=16, out_dim=12, max_frames=32)
    w = torch.randn(2, 24, 50, 8)                                  # W_a [B, F=24, T=50, D]
    pooled = adapter.pooled(w)
    by_hand = adapter.mlp(w.sum(2) / 50) + adapter.pos_encoder.pe[:, :24]
    assert pooled.shape == (2, 24, 12) and torch.allclose(pooled, by_hand, atol=1e-6)
    keys = adapter(w)
    assert keys.shape == (48, 24, 12)
    assert torch.equal(keys[0], pooled[0]) and torch.equal(keys[23], pooled[0]) and torch.equal(keys[24], pooled[1])
    with pytest.raises(ValueError, match="windows"):
        adapter(torch.randn(2, 24, 8))


# --- PCT --------------------------------------------------------------------------------------------------------
REF = torch.tensor([[50, 20], [50, 35], [35, 36], [30, 55], [28, 72], [65, 36], [70, 55], [72, 72], [40, 80],
                    [40, 100], [40, 120], [60, 80], [60, 100], [60, 120], [46, 17], [54, 17], [42, 19], [58, 19]],
                   dtype=torch.float64)


def test_pct_undoes_a_per_axis_scale_and_shift():
    drv = (REF * torch.tensor([1.7, 0.6]) + torch.tensor([13.0, -4.0]))[None].repeat(3, 1, 1)
    cal = pct.calibrate_pose(drv, REF)
    assert (cal.poses.double() - REF).abs().max() < 1e-5
    assert torch.allclose(cal.scale.double(), torch.tensor([1 / 1.7, 1 / 0.6], dtype=torch.float64), atol=1e-6)
    assert torch.allclose(cal.rho, torch.ones(len(pct.BONES)), atol=1e-6)
    assert cal.translation.abs().max() < 1e-5


def test_pct_segment_ratios_against_a_hand_computation():
    drv = REF.clone()
    drv[4] = drv[3] + torch.tensor([0.0, 34.0])                   # right forearm 34 px, straight down
    drv[7] = drv[6] + torch.tensor([6.0, 8.0])                    # left forearm 10 px
    drv = drv * torch.tensor([2.0, 0.5]) + torch.tensor([-7.0, 3.0])
    cal = pct.calibrate_pose(drv[None], REF)
    rho = dict(zip(pct.BONES, cal.rho.tolist()))
    # by hand: the global step maps drv back to the unscaled pose, whose forearms are 34 and 10 px long;
    # the reference forearms are (28-30, 72-55) and (72-70, 72-55): sqrt(4 + 289) = sqrt(293) px each
    assert rho[(3, 4)] == pytest.approx(math.sqrt(293) / 34, abs=1e-6)
    assert rho[(6, 7)] == pytest.approx(math.sqrt(293) / 10, abs=1e-6)
    assert all(v == pytest.approx(1.0, abs=1e-6) for k, v in rho.items() if k not in ((3, 4), (6, 7)))
    # the wrists keep their driving directions (down; (6, 8)/10) with the reference lengths
    out = cal.poses[0].double()
    assert torch.allclose(out[4], torch.tensor([30.0, 55 + math.sqrt(293)], dtype=torch.float64), atol=1e-4)
    assert torch.allclose(out[7], torch.tensor([70 + 0.6 * math.sqrt(293), 55 + 0.8 * math.sqrt(293)],
                                               dtype=torch.float64), atol=1e-4)
    assert (out[:4] - REF[:4]).abs().max() < 1e-5                 # the rest is the reference


def test_pct_keeps_the_driving_motion_with_the_reference_lengths():
    base = REF * torch.tensor([1.5, 1.5]) + torch.tensor([4.0, 9.0])   # an isotropically scaled performer
    moved = base.clone()
    moved[4] = base[3] + torch.tensor([25.5, 0.0])                    # frame 1: forearm raised sideways
    cal = pct.calibrate_pose(torch.stack([base, moved]), REF)
    out = cal.poses.double()
    assert (out[0] - REF).abs().max() < 1e-5
    fore = math.sqrt(293)                                             # the reference forearm length
    # driving frame-1 forearm: 25.5 px horizontal at scale 1.5 -> 17 px after the global step, rho = 1 (frame 0)
    assert torch.allclose(out[1, 4], torch.tensor([30 + 17.0, 55.0], dtype=torch.float64), atol=1e-4)
    assert (out[1, 4] - out[1, 3]).norm() != pytest.approx(fore)     # the frame's own length change is kept


def test_pct_half_body_uses_an_isotropic_scale_and_keeps_nan():
    ref = REF.clone()
    ref[[8, 9, 10, 11, 12, 13]] = float("nan")                        # no hips or legs in the frame
    drv = (ref * 2.0 + torch.tensor([5.0, 5.0]))[None]
    cal = pct.calibrate_pose(drv, ref)
    assert cal.scale.tolist() == pytest.approx([0.5, 0.5])
    seen = torch.isfinite(ref).all(-1)
    assert (cal.poses[0][seen].double() - ref[seen]).abs().max() < 1e-5
    assert torch.isnan(cal.poses[0][~seen]).all()


def test_pct_rejects_bad_inputs():
    with pytest.raises(ValueError, match="driving"):
        pct.calibrate_pose(REF, REF)
    with pytest.raises(ValueError, match="bones"):
        pct.calibrate_pose(REF[None], REF, bones=((3, 4), (1, 2), (2, 3)))
    bad = REF.clone()
    bad[2] = float("nan")
    with pytest.raises(ValueError, match="shoulders"):
        pct.calibrate_pose(bad[None], REF)


# --- hands ------------------------------------------------------------------------------------------------------
def test_hand_heatmaps_boxes_masks_and_crops():
    kp = torch.full((1, 2, 21, 2), float("nan"))
    kp[0, 0, :, 0] = torch.linspace(0.25, 0.5, 21)                   # left hand spans x 0.25..0.5, y 0.5..0.6
    kp[0, 0, :, 1] = torch.linspace(0.5, 0.6, 21)
    one = torch.full((1, 2, 21, 2), float("nan"))
    one[0, 0, 0] = torch.tensor([0.5, 0.5])                           # a single seen joint at the frame centre
    heat = hand_heatmaps(one, 32, 32, sigma=0.05)                     # sigma 1.6 px
    assert heat.shape == (2, 1, 32, 32) and heat[1].max() == 0       # right hand unseen: nothing drawn
    # pixel (16, 16) has its centre at 16.5 px, half a pixel from the joint on each axis
    assert float(heat[0, 0, 16, 16]) == pytest.approx(math.exp(-0.5 / (2 * 1.6 ** 2)), rel=1e-5)
    assert float(heat[0, 0, 16, 20]) == pytest.approx(math.exp(-(0.25 + 4.5 ** 2) / (2 * 1.6 ** 2)), rel=1e-5)
    box = hand_boxes(kp, margin=0.1)
    # centre (0.375, 0.55), half side 0.25 * 0.6 = 0.15
    assert box[0, 0].tolist() == pytest.approx([0.225, 0.4, 0.525, 0.7])
    assert torch.isnan(box[0, 1]).all()
    mask = box_mask(box, 10, 10)
    want = torch.zeros(10, 10)
    want[4:7, 2:5] = 1                                               # centres (i + 0.5) / 10 inside the box
    assert torch.equal(mask[0], want)
    img = torch.rand(1, 3, 16, 16) * 2 - 1
    crops = crop_boxes(img, torch.tensor([[[0.0, 0.0, 1.0, 1.0], [float("nan")] * 4]]), 16)
    assert torch.allclose(crops[0, 0], img[0], atol=1e-6) and bool((crops[0, 1] == -1).all())
    quarter = crop_boxes(img, torch.tensor([[[0.5, 0.5, 1.0, 1.0], [0.0, 0.0, 0.5, 0.5]]]), 8)
    assert torch.allclose(quarter[0, 0], img[0, :, 8:, 8:], atol=1e-6)
    assert torch.allclose(quarter[0, 1], img[0, :, :8, :8], atol=1e-6)


# --- denoiser: training step and sampling -----------------------------------------------------------------------
def tiny_batch(comp, b=2, f=3, seed=0):
    cfg = comp.cfg
    g, clip = random_clip(cfg, b, f, seed)
    h, w = cfg.latent_hw
    hand = torch.zeros(b, f, h, w)
    hand[..., 9:14, 2:7] = 1
    head = torch.zeros(b, f, h, w)
    head[..., 0:7, 5:11] = 1
    return T.TrainBatch(**clip, hand_heatmaps=torch.rand(b, 2, f, cfg.height, cfg.width, generator=g),
                        head_mask=head, hand_tokens=torch.randn(b, 2 * cfg.hcc_grid ** 2, cfg.hcc_code_dim,
                                                                generator=g), hand_mask=hand)


@pytest.mark.parametrize("drop", T.DROP_MODES)
def test_diffusion_training_step(tiny, drop):
    den = tiny.denoiser
    b = tiny_batch(tiny)
    g = torch.Generator().manual_seed(1)
    out = T.diffusion_loss(tiny, b, torch.tensor([100, 800]), torch.randn(b.latents.shape, generator=g), drop=drop)
    assert set(out) == {"loss_diffusion", "diffusion_drop"} and torch.isfinite(out["loss_diffusion"])
    params = [p for m in (den, tiny.reference_unet, tiny.hand_encoder) for p in m.parameters()]
    for p in params:
        p.grad = None
    out["loss_diffusion"].backward()
    grads = [p.grad for p in params if p.grad is not None]
    assert grads and all(bool(torch.isfinite(gr).all()) for gr in grads)
    hand_grad = den.up_blocks[1].attentions[0].transformer_blocks[0].hand_attn.attn.to_k.weight.grad
    adapter_grad = den.head_adapter.mlp[0].weight.grad
    assert (hand_grad is not None and hand_grad.abs().sum() > 0) == (drop != "all")
    if drop == "none":                                               # zero audio gives the adapter no gradient
        assert adapter_grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny.hcc.parameters())       # the HCC is frozen
    with pytest.raises(ValueError, match="drop"):
        T.diffusion_loss(tiny, b, torch.tensor([1, 2]), torch.randn(b.latents.shape), drop="hands")


def test_sample_drop_probabilities():
    g = torch.Generator().manual_seed(0)
    draws = [T.sample_drop(g, 0.2, 0.3) for _ in range(2000)]
    assert abs(draws.count("all") / 2000 - 0.3) < 0.04 and abs(draws.count("audio") / 2000 - 0.2) < 0.04


def test_hand_tokens_reach_the_denoiser_only_through_the_hand_mask(tiny):
    b = tiny_batch(tiny, b=1, f=2)
    t = torch.tensor([500])
    kw = dict(audio=b.audio, hand_tokens=b.hand_tokens, head_mask=b.head_mask, hand_mask=b.hand_mask)
    with torch.no_grad():
        base = tiny.denoiser(b.latents, t, **kw)
        other_hands = tiny.denoiser(b.latents, t, **{**kw, "hand_tokens": b.hand_tokens + 1})
        no_hand_region = tiny.denoiser(b.latents, t, **{**kw, "hand_tokens": b.hand_tokens + 1,
                                                        "hand_mask": torch.zeros_like(b.hand_mask)})
        no_hands = tiny.denoiser(b.latents, t, **{**kw, "hand_tokens": None})
    assert base.shape == b.latents.shape
    assert not torch.allclose(base, other_hands)
    assert torch.equal(no_hand_region, no_hands)                   # an empty hand mask: F_h changes nothing
    with pytest.raises(ValueError, match="hand_mask"):
        tiny.denoiser(b.latents, t, audio=b.audio, hand_tokens=b.hand_tokens)


def test_two_scale_guidance_combines_three_branches(tiny):
    b = tiny_batch(tiny, b=1, f=2)
    den = tiny.denoiser
    t = torch.tensor([300])
    with torch.no_grad():
        ref = P.reference_tokens(tiny.reference_unet, b.ref_latents)
        cond = dict(audio=b.audio, hand_features=None, reference=ref, hand_tokens=b.hand_tokens,
                    head_mask=b.head_mask, hand_mask=b.hand_mask)
        full = den(b.latents, t, **cond)
        img = den(b.latents, t, **{**cond, "audio": torch.zeros_like(b.audio)})
        unc = den(b.latents, t, **{**cond, "audio": torch.zeros_like(b.audio), "reference": None,
                                   "hand_tokens": None})
        g = P.guided_prediction(den, b.latents, t, cond, 2.5, 2.0)
        assert torch.equal(P.guided_prediction(den, b.latents, t, cond, 1.0, 1.0), full)
    assert torch.allclose(g, unc + 2.0 * (img - unc) + 2.5 * (full - img), atol=1e-5)
    assert not torch.allclose(g, full)


def test_to_epsilon_for_v_prediction():
    ab = torch.tensor([0.0, 0.36, 0.64])
    x, v = torch.randn(1, 4, 2, 3, 3), torch.randn(1, 4, 2, 3, 3)
    eps = P.to_epsilon(v, x, torch.tensor([2]), ab, "v_prediction")
    assert torch.allclose(eps, 0.8 * v + 0.6 * x)
    assert P.to_epsilon(v, x, torch.tensor([2]), ab, "epsilon") is v


def test_sampling_over_two_context_windows(tiny):
    b = tiny_batch(tiny, b=1, f=10)
    inputs = P.SampleInputs(b.ref_latents, b.audio, b.hand_heatmaps, b.head_mask, b.hand_tokens, b.hand_mask)
    lat = P.sample(tiny, inputs, 2, 2.5, 2.5, torch.Generator().manual_seed(0), context_frames=6, context_overlap=2)
    assert lat.shape == (1, 4, 10, 16, 16) and torch.isfinite(lat).all()
    again = P.sample(tiny, inputs, 2, 2.5, 2.5, torch.Generator().manual_seed(0), context_frames=6,
                     context_overlap=2)
    assert torch.equal(lat, again)


# --- the Teacher --------------------------------------------------------------------------------------------------
def hand_keypoints(frames):
    g = torch.Generator().manual_seed(5)
    kp = torch.rand(frames, 2, 21, 2, generator=g) * 0.2
    return kp + torch.tensor([[0.15, 0.6], [0.65, 0.6]])[None, :, None, :]


def test_teacher_generate_and_score():
    from distill.teachers import make_teacher
    from distill.teachers.vivid import VividAnimatorTeacher
    torch.manual_seed(0)
    teacher = make_teacher("vivid_animator", **vars(VividAnimatorConfig.tiny()))
    assert isinstance(teacher, VividAnimatorTeacher) and teacher.is_diffusion
    photo = np.random.default_rng(0).integers(0, 255, (40, 36, 3), dtype=np.uint8)
    audio = torch.randn(12 * 640) * 0.1
    frames = teacher.generate(photo, audio, hand_poses=hand_keypoints(12), seed=3)
    assert frames.shape == (12, 32, 32, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames, teacher.generate(photo, audio, hand_poses=hand_keypoints(12), seed=3))
    assert teacher.generate(photo, audio[:5 * 640 + 100]).shape == (5, 32, 32, 3)     # no hands: T = S // 640
    cond = teacher.make_conditions(photo, audio, hand_poses=hand_keypoints(12))
    assert cond["hand_tokens"].shape == (1, 2 * 64, 16) and cond["hand_mask"].sum() > 0
    x = torch.randn(1, 4, 12, 16, 16)
    eps = teacher.score(x, torch.tensor(400), cond)
    assert eps.shape == x.shape and torch.isfinite(eps).all()
    guided = teacher.score(x, torch.tensor(400), {**cond, "audio_guidance_scale": 2.5, "image_guidance_scale": 2.5})
    assert torch.isfinite(guided).all() and not torch.allclose(guided, eps)
    one = teacher.score(x[:, :, 0], torch.tensor(400), {
        "reference_latents": cond["reference_latents"], "audio": cond["audio"][:, :1],
        "hand_heatmaps": cond["hand_heatmaps"][:, :, :1], "hand_tokens": cond["hand_tokens"],
        "hand_mask": cond["hand_mask"][:, :1], "head_mask": cond["head_mask"][:, :1]})
    assert one.shape == (1, 4, 16, 16) and torch.isfinite(one).all()
    lat = teacher.encode(torch.zeros(1, 3, 32, 32))
    assert lat.shape == (1, 4, 16, 16) and teacher.decode(lat).shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="reference_latents"):
        teacher.score(x, torch.tensor(400), {})
    with pytest.raises(ValueError, match="hand_poses"):
        teacher.make_conditions(photo, audio, hand_poses=np.zeros((12, 21, 2)))


def test_teacher_config_errors():
    from distill.teachers.vivid import VividAnimatorTeacher
    check_strict_config(VividAnimatorTeacher, P, VividAnimatorConfig)
    with pytest.raises(ValueError, match="not a directory"):
        P.build_components(VividAnimatorConfig.tiny(weights_dir="/nonexistent/vivid"))


def test_components_folder_round_trip(tiny, tmp_path):
    P.save_components(tiny, tmp_path / "vivid")
    loaded = P.build_components(tiny.cfg.replace(weights_dir=str(tmp_path / "vivid"), random_init=False))
    for name, module in tiny.modules().items():
        theirs = loaded.modules()[name].state_dict()
        assert set(theirs) == set(module.state_dict()), name
        for key, value in module.state_dict().items():
            assert torch.equal(value, theirs[key]), f"{name}.{key}"
    with pytest.raises(ValueError, match="another architecture"):
        P.build_components(tiny.cfg.replace(weights_dir=str(tmp_path / "vivid"), random_init=False,
                                            head_audio_dim=32))
    (tmp_path / "vivid" / "hcc" / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="missing file"):
        P.build_components(tiny.cfg.replace(weights_dir=str(tmp_path / "vivid"), random_init=False))


# --- config -------------------------------------------------------------------------------------------------------
def test_yaml_equals_the_full_defaults():
    assert as_lists(load_config(VividAnimatorConfig, YAML)) == as_lists(VividAnimatorConfig.full())
    assert load_config(VividAnimatorConfig, YAML) == VividAnimatorConfig.full()


def test_full_config_holds_the_paper_numbers():
    c = VividAnimatorConfig.full()
    assert (c.hcc_codes, c.hcc_code_dim, c.hcc_grid, c.hcc_crop, c.hcc_beta) == (1024, 256, 16, 256, 0.25)
    assert (c.audio_guidance_scale, c.image_guidance_scale, c.context_frames, c.audio_dim) == (2.5, 2.5, 24, 384)
    assert c.audio_tokens_per_frame == 50                          # W_a: T = 50


def test_full_size_modules_on_the_meta_device():
    """The full-size HCC maps 256x256 crops to a 16x16 grid of 256-d codes; the full denoiser pairs with the
    ReferenceNet. Built on the meta device: no memory, no weights."""
    from distill.teachers.sd_video.reference import build_reference_unet, check_pairing
    from distill.teachers.vivid.unet import VividUNet3D
    cfg = VividAnimatorConfig.full()
    with torch.device("meta"):
        vq = HandCodebookVAE(cfg.hcc_config())
        z = vq.encoder(torch.empty(2, 3, 256, 256))
        tokens = vq.hand_tokens(torch.empty(1, 2, 3, 256, 256))
        den = VividUNet3D(cfg)
        check_pairing(build_reference_unet(cfg), den)
    assert vq.codebook.weight.shape == (1024, 256) and z.shape == (2, 256, 16, 16)
    assert tokens.shape == (1, 2 * 256, 256)                         # F_h: both hands' 16x16 codes
    block = den.down_blocks[0].attentions[0].transformer_blocks[0]
    assert den.head_adapter.mlp[0].in_features == 384 and block.head_attn.context_dim == 384
    assert block.hand_attn.context_dim == 256


def test_unknown_config_key_is_named(tmp_path):
    bad = tmp_path / "v.yaml"
    bad.write_text(YAML.read_text() + "hcc_codez: 3\n")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['hcc_codez'\].*valid keys"):
        load_config(VividAnimatorConfig, bad)
    with pytest.raises(ValueError, match="hcc_channels"):
        VividAnimatorConfig.tiny(hcc_crop=64)
    with pytest.raises(ValueError, match="context_frames"):
        VividAnimatorConfig.tiny(context_frames=40)
