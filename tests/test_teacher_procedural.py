"""The procedural teacher (distill/teachers/procedural.py) on the astronaut photo: frame count and dtype, silence
is the photo with the mouth closed, lip-sync measured by mediapipe (engine.evaluation.lipsync, an evaluator we did not write)
against the RMS envelope of real speech (espeak-ng), the background does not move, the rest mesh warps to the
identity, the mouth interior and closed eyelids are drawn, bad input is named, and the registry builds it."""
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("mediapipe", reason="mediapipe is installed by scripts/setup.sh")

import distill.teachers.procedural as procedural  # noqa: E402
from distill.phonemes import available as phonemes_available  # noqa: E402
from distill.teachers import make_teacher, teacher_names  # noqa: E402
from distill.teachers.procedural import (CONFIG_PATH, EYE_LIDS, ProceduralTeacher,  # noqa: E402
                                         ProceduralTeacherConfig)
from engine.audio.features import frame_rms, load_audio  # noqa: E402
from engine.config import load_config  # noqa: E402
from engine.evaluation.lipsync import mouth_opening, sync_score  # noqa: E402
from engine.avatar.mouth import INTERIOR_RGB  # noqa: E402
from engine.avatar.particles import canonical_names  # noqa: E402
from engine.motion.procedural import ProceduralConfig, ProceduralMotion  # noqa: E402

ASSETS = Path(__file__).resolve().parent.parent / "assets"
SIDE = 224


@pytest.fixture(scope="module")
def teacher():
    return ProceduralTeacher(max_side=SIDE)


@pytest.fixture(scope="module")
def rig(teacher, photo):
    return teacher.prepare(photo)


@pytest.fixture(scope="module")
def speech(teacher, photo):
    audio = load_audio(ASSETS / "speech.wav")[: 5 * 16000]                 # the first 5 s
    return audio, teacher.generate(photo, audio, seed=0)


def where():
    return {n: i for i, n in enumerate(canonical_names())}


def test_frames_and_silence(teacher, rig, photo):
    silence = torch.zeros(2 * 16000 + 100)
    frames = teacher.generate(photo, silence, seed=1)
    assert frames.shape == (len(silence) // 640, SIDE, SIDE, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames, teacher.generate(photo, silence, seed=1))        # deterministic per seed
    assert not np.array_equal(frames, teacher.generate(photo, silence, seed=2))    # the seed drives the idle motion
    diff = np.abs(frames.astype(np.int16) - rig.image.astype(np.int16))
    assert diff.mean() < 3.0, diff.mean()                                  # idle sway and breathing only
    rest, idle = mouth_opening([rig.image]), mouth_opening(frames[::7])
    assert np.isfinite(idle).all() and idle.max() < rest[0] + 0.03, (rest, idle)   # the mouth stays closed


def test_mouth_follows_the_speech_envelope(speech):
    audio, frames = speech
    assert frames.shape[0] == len(audio) // 640
    opening = mouth_opening(frames)
    score = sync_score(opening, frame_rms(audio).numpy())
    assert score["face_found"] > 0.95, score
    assert score["peak_r"] >= 0.6 and abs(score["lag_frames"]) <= 1, score
    assert np.nanmax(opening) - np.nanmin(opening) > 0.15, opening        # the mouth visibly opens and closes


def test_pixels_far_from_the_person_do_not_move(speech, rig):
    """Image corners outside the person mask stay exactly as they are (the body itself may breathe)."""
    _, frames = speech
    s, person, checked = SIDE // 8, rig.landmarks.mask.numpy(), 0
    for rows in (slice(0, s), slice(SIDE - s, SIDE)):
        for cols in (slice(0, s), slice(SIDE - s, SIDE)):
            if person[rows, cols].max() > 0.1:                             # the astronaut's suit fills the bottom
                continue
            diff = np.abs(frames[:, rows, cols].astype(np.int16) - rig.image[rows, cols].astype(np.int16))
            assert diff.max() <= 2, (rows, cols, diff.max())
            checked += 1
    assert checked >= 2


def test_zero_motion_is_the_identity(rig):
    K = len(canonical_names())
    frame = rig.render(torch.zeros(K, 3))
    assert frame.shape == rig.image.shape
    assert np.abs(frame.astype(np.int16) - rig.image.astype(np.int16)).max() <= 2
    with pytest.raises(ValueError, match="displacement"):
        rig.render(torch.zeros(K - 1, 3))


def test_an_open_mouth_shows_the_interior(rig):
    cfg = ProceduralConfig(sway_deg=0.0, nod_deg=0.0, breath=0.0, gesture=0.0, blink_every_s=1e12)
    motion = ProceduralMotion(rig.rest_units, rig.present, cfg)(torch.zeros(6, 80), torch.ones(6))[-1]
    frame = rig.render(motion).astype(np.float64)
    w = where()
    pixels = (rig.rest_units + motion)[:, :2] * rig.unit - 0.5              # deformed slots, index coordinates
    up, low = pixels[w["face:13"]], pixels[w["face:14"]]
    assert float(low[1] - up[1]) > 0.25 * rig.unit                          # the rig opened the lips
    x, y = int(round(float(up[0] + low[0]) / 2)), int(round(float(up[1] + low[1]) / 2))
    inside = frame[y - 1:y + 2, x - 1:x + 2].reshape(-1, 3).mean(0)
    assert np.abs(inside - 255 * np.asarray(INTERIOR_RGB)).max() < 30, inside
    eyes = slice(int(pixels[w["face:159"], 1]) - 3, int(pixels[w["face:145"], 1]) + 3)
    assert np.abs(frame[eyes] - rig.image[eyes]).max() <= 2                 # a jaw-only motion leaves the eyes


def test_a_closed_eye_is_lid_skin(rig):
    w = where()
    motion = torch.zeros(len(canonical_names()), 3)
    for upper, lower in EYE_LIDS:                                           # drop each upper lid onto its lower lid
        for u, lo in zip(upper[1:-1], lower[1:-1]):
            motion[w[f"face:{u}"], 1] = rig.rest_units[w[f"face:{lo}"], 1] - rig.rest_units[w[f"face:{u}"], 1]
    frame = rig.render(motion).astype(np.float64)
    for upper, lower in EYE_LIDS:                                           # the middle of each eye: the iris
        mid = (rig.rest_units[w[f"face:{upper[4]}"], :2] + rig.rest_units[w[f"face:{lower[4]}"], :2]) / 2
        x, y = (mid * rig.unit - 0.5).round().long().tolist()
        before = rig.image[y - 1:y + 2, x - 1:x + 2].astype(np.float64).mean()
        after = frame[y - 1:y + 2, x - 1:x + 2].mean()
        assert after > before + 40, (upper[0], before, after)              # the dark iris is covered by skin


def test_bad_inputs_are_named(teacher, photo):
    audio = torch.zeros(16000)
    with pytest.raises(ValueError, match="reference_image"):
        teacher.generate(photo[..., 0], audio)
    with pytest.raises(ValueError, match="audio"):
        teacher.generate(photo, torch.zeros(0))
    with pytest.raises(ValueError, match="audio"):
        teacher.generate(photo, torch.full((16000,), float("nan")))
    with pytest.raises(ValueError, match="seed"):
        teacher.generate(photo, audio, seed="one")
    with pytest.raises(ValueError, match="reference_image: no face"):
        teacher.generate(np.full((160, 160, 3), 128, np.uint8), audio)


def test_registry_config_and_landmark_cache(photo, monkeypatch):
    assert "procedural" in teacher_names()
    built = make_teacher("procedural", max_side=200, jaw_open=0.25)
    assert isinstance(built, ProceduralTeacher) and not built.is_diffusion
    calm = dict(sway_deg=2.5, nod_deg=4.0, saccade=0.0)                  # the teacher's calmer head
    assert built.config.motion() == ProceduralConfig(jaw_open=0.25, **calm)
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['jaw'\].*valid keys"):
        make_teacher("procedural", jaw=0.2)
    with pytest.raises(ValueError, match="max_side"):
        make_teacher("procedural", max_side=8)
    assert load_config(ProceduralTeacherConfig, CONFIG_PATH) == ProceduralTeacherConfig()
    assert ProceduralTeacher.from_yaml().config == ProceduralTeacherConfig()
    calls = []
    real = procedural.detect
    monkeypatch.setattr(procedural, "detect", lambda image: calls.append(1) or real(image))
    mirrored = np.ascontiguousarray(photo[:, ::-1])                         # an image not seen before
    first = built.prepare(mirrored)
    second = built.prepare(mirrored)
    assert len(calls) == 1 and np.array_equal(first.vertices, second.vertices)


@pytest.mark.skipif(not phonemes_available(), reason="libespeak-ng absent (apt install espeak-ng)")
def test_a_phoneme_timeline_shuts_the_lips_on_p_b_m(teacher, photo, rig):
    """The phonetic teacher: given espeak-ng's phoneme timeline, the inner-lip gap at the bilabials' middle frames
    (mediapipe) is under half of what loudness alone gives, and under the smiling photo's own gap. (Not zero: the
    photo warp moves the lips together but the photo's teeth between them stay drawn; measured 0.08 eye widths.)"""
    from distill.phonemes import phoneme_class, synthesize
    from engine.audio.features import Resampler
    sp = synthesize("Bob bought a big blue map for mom.", "en-us")
    audio = Resampler(sp.sample_rate, 16000)(torch.from_numpy(sp.wave))
    plain = mouth_opening(teacher.generate(photo, audio, seed=0))
    phonetic = mouth_opening(teacher.generate(photo, audio, seed=0, phonemes=sp.phonemes))
    mids = [int((a + b) / 2 * 25) for a, b, p in sp.phonemes if phoneme_class(p) == "bilabial"]
    mids = [i for i in mids if i < len(plain)]
    assert len(mids) >= 6
    shut = float(np.median(phonetic[mids]))
    assert shut < 0.5 * float(np.median(plain[mids])), (phonetic[mids], plain[mids])
    assert shut < 0.9 * float(mouth_opening([rig.image])[0])              # the photo's own lips are apart
    with pytest.raises(ValueError, match="alphabet"):
        teacher.generate(photo, audio, phonemes=sp.phonemes, alphabet="ipa")
