"""Visemes (engine/motion/visemes.py) and their lip shapes (engine/motion/articulate.py): marks -> per-frame
weights by hand-computed coverage, every mark alphabet, clear errors; the lip shapes measured on the astronaut's
own landmark rig (closed shuts the inner lips whatever the jaw did, rounding narrows and spreading widens the
mouth by the configured amounts); the viseme model trains, saves and streams like the offline model."""
import math
import re

import pytest
import torch

pytest.importorskip("mediapipe", reason="mediapipe is installed by scripts/setup.sh")
from distill.phonemes import available as phonemes_available  # noqa: E402
from engine.avatar.mouth import LOWER_INNER, UPPER_INNER  # noqa: E402
from engine.motion.articulate import ArticulationConfig  # noqa: E402
from engine.motion.procedural import ProceduralConfig, ProceduralMotion  # noqa: E402
from face_rest import astronaut_rest  # noqa: E402
from engine.motion.visemes import (CLOSED, NEUTRAL, OPEN, ROUNDED, SPREAD, VISEMES, VisemeStream,  # noqa: E402
                                   load_viseme_model, marks_to_weights, viseme_of)



def test_marks_cover_frames_and_a_closure_starts_early():
    # "a" over [0, 0.08) s, "m" over [0.08, 0.2): m's closed mark starts 0.02 s early (a nasal), so frame 1
    # [0.04, 0.08) is half closed and the rest of it shares out the open vowel; frames 2-4 are closed; frame 5 is
    # after every mark: neutral.
    w = marks_to_weights([(0.0, 0.08, "a"), (0.08, 0.2, "m")], 6, "espeak")
    assert w.shape == (6, len(VISEMES))
    assert torch.allclose(w.sum(1), torch.ones(6))
    assert math.isclose(float(w[0, OPEN]), 1.0, abs_tol=1e-6)
    assert math.isclose(float(w[1, CLOSED]), 0.5, abs_tol=1e-6)
    assert math.isclose(float(w[1, OPEN]), 0.5, abs_tol=1e-6)
    assert torch.allclose(w[2:5, CLOSED], torch.ones(3))
    assert math.isclose(float(w[5, NEUTRAL]), 1.0, abs_tol=1e-6)
    # a stop (p) is marked at its release: its closure starts 0.06 s before
    p = marks_to_weights([(0.1, 0.12, "p")], 4, "espeak")
    assert math.isclose(float(p[1, CLOSED]), 1.0, abs_tol=1e-6)           # [0.04, 0.08) inside [0.04, 0.15)
    assert math.isclose(float(p[3, CLOSED]), 0.75, abs_tol=1e-6)          # [0.12, 0.16): shut until 0.1 + 0.05
    # offset_s moves the marks onto a later utterance's clock
    assert torch.allclose(marks_to_weights([(1.0, 1.08, "a")], 2, "espeak", offset_s=1.0)[:, OPEN], torch.ones(2))


@pytest.mark.parametrize("symbol,alphabet,viseme", [
    ("m", "espeak", CLOSED), ("u:", "espeak", ROUNDED), ("i:", "espeak", SPREAD), ("t", "espeak", NEUTRAL),
    ("B", "arpabet", CLOSED), ("UW1", "arpabet", ROUNDED), ("iy0", "arpabet", SPREAD), ("AA2", "arpabet", OPEN),
    (21, "microsoft", CLOSED), (7, "microsoft", ROUNDED), (6, "microsoft", SPREAD), (0, "microsoft", NEUTRAL),
    ("p", "polly", CLOSED), ("u", "polly", ROUNDED), ("sil", "polly", NEUTRAL), ("open", "viseme", OPEN)])
def test_every_alphabet(symbol, alphabet, viseme):
    assert viseme_of(symbol, alphabet) == viseme


@pytest.mark.parametrize("marks,alphabet,message", [
    ([(0.0, 0.1, 22)], "microsoft", "0..21"), ([(0.0, 0.1, "x")], "viseme", "expected one of"),
    ([(0.0, 0.1, "a")], "klingon", "alphabet"), ([(0.2, 0.1, "a")], "espeak", "end >= start"),
    ([(0.0, float("nan"), "a")], "espeak", "finite"), ([(0.0, "a")], "espeak", "marks[0]")])
def test_bad_marks_are_named(marks, alphabet, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        marks_to_weights(marks, 3, alphabet)


@pytest.fixture(scope="module")
def rig():
    rest, present, where = astronaut_rest()
    still = ProceduralConfig(sway_deg=0.0, nod_deg=0.0, blink_every_s=1e9, saccade=0.0, breath=0.0)
    return ProceduralMotion(rest, present, still, seed=0), where


def _loud(rig, T=6):
    """Procedural motion of T loud frames: the jaw open."""
    mel = torch.zeros(T, 80)
    return rig(mel, torch.full((T,), 0.3))


def _gap(rig, where, motion):
    """Mean inner-lip opening (lower minus upper inner lip heights), computed here from the landmark indices."""
    pos = rig.rest + motion
    up = pos[[where[f"face:{i}"] for i in UPPER_INNER[1:-1]], 1].mean()
    low = pos[[where[f"face:{i}"] for i in LOWER_INNER[1:-1]], 1].mean()
    return float(low - up)


def _width(rig, where, motion):
    pos = rig.rest + motion
    return float((pos[where["face:291"], 0] - pos[where["face:61"], 0]).abs())


def one_hot(viseme, T):
    w = torch.zeros(T, len(VISEMES))
    w[:, viseme] = 1
    return w


def test_closed_shuts_the_inner_lips_whatever_the_jaw_did(rig):
    proc, where = rig
    motion = _loud(proc)
    assert _gap(proc, where, motion[-1]) > 0.05                          # the loudness opened the mouth
    shut = proc.articulator.apply(motion, one_hot(CLOSED, motion.shape[0]))
    assert abs(_gap(proc, where, shut[-1])) < 1e-4
    chin = int(torch.where(proc.present, proc.rest[:, 1], torch.tensor(-1e9)).argmax())   # the lowest face slot
    assert float(shut[-1, chin, 1]) < float(motion[-1, chin, 1]) - 0.02                   # the chin came up too
    neutral = proc.articulator.apply(motion, one_hot(NEUTRAL, motion.shape[0]))
    assert torch.equal(neutral, motion)


def test_rounding_narrows_and_spreading_widens_by_the_configured_amounts(rig):
    proc, where = rig
    motion = _loud(proc)
    c = ArticulationConfig()
    w0 = _width(proc, where, motion[-1])
    rounded = _width(proc, where, proc.articulator.apply(motion, one_hot(ROUNDED, 6))[-1])
    spread = _width(proc, where, proc.articulator.apply(motion, one_hot(SPREAD, 6))[-1])
    # each corner moves the full amount times its corner weight (x from the lips' middle over the widest |x|:
    # 1 at the wider corner, a little less at the other)
    corners = abs(float(proc.corner_w[where["face:61"], 0])) + abs(float(proc.corner_w[where["face:291"], 0]))
    assert 1.9 < corners <= 2.0
    assert math.isclose(w0 - rounded, c.round_in * corners, rel_tol=1e-4)
    assert math.isclose(spread - w0, c.spread_out * corners, rel_tol=1e-4)


def test_procedural_push_takes_marks_only_where_given(rig):
    proc, where = rig
    mel, rms = torch.zeros(6, 80), torch.full((6,), 0.3)
    plain = proc(mel, rms)
    w = torch.full((6, len(VISEMES)), float("nan"))
    w[3:] = one_hot(CLOSED, 3)
    marked = proc(mel, rms, w)
    assert torch.equal(marked[:3], plain[:3])
    assert all(abs(_gap(proc, where, marked[i])) < 1e-4 for i in range(3, 6))
    with pytest.raises(ValueError, match="visemes"):
        proc(mel, rms, torch.zeros(6, 3))


@pytest.mark.skipif(not phonemes_available(), reason="libespeak-ng absent (apt install espeak-ng)")
def test_viseme_model_trains_saves_and_streams(tmp_path):
    from distill.visemes import evaluate, train
    from engine.audio.encoder import AudioEncoderConfig
    model, report = train(tmp_path / "run", n_clips=10, steps=3, progress=False,
                          config=AudioEncoderConfig(dim=len(VISEMES), hidden=16, layers=2))
    assert set(report) == {"frame_accuracy", "closed_recall", "closed_precision", "clips"} and report["clips"] == 1
    (tmp_path / "models").mkdir()
    model.save_pretrained(tmp_path / "models" / "visemes")
    loaded = load_viseme_model(tmp_path / "models")
    corpus = torch.load(tmp_path / "run" / "corpus.pt", weights_only=False)
    mel = corpus[0]["mel"]
    offline = torch.softmax(loaded(mel), -1)
    stream = VisemeStream(loaded)
    live = torch.cat([stream.push(mel[:7]), stream.push(mel[7:])])
    assert torch.allclose(live, offline, atol=1e-5)
    assert torch.allclose(live.sum(-1), torch.ones(mel.shape[0]), atol=1e-5)
    # the corpus targets are the espeak timeline's: every clip has closed frames (the corpus is full of p b m)
    assert sum(float(c["target"][:, CLOSED].sum()) > 0 for c in corpus) >= 8
    assert load_viseme_model(tmp_path / "run" / "nothing") is None
    assert evaluate(loaded, corpus[:1])["clips"] == 1
