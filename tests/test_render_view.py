"""engine/view.py: the one render path. The live engine's frame and the distillation's render of the same motion
agree; a crop is the window of the whole frame; an image background equals a grey level of the same value;
canonical <-> world motion round-trips; an avatar keeps its trained decoder on disk and the engine uses it."""
from pathlib import Path

import numpy as np
import pytest
import torch

from distill.view import TeacherView
from engine.audio.features import audio_features, load_audio
from engine.avatar.bundle import Avatar, PhotoCamera
from engine.avatar.particles import canonical_slots
from engine.deform.decoder import DecoderConfig, GaussianDecoder
from engine.motion.learned import LearnedMotion
from engine.motion.procedural import ProceduralMotion
from engine.motion.source import MotionSource
from engine.render.camera import intrinsics, look_at
from engine.render.gaussians import Gaussians
from engine.runtime import DEFAULT_MODEL_DIR, AvatarEngine, EngineConfig
from engine.view import AvatarView

ROOT = Path(__file__).resolve().parent.parent
SIZE = 64


def body_avatar(n=400, seed=0, normals=True) -> Avatar:
    """A random cloud in front of the photo camera with 22 body particles (pose:11..32; shoulders give the unit),
    skinned to its 3 nearest particles, half of it facing away from the camera when normals is set."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g) * torch.tensor([0.3, 0.4, 0.1]) + torch.tensor([0.0, 0.0, 2.5])
    gs = Gaussians(means, torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=-1),
                   torch.rand(n, 3, generator=g) * 0.03 + 0.01, torch.rand(n, generator=g) * 0.8 + 0.1,
                   torch.randn(n, 4, 3, generator=g) * 0.5)
    names = [f"pose:{i}" for i in range(11, 33)]
    particles = means[torch.randperm(n, generator=g)[:len(names)]].clone()
    d, idx = torch.cdist(means, particles).topk(3, largest=False)
    facing = torch.where(torch.rand(n, 1, generator=g) < 0.5, -1.0, 1.0) * torch.tensor([0.0, 0.0, 1.0])
    cam = PhotoCamera(intrinsics(256, 256, 30.0), look_at(torch.zeros(3), torch.tensor([0.0, 0.0, 2.5])), 256, 256)
    return Avatar(gs, torch.zeros(n, dtype=torch.long), particles, torch.zeros(len(names), dtype=torch.long), names,
                  idx, torch.softmax(-d, -1), cam, {}, -facing if normals else None).validate()


def trained_decoder(k: int, seed: int = 0) -> GaussianDecoder:
    torch.manual_seed(seed)
    dec = GaussianDecoder(DecoderConfig(n_particles=k, hidden=16, embed=4))
    with torch.no_grad():
        for p in dec.parameters():
            p.add_(0.05 * torch.randn_like(p))          # heads off zero: the decoder does more than skinning
    return dec.eval()


def canonical_motion(view: AvatarView, seed: int = 1) -> torch.Tensor:
    """A random canonical motion [K_c, 3] (face units) on the avatar's slots, zero elsewhere."""
    world = torch.randn(view.slots.numel(), 3, generator=torch.Generator().manual_seed(seed)) * 0.02
    return view.to_canonical(world)


@pytest.mark.parametrize("normals", [True, False])
def test_the_engine_frame_is_the_distillations_render(normals):
    avatar = body_avatar(normals=normals)
    avatar.decoder = trained_decoder(avatar.particles.shape[0])
    engine = AvatarEngine(avatar, EngineConfig(width=SIZE, height=SIZE, motion="procedural"))
    teacher = TeacherView(avatar, (SIZE, SIZE))
    motion = canonical_motion(teacher)
    live = engine.render_motion(motion)                                     # uint8 [H, W, 3]
    with torch.no_grad():
        train = teacher.render(avatar.decoder, teacher.to_world(motion)[None])["rgb"][0]
    assert int((live.astype(int) != 255).any(-1).sum()) > 200                # the avatar is in the frame
    assert np.abs(live.astype(float) - train.clamp(0, 1).numpy() * 255).max() <= 0.5 + 1e-3
    assert engine.view().g0.means.shape[0] == teacher.g0.means.shape[0] < (400 if normals else 401)


def test_a_crop_is_the_window_of_the_whole_frame():
    avatar = body_avatar()
    view = AvatarView.from_photo(avatar, 96, 80)
    dec, motion = trained_decoder(22), torch.randn(22, 3) * 0.01
    with torch.no_grad():
        whole, alpha, _ = view.splat(dec, motion)
        part, part_alpha, _ = view.splat(dec, motion, crop=(20, 12, 40, 48))
    assert part.shape == (48, 40, 3) and part_alpha.shape == (48, 40, 1)
    torch.testing.assert_close(part, whole[12:60, 20:60], atol=2e-5, rtol=0)
    torch.testing.assert_close(part_alpha, alpha[12:60, 20:60], atol=2e-5, rtol=0)


def test_an_image_background_equals_the_same_grey_level():
    avatar = body_avatar()
    dec, motion = trained_decoder(22), torch.randn(22, 3) * 0.01
    grey = AvatarView.from_photo(avatar, SIZE, SIZE, background=0.3)
    image = AvatarView.from_photo(avatar, SIZE, SIZE, background=torch.full((SIZE, SIZE, 3), 0.3))
    with torch.no_grad():
        a, b = grey.render(dec, motion[None]), image.render(dec, motion[None])
    torch.testing.assert_close(a["rgb"], b["rgb"], atol=1e-5, rtol=0)
    assert a["alpha"].shape == (1, SIZE, SIZE) and float(a["alpha"].max()) > 0.5
    with pytest.raises(ValueError, match="background"):
        AvatarView.from_photo(avatar, SIZE, SIZE, background=torch.ones(SIZE, SIZE + 2, 3))


def test_canonical_and_world_motion_round_trip():
    view = AvatarView.from_photo(body_avatar(), SIZE, SIZE)
    world = torch.randn(5, 22, 3)
    canonical = view.to_canonical(world)
    assert canonical.shape[-2] > 22 and bool((canonical.abs().sum(-1) > 0).sum(-1).eq(22).all())
    torch.testing.assert_close(view.to_world(canonical), world, atol=1e-6, rtol=1e-6)
    # the unit is a third of the shoulder width (pose:11 - pose:12), so a face unit is that long in the world
    shoulders = float((view.avatar.particles[0] - view.avatar.particles[1]).norm())
    assert view.unit == pytest.approx(shoulders / 3)


def test_the_avatar_keeps_its_decoder_and_the_engine_uses_it(tmp_path):
    avatar = body_avatar()
    rest = avatar.deformer()
    assert rest.config.n_particles == 22 and not rest.training                # untrained: pure skinning
    avatar.decoder = trained_decoder(22)
    loaded = Avatar.from_pretrained(avatar.save_pretrained(tmp_path / "me"))
    assert (tmp_path / "me" / "decoder" / "config.json").is_file()
    motion = torch.randn(3, 22, 3) * 0.01
    with torch.no_grad():
        assert torch.equal(loaded.decoder(motion), avatar.decoder(motion))
    engine_a = AvatarEngine(tmp_path / "me", EngineConfig(width=SIZE, height=SIZE, motion="procedural"))
    engine_b = AvatarEngine(avatar, EngineConfig(width=SIZE, height=SIZE, motion="procedural"))
    m = canonical_motion(engine_a.view())
    assert np.array_equal(engine_a.render_motion(m), engine_b.render_motion(m))
    avatar.decoder = None                                                     # skinning alone looks different
    assert not np.array_equal(AvatarEngine(avatar, EngineConfig(width=SIZE, height=SIZE,
                                                               motion="procedural")).render_motion(m),
                              engine_b.render_motion(m))
    avatar.decoder = trained_decoder(5)
    with pytest.raises(ValueError, match="decoder: made for 5 particles"):
        avatar.validate()


def test_both_motion_sources_follow_the_protocol():
    """push gives [t, K_c, 3]; reset replays the same motion; interrupt keeps the time index; the procedural rig
    is strictly causal (later audio in the same push leaves earlier frames as they were)."""
    mel, rms = audio_features(load_audio(ROOT / "assets" / "speech.wav")[:16000 * 2])            # 50 frames
    later = torch.cat([mel[:20], mel[:30].flip(0)]), torch.cat([rms[:20], rms[:30].flip(0)])
    for source in (ProceduralMotion.for_avatar(body_avatar()), LearnedMotion(DEFAULT_MODEL_DIR, 2, 1.0, 0)):
        assert isinstance(source, MotionSource)
        whole = source.push(mel, rms)
        assert whole.shape == (50, len(canonical_slots()), 3) and float(whole.abs().max()) > 0.01
        source.reset()
        assert torch.equal(source.push(mel, rms), whole)
        source.interrupt()
        assert source.frame == 50
    rig = ProceduralMotion.for_avatar(body_avatar())
    same, changed = rig(mel, rms), rig(*later)                 # __call__: a whole clip from a fresh state
    assert torch.equal(changed[:20], same[:20]) and not torch.equal(changed[20:], same[20:])
