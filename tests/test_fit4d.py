"""fit4d against the one teacher whose motion is known: the procedural teacher drives its photo warp with
engine.procedural's canonical motion, so the pseudo ground truth that tracks + lift recover from its video can
be compared with the motion that made the video. Also: the view's projection against the renderer's own."""
from pathlib import Path

import numpy as np
import pytest
import torch

import cuda_ext
from distill.fit4d import lift_tracks
from distill.teachers.procedural import ProceduralTeacher
from distill.tracks import track
from distill.view import AvatarView
from engine.audio import audio_features, load_audio
from engine.particles import canonical_names
from engine.personalize import PersonalizeConfig, personalize
from engine.procedural import ProceduralMotion

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]


@pytest.fixture(scope="module")
def setup(photo):
    avatar = personalize(ROOT / "assets" / "astronaut.png", PersonalizeConfig(max_side=256, fit_steps=5),
                         progress=False)
    teacher = ProceduralTeacher(max_side=256)
    audio = load_audio(ROOT / "assets" / "speech.wav")[: 16000 * 2]
    frames = teacher.generate(photo, audio, seed=3)
    rig = teacher.prepare(photo)
    mel, rms = audio_features(audio)
    truth = ProceduralMotion(rig.rest_units, rig.present, teacher.config.motion(), 3)(mel, rms)   # [T, K_c, 3]
    return avatar, rig, frames, truth


def test_projection_matches_the_rasterizer(setup):
    avatar = setup[0]
    view = AvatarView(avatar, (256, 256))
    g = view.g0
    _, means2d, _, _ = cuda_ext.ops.fully_fused_projection(g.means, g.quats, g.scales, view.viewmat[None],
                                                           view.K[None], 256, 256, 0.3, 0.01, 1e10)
    assert torch.allclose(view.project(g.means), means2d[0], atol=1e-3)


def test_lift_moves_a_particle_exactly_by_the_pixel_displacement(setup):
    avatar = setup[0]
    view = AvatarView(avatar, (256, 256))
    du = torch.randn(3, avatar.particles.shape[0], 2, generator=torch.Generator().manual_seed(0)) * 4
    moved = view.project(avatar.particles[None] + view.lift(du))
    assert torch.allclose(moved - view.particle_pixels()[None], du, atol=1e-3)


def test_pseudo_ground_truth_recovers_the_teachers_lip_motion(setup):
    avatar, rig, frames, truth = setup
    view = AvatarView(avatar, frames.shape[1:3])
    tracks = track(np.asarray(rig.image), frames, view.particle_pixels(), avatar.particle_names)
    motion, mask = lift_tracks(view, tracks.points, tracks.valid, 0.5)
    names = canonical_names()
    lips = [names.index(n) for n in ("face:14", "face:17", "face:87", "face:317")]     # lower lip: moves with the jaw
    both = [k for k in lips if mask[k] and rig.present[k]]
    assert len(both) == len(lips)
    est, ref = motion[:, both, 1], truth[:, both, 1]                 # vertical displacement, face units
    assert float(ref.abs().max()) > 0.1                               # the speech really opens the mouth
    r = np.corrcoef(est.flatten().numpy(), ref.flatten().numpy())[0, 1]
    err = float((est - ref).abs().median())
    assert r > 0.9 and err < 0.03, (r, err)
