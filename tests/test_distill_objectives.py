"""The finetune objective on a real (small) avatar and synthetic clips: each loss term is what it claims, and
SDS through the tiny EchoMimicV2 teacher's score reaches the avatar's decoder through the renderer."""
from pathlib import Path

import numpy as np
import pytest
import torch

from distill.config import FinetuneConfig
from distill.dataset import ClipTensors, Windows
from distill.objectives import FinetuneObjective
from distill.view import TeacherView
from engine.audio.encoder import AudioEncoder, AudioEncoderConfig
from engine.deform.decoder import DecoderConfig, GaussianDecoder
from engine.motion.dit import MotionDiT, MotionDiTConfig
from engine.avatar.particles import canonical_slots
from engine.avatar.personalize import PersonalizeConfig, personalize
from engine.motion.refiner import FaceHandRefiner, RefinerConfig

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]
KC = len(canonical_slots())


@pytest.fixture(scope="module")
def avatar():
    return personalize(ROOT / "assets" / "astronaut.png", PersonalizeConfig(max_side=160, fit_steps=5),
                       progress=False)


def parts(avatar, T=8, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    view = TeacherView(avatar, (size, size))
    K = avatar.particles.shape[0]
    frames = (torch.rand(T, size, size, 3, generator=g) * 255).to(torch.uint8).numpy()
    clip = ClipTensors("c", torch.randn(T, 80, generator=g), torch.rand(T, generator=g),
                       torch.zeros(T, KC, 3), torch.ones(KC, dtype=torch.bool),
                       view.particle_pixels()[None].expand(T, K, 2).clone(), torch.ones(T, K, dtype=torch.bool),
                       frames, torch.randn(T * 640, generator=g) * 0.1)
    torch.manual_seed(seed)
    models = dict(encoder=AudioEncoder(AudioEncoderConfig(dim=16, hidden=16, layers=1)),
                  dit=MotionDiT(MotionDiTConfig(audio_dim=16, dim=32, depth=1, heads=2, max_len=16, window=8,
                                                overlap=2)),
                  refiner=FaceHandRefiner(RefinerConfig(audio_dim=16, dim=16, heads=2)),
                  decoder=GaussianDecoder(DecoderConfig(n_particles=K, input_scale=1.0 / view.unit)))
    return view, Windows([clip], 8), models


def objective(avatar, cfg, teacher=None):
    view, win, m = parts(avatar)
    person = torch.ones(view.H, view.W, dtype=torch.bool)
    return FinetuneObjective(m["encoder"], m["dit"], m["refiner"], m["decoder"], None, view, win, cfg, 2, person,
                             view.face_box(), teacher), win


def test_untrained_models_put_the_anchors_exactly_on_the_tracks(avatar):
    """Untrained, every model outputs zero motion: the anchor Gaussians stay at rest, and the tracks (which sit
    at rest) shifted by the anchors' rest offsets are met exactly; nothing moves, so ARAP is 0."""
    cfg = FinetuneConfig(batch=1, frames=3, w_simple=0, w_sync=0, arap_points=128)
    obj, win = objective(avatar, cfg)
    out = obj({"index": [0], "generator": torch.Generator().manual_seed(0)})
    assert float(out["traj_px"]) < 1e-3
    assert float(out["loss_arap"]) < 1e-12
    assert float(out["loss_l1"]) > 0.1            # random teacher frames: far from the avatar


def test_sds_through_the_teacher_reaches_the_decoder(avatar):
    pytest.importorskip("transformers")
    from distill.teachers.echomimic_v2 import EchoMimicV2Config, EchoMimicV2Teacher
    torch.manual_seed(0)
    teacher = EchoMimicV2Teacher(**vars(EchoMimicV2Config.tiny(width=32, height=32)))
    cfg = FinetuneConfig(batch=1, frames=2, w_l1=0, w_ssim=0, w_traj=0, w_arap=0, w_sync=0, w_simple=0, w_vsd=1.0,
                         arap_points=64)
    obj, win = objective(avatar, cfg, teacher)
    cond = teacher.make_conditions(np.zeros((32, 32, 3), np.uint8), win.clips[0].audio)
    out = obj({"index": [0], "generator": torch.Generator().manual_seed(1), "teacher_conditions": [cond]})
    assert set(out) >= {"loss_sds", "loss"} and torch.isfinite(out["loss"])
    out["loss"].backward()
    grads = [p.grad for p in obj.decoder.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0           # only SDS is weighted: it got there
