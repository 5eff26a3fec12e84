"""EchoMimicV2 teacher (distill/teachers/echomimic_v2, on the shared distill/teachers/sd_video parts): a tiny random
model on the CPU for the mechanics, the full-size skeleton on the meta device for the released checkpoint names
(tests/data/echomimic_v2_keys/)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from distill.teachers.echomimic_v2 import checkpoint as ckpt  # noqa: E402
from distill.teachers.echomimic_v2 import pipeline as P  # noqa: E402
from distill.teachers.echomimic_v2 import training as T  # noqa: E402
from distill.teachers.echomimic_v2.config import EchoMimicV2Config  # noqa: E402
from distill.teachers.echomimic_v2.pipeline import make_pose_encoder  # noqa: E402
from distill.teachers.sd_video.audio import WhisperAudioFeatures  # noqa: E402
from distill.teachers.sd_video.motion import MotionModule  # noqa: E402
from distill.teachers.sd_video.reference import build_reference_unet, reference_tokens  # noqa: E402
from distill.teachers.sd_video.sampling import context_windows  # noqa: E402
from distill.teachers.sd_video.unet3d import DenoisingUNet3D  # noqa: E402
from sd_video_tiny import random_clip, tiny_components  # noqa: E402

KEYS = Path(__file__).parent / "data" / "echomimic_v2_keys"


@pytest.fixture(scope="module")
def tiny():
    return tiny_components(P, EchoMimicV2Config)


def tiny_batch(comp, b=1, f=4, seed=0):
    cfg = comp.cfg
    g, clip = random_clip(cfg, b, f, seed)
    return T.TrainBatch(**clip, pose=torch.rand(b, 3, f, cfg.height, cfg.width, generator=g))


def trainable(comp):
    return [p for m in (comp.denoiser, comp.reference_unet, comp.pose_encoder) for p in m.parameters()]


def backward_and_check(comp, loss):
    params = trainable(comp)
    for p in params:
        p.grad = None
    loss.backward()
    grads = [p.grad for p in params if p.grad is not None]
    assert grads, "no gradient reached the model"
    assert all(bool(torch.isfinite(g).all()) for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


# --- released checkpoint names --------------------------------------------------------------------------------------
def read_keys(name):
    out = {}
    for line in (KEYS / name).read_text().splitlines():
        if line and not line.startswith("#"):
            key, shape = line.split("\t")
            out[key] = json.loads(shape)
    assert out, f"{name}: no keys"
    return out


def meta_state(keys):
    return {k: torch.empty(s, device="meta") for k, s in keys.items()}


@pytest.fixture(scope="module")
def full_skeleton():
    """The full-size modules on the meta device: no memory, no weights."""
    cfg = EchoMimicV2Config()
    with torch.device("meta"):
        return {"denoiser": DenoisingUNet3D(cfg), "reference": build_reference_unet(cfg),
                "pose": make_pose_encoder(cfg), "whisper": WhisperAudioFeatures(cfg)}


def test_key_files_say_how_they_were_derived():
    for path in sorted(KEYS.glob("*.txt")):
        head = [line for line in path.read_text().splitlines() if line.startswith("#")]
        text = " ".join(head)
        assert "Derived" in text and "Verification" in text, path.name


def test_full_size_denoiser_accepts_denoising_unet_and_motion_module_keys(full_skeleton):
    den = full_skeleton["denoiser"]
    spatial, motion = read_keys("denoising_unet.txt"), read_keys("motion_module.txt")
    assert not any("motion_modules" in k for k in spatial) and all("motion_modules" in k for k in motion)
    assert sum(p.numel() for p in den.parameters()) > 1.2e9           # the real size, allocated nowhere
    den.load_state_dict({**meta_state(spatial), **meta_state(motion)}, strict=True, assign=True)


def test_full_size_reference_unet_accepts_reference_unet_keys(full_skeleton):
    full_skeleton["reference"].load_state_dict(meta_state(read_keys("reference_unet.txt")), strict=True, assign=True)


def test_full_size_pose_encoder_accepts_pose_encoder_keys(full_skeleton):
    full_skeleton["pose"].load_state_dict(meta_state(read_keys("pose_encoder.txt")), strict=True, assign=True)


def test_whisper_key_renaming_covers_the_encoder_exactly(full_skeleton):
    openai = read_keys("whisper_tiny.txt")
    renamed = ckpt.rename_openai_whisper_encoder(meta_state(openai))
    assert len(renamed) == sum(k.startswith("encoder.") for k in openai)      # decoder keys dropped
    assert renamed["layers.3.self_attn.k_proj.weight"].shape == (384, 384)
    assert "embed_positions.weight" in renamed and "layer_norm.bias" in renamed
    full_skeleton["whisper"].encoder.load_state_dict(renamed, strict=True, assign=True)


# --- loading the released layout ------------------------------------------------------------------------------------
def openai_names(hf_state):
    """transformers WhisperEncoder names -> OpenAI names (the inverse of OPENAI_TO_HF_WHISPER)."""
    out = {}
    for key, value in hf_state.items():
        new = "encoder." + key
        for old, rep in ckpt.OPENAI_TO_HF_WHISPER:
            new = new.replace(rep, old)
        out[new] = value
    return out


def write_released_layout(comp, root: Path, accelerated=False):
    """Save a component set in the released pretrained_weights layout."""
    from diffusers import UNet2DConditionModel
    cfg = comp.cfg
    suffix = "_acc" if accelerated else ""
    den = comp.denoiser.state_dict()
    torch.save({k: v for k, v in den.items() if "motion_modules" not in k}, root / f"denoising_unet{suffix}.pth")
    torch.save({k: v for k, v in den.items() if "motion_modules" in k}, root / f"motion_module{suffix}.pth")
    torch.save(comp.reference_unet.state_dict(), root / "reference_unet.pth")
    torch.save(comp.pose_encoder.state_dict(), root / "pose_encoder.pth")
    (root / "audio_processor").mkdir()
    dims = dict(n_mels=cfg.whisper_mels, n_audio_ctx=cfg.whisper_window_seconds * 50, n_audio_state=cfg.audio_dim,
                n_audio_head=cfg.whisper_heads, n_audio_layer=cfg.whisper_layers, n_vocab=8, n_text_ctx=4,
                n_text_state=cfg.audio_dim, n_text_head=cfg.whisper_heads, n_text_layer=1)
    state = openai_names(comp.audio.encoder.state_dict())
    state["decoder.token_embedding.weight"] = torch.zeros(8, cfg.audio_dim)
    torch.save({"dims": dims, "model_state_dict": state}, root / "audio_processor" / "tiny.pt")
    UNet2DConditionModel(**cfg.reference_unet_kwargs()).save_pretrained(root / ckpt.SD_UNET_DIR)
    comp.vae.save_pretrained(root / ckpt.VAE_DIR)


def test_released_layout_round_trip(tiny, tmp_path):
    write_released_layout(tiny, tmp_path)
    loaded = P.build_components(tiny.cfg.replace(weights_dir=str(tmp_path), random_init=False))
    for name, module in tiny.modules().items():
        theirs = loaded.modules()[name].state_dict()
        for key, value in module.state_dict().items():
            assert torch.equal(value, theirs[key]), f"{name}.{key}"


@pytest.mark.parametrize("accelerated", [False, True])
@pytest.mark.parametrize("victim", ["denoising_unet", "motion_module", "reference_unet.pth", "pose_encoder.pth",
                                    "audio_processor/tiny.pt", "sd-image-variations-diffusers/unet/config.json",
                                    "sd-vae-ft-mse/diffusion_pytorch_model.safetensors"])
def test_a_missing_file_is_named(tiny, tmp_path, accelerated, victim):
    write_released_layout(tiny, tmp_path, accelerated)
    name = victim + ("_acc.pth" if accelerated else ".pth") if "." not in victim else victim
    (tmp_path / name).unlink()
    with pytest.raises(ValueError, match="missing file") as err:
        ckpt.check_weights_dir(tmp_path, accelerated)
    assert str(tmp_path / name) in str(err.value)
    assert str(err.value).count(str(tmp_path)) >= 1


def test_whisper_tiny_pt_under_its_older_name_is_accepted(tiny, tmp_path):
    write_released_layout(tiny, tmp_path)
    (tmp_path / "audio_processor" / "tiny.pt").rename(tmp_path / "audio_processor" / "whisper_tiny.pt")
    assert ckpt.check_weights_dir(tmp_path)["whisper"].name == "whisper_tiny.pt"


def test_no_weights_and_no_random_init_is_an_error():
    with pytest.raises(ValueError, match="weights_dir"):
        P.build_components(EchoMimicV2Config.tiny(random_init=False))
    with pytest.raises(ValueError, match="not a directory"):
        P.build_components(EchoMimicV2Config.tiny(weights_dir="/nonexistent/echomimic"))


# --- modules --------------------------------------------------------------------------------------------------------
def test_untrained_motion_module_and_pose_encoder_are_neutral():
    torch.manual_seed(0)
    m = MotionModule(16, 2, 1, 32, 8)
    x = torch.randn(3 * 5, 16, 4, 4)
    assert torch.equal(m(x, 5), x)
    pe = make_pose_encoder(EchoMimicV2Config.tiny())
    assert torch.equal(pe(torch.rand(1, 3, 2, 32, 32)), torch.zeros(1, 16, 2, 16, 16))


def test_motion_module_mixes_frames_only_along_time():
    torch.manual_seed(0)
    m = MotionModule(16, 2, 1, 32, 8)
    torch.nn.init.normal_(m.temporal_transformer.proj_out.weight, std=0.1)
    x = torch.randn(2 * 4, 16, 3, 3)
    y = m(x, 4)
    x2 = x.clone()
    x2[4:] += torch.randn_like(x2[4:])                      # change the second video only
    assert torch.allclose(m(x2, 4)[:4], y[:4], atol=1e-6)   # the first video does not see it
    x3 = x.clone()
    x3[1] += torch.randn_like(x3[1])                        # change frame 1 of video 0 (not by a constant:
                                                            # the per-frame GroupNorm removes that)
    assert not torch.allclose(m(x3, 4)[0], y[0])            # frame 0 of the same video sees it


def test_reference_attention_reaches_the_denoiser(tiny):
    b = tiny_batch(tiny, f=2)
    with torch.no_grad():
        ref_a = reference_tokens(tiny.reference_unet, b.ref_latents)
        ref_b = reference_tokens(tiny.reference_unet, b.ref_latents + 1.0)
        assert set(ref_a) == set(tiny.denoiser.transformer_block_paths())
        t = torch.tensor([500])
        out_a = tiny.denoiser(b.latents, t, audio=b.audio, reference=ref_a)
        out_b = tiny.denoiser(b.latents, t, audio=b.audio, reference=ref_b)
        out_none = tiny.denoiser(b.latents, t, audio=b.audio, reference=None)
    assert out_a.shape == b.latents.shape
    assert not torch.allclose(out_a, out_b) and not torch.allclose(out_a, out_none)


def test_audio_windows_follow_the_released_indexing():
    cfg = EchoMimicV2Config.tiny()
    feats = WhisperAudioFeatures(cfg)
    steps = torch.arange(40, dtype=torch.float32)[:, None, None].expand(40, cfg.whisper_layers + 1, cfg.audio_dim)
    win = feats.windows(steps, 20)                          # [20, 10 * 3, D]
    assert win.shape == (20, cfg.audio_tokens_per_frame, cfg.audio_dim)
    first = win[:, :: cfg.whisper_layers + 1, 0]            # the step index of each of the 10 steps
    assert first[5].tolist() == list(range(6, 16))          # frame i: steps 2i-4 ... 2i+5
    assert first[0].tolist() == [0] * 5 + list(range(1, 6))  # clamped at the start
    assert first[19].tolist()[-1] == 39                     # and at the end


def test_log_mel_matches_transformers_whisper_feature_extractor():
    from transformers import WhisperFeatureExtractor
    cfg = EchoMimicV2Config.tiny()
    audio = torch.randn(30 * 16000, generator=torch.Generator().manual_seed(1)) * 0.1
    ours = WhisperAudioFeatures(cfg).log_mel(audio)
    ref = WhisperFeatureExtractor(feature_size=80)(audio.numpy(), sampling_rate=16000, return_tensors="np")
    ref = torch.from_numpy(ref["input_features"][0]).float()
    assert ours.shape == ref.shape == (80, 3000)
    assert (ours - ref).abs().max() < 1e-3


def test_audio_features_shape(tiny):
    tokens = tiny.audio(torch.randn(2 * 16000) * 0.1, 50)   # 2 s: two 1-s whisper windows in the tiny config
    assert tokens.shape == (50, tiny.cfg.audio_tokens_per_frame, tiny.cfg.audio_dim)
    assert torch.isfinite(tokens).all()


# --- sampling -------------------------------------------------------------------------------------------------------
def test_context_windows_cover_every_frame():
    assert context_windows(12, 12, 3) == [list(range(12))]
    for n, shift in ((20, 0), (31, 6), (40, 3)):
        wins = context_windows(n, 12, 3, shift)
        assert all(len(w) == 12 == len(set(w)) for w in wins)
        assert set().union(*map(set, wins)) == set(range(n))
        assert wins[1][0] == (9 + shift) % n                # windows start every 12 - 3 frames


@pytest.mark.parametrize("guidance", [1.0, 2.5])
def test_two_step_sampling_of_12_frames(tiny, guidance):
    cfg = tiny.cfg
    b = tiny_batch(tiny, f=12)
    inputs = P.SampleInputs(b.ref_latents, b.audio, b.pose)
    lat = P.sample(tiny, inputs, 2, guidance, torch.Generator().manual_seed(0))
    assert lat.shape == (1, 4, 12, cfg.height // cfg.vae_factor, cfg.width // cfg.vae_factor)
    assert torch.isfinite(lat).all()
    again = P.sample(tiny, inputs, 2, guidance, torch.Generator().manual_seed(0))
    assert torch.equal(lat, again)


def test_sampling_longer_than_one_window(tiny):
    b = tiny_batch(tiny, f=20)
    lat = P.sample(tiny, P.SampleInputs(b.ref_latents, b.audio, b.pose), 2, 1.0, torch.Generator().manual_seed(0))
    assert lat.shape[2] == 20 and torch.isfinite(lat).all()


def test_teacher_generate_and_score():
    from distill.teachers import make_teacher, teacher_names
    from distill.teachers.echomimic_v2 import EchoMimicV2Teacher
    assert "echomimic_v2" in teacher_names()
    torch.manual_seed(0)
    teacher = make_teacher("echomimic_v2", **vars(EchoMimicV2Config.tiny()))
    assert isinstance(teacher, EchoMimicV2Teacher) and teacher.is_diffusion
    photo = np.random.default_rng(0).integers(0, 255, (40, 36, 3), dtype=np.uint8)
    audio = torch.randn(12 * 640) * 0.1
    hands = np.zeros((12, 64, 64, 3), dtype=np.uint8)
    hands[:, 40:50, 10:20] = 255
    frames = teacher.generate(photo, audio, hand_poses=hands, seed=3)
    assert frames.shape == (12, 32, 32, 3) and frames.dtype == np.uint8
    cond = teacher.make_conditions(photo, audio)
    x = torch.randn(1, 4, 12, 16, 16)
    eps = teacher.score(x, torch.tensor(400), cond)
    assert eps.shape == x.shape and torch.isfinite(eps).all()
    one = teacher.score(x[:, :, 0], torch.tensor(400), {**cond, "audio": cond["audio"][:, :1],
                                                         "pose": cond["pose"][:, :, :1]})
    assert one.shape == (1, 4, 16, 16)
    with pytest.raises(ValueError, match="reference_latents"):
        teacher.score(x, torch.tensor(400), {})


def test_teacher_rejects_unknown_config_keys():
    from distill.teachers.echomimic_v2 import EchoMimicV2Teacher
    with pytest.raises(ValueError, match="unknown key"):
        EchoMimicV2Teacher(random_init=True, nonsense=1)


# --- training -------------------------------------------------------------------------------------------------------
def test_apdh_schedule_removes_pose_while_audio_widens():
    s = T.APDHSchedule(total_iterations=100)
    stages = [s.stage(i)[0] for i in range(0, 100, 5)]
    assert stages == sorted(stages) and stages[0] == 0 and stages[-1] == 3
    parts = [len(s.pose_parts(k)) for k in range(4)]
    assert parts == [4, 3, 2, 1] and s.pose_parts(3) == ("hand",)
    assert [s.audio_region(k) for k in range(4)] == ["lip", "lip", "head", "body"]
    early = s.sample(26, 1000, torch.Generator().manual_seed(0))    # just inside stage 1
    late = s.sample(49, 1000, torch.Generator().manual_seed(0))     # near its end
    assert set(early) <= {1, 2} and sum(v == 2 for v in early) < sum(v == 2 for v in late)
    with pytest.raises(ValueError):
        T.APDHSchedule(total_iterations=10, boundaries=(0.5, 0.25, 0.75))


def test_apdh_training_step(tiny):
    b = tiny_batch(tiny, b=2, f=3)
    g = torch.Generator().manual_seed(1)
    shape = b.pose.shape
    parts = {k: (torch.rand(shape, generator=g) > 0.9).float() for k in ("lip", "head", "body", "hand")}
    hw = b.latents.shape[-2:]
    lip = torch.zeros(2, 3, *hw)
    lip[..., 10:12, 6:10] = 1
    head = torch.zeros(2, 3, *hw)
    head[..., 2:13, 4:12] = 1
    out = T.apdh_loss(tiny, b, parts, {"lip": lip, "head": head}, T.APDHSchedule(1000), iteration=600,
                      timesteps=torch.tensor([100, 800]), noise=torch.randn(b.latents.shape, generator=g),
                      generator=g)
    assert set(out) >= {"loss_apdh", "apdh_stage", "apdh_audio_area"}
    assert 2 <= float(out["apdh_stage"]) <= 3
    backward_and_check(tiny, out["loss_apdh"])


def test_hpa_pads_headshots_and_trains_on_the_head_only(tiny):
    cfg = tiny.cfg
    g = torch.Generator().manual_seed(2)
    heads = torch.rand(1, 3, 3, 16, 16, generator=g) * 2 - 1
    canvas, mask = T.hpa_pad(heads, (cfg.height, cfg.width), top=2)
    assert canvas.shape == (1, 3, 3, 32, 32) and mask.shape == (1, 3, 32, 32)
    assert float(mask.sum()) == 3 * 16 * 16 and bool((canvas[mask[:, None].expand_as(canvas) == 0] == -1).all())
    with torch.no_grad():
        frames = canvas.permute(0, 2, 1, 3, 4).reshape(3, 3, 32, 32)
        lat = P.encode_images(tiny, frames).reshape(1, 3, 4, 16, 16).permute(0, 2, 1, 3, 4)
    b = T.TrainBatch(lat, lat[:, :, 0], tiny_batch(tiny, f=3).audio, torch.zeros(1, 3, 3, 32, 32))
    head = T.latent_mask(mask, cfg.vae_factor)
    out = T.hpa_loss(tiny, b, head, torch.tensor([300]), torch.randn(lat.shape, generator=g))
    assert 0 < float(out["hpa_head_fraction"]) < 1
    backward_and_check(tiny, out["loss_hpa"])


def test_phd_phases_and_training_step(tiny):
    w = T.PhDWeights()
    phases = T.phd_phase(torch.tensor([999, 900, 899, 300, 299, 0]), 1000, w.phases)
    assert phases.tolist() == [0, 0, 1, 1, 2, 2]              # first 10% pose, middle 60% detail, last 30% low
    b = tiny_batch(tiny, b=3, f=3)
    t = torch.tensor([950, 500, 100])
    out = T.denoise(tiny, b, t, torch.randn(b.latents.shape, generator=torch.Generator().manual_seed(3)))
    detail = torch.zeros(3, 3, 16, 16)
    detail[..., 4:8, 4:8] = 1
    loss = T.phd_loss(out, b.latents, 1000, w, detail_mask=detail)
    assert loss["phd_phase_counts"].tolist() == [1, 1, 1]
    assert all(torch.isfinite(v).all() for v in loss.values())
    backward_and_check(tiny, loss["loss_phd"])
