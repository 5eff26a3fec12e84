"""fit4d against the one teacher whose motion is known: the procedural teacher drives its photo warp with
engine.motion.procedural's canonical motion, so the pseudo ground truth that tracks + lift recover from its video can
be compared with the motion that made the video. Also: the view's projection against the renderer's own."""
from pathlib import Path

import numpy as np
import pytest
import torch

import cuda_ext
from distill.fit4d import lift_tracks
from distill.teachers.procedural import ProceduralTeacher
from distill.tracks import track
from distill.view import TeacherView
from engine.audio.features import audio_features, load_audio
from engine.avatar.particles import canonical_names
from engine.avatar.personalize import PersonalizeConfig, personalize
from engine.motion.procedural import ProceduralMotion

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
    view = TeacherView(avatar, (256, 256))
    g = view.g0
    _, means2d, _, _ = cuda_ext.ops.fully_fused_projection(g.means, g.quats, g.scales, view.viewmat[None],
                                                           view.K[None], 256, 256, 0.3, 0.01, 1e10)
    assert torch.allclose(view.project(g.means), means2d[0], atol=1e-3)


def test_lift_moves_a_particle_exactly_by_the_pixel_displacement(setup):
    avatar = setup[0]
    view = TeacherView(avatar, (256, 256))
    du = torch.randn(3, avatar.particles.shape[0], 2, generator=torch.Generator().manual_seed(0)) * 4
    moved = view.project(avatar.particles[None] + view.lift(du))
    assert torch.allclose(moved - view.particle_pixels()[None], du, atol=1e-3)


def test_pseudo_ground_truth_recovers_the_teachers_lip_motion(setup):
    avatar, rig, frames, truth = setup
    view = TeacherView(avatar, frames.shape[1:3])
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


def test_track_calibration_recovers_a_known_gain(setup):
    """Frames made by the avatar itself, its lower-lip and chin particles moved by twice the displacement the
    'tracker' reports: GainFit, from gains of 1, finds about 2 for those particles' y and leaves the rest at 1."""
    from distill.fit4d import Fit4DConfig, GainFit, TrackGain, TrackGainConfig
    from distill.losses import photometric_loss
    from engine.deform.decoder import DecoderConfig, GaussianDecoder
    avatar = setup[0]
    view = TeacherView(avatar, (256, 256))
    decoder = GaussianDecoder(DecoderConfig(n_particles=avatar.particles.shape[0])).requires_grad_(False)
    names = avatar.particle_names
    jaw = [names.index(n) for n in ("face:14", "face:17", "face:87", "face:317", "face:152", "face:18", "face:200")
           if n in names]
    g = torch.Generator().manual_seed(0)
    T, K = 24, len(names)
    reported = torch.zeros(T, K, 2)
    reported[:, jaw, 1] = torch.rand(T, 1, generator=g) * 3.0            # the jaw drops 0..3 px, as tracked
    true_gain = torch.ones(K, 2)
    true_gain[jaw, 1] = 2.0
    crop = view.face_box()
    with torch.no_grad():
        target = view.render(decoder, view.lift(reported * true_gain), crop)["rgb"]
    gain = TrackGain(TrackGainConfig(n_particles=K))
    fit = GainFit(view, decoder, gain, Fit4DConfig(), crop)
    opt = torch.optim.Adam(gain.parameters(), 0.05)
    before = float(photometric_loss(view.render(decoder, view.lift(reported), crop)["rgb"], target)["loss_l1"])
    for step in range(60):
        pick = torch.randint(0, T, (4,), generator=g)
        loss = fit({"displacement": reported[pick], "target": target[pick], "mask": None})["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    found = gain().detach()
    with torch.no_grad():
        after = float(fit({"displacement": reported, "target": target, "mask": None})["loss_l1"])
    assert after < 0.5 * before, (before, after)
    assert torch.allclose(found[jaw, 1], torch.full((len(jaw),), 2.0), atol=0.35), found[jaw, 1]
    others = torch.ones(K, 2, dtype=torch.bool)
    others[jaw, 1] = False
    assert torch.equal(found[others], torch.ones(int(others.sum())))  # no displacement, no gradient: still 1
