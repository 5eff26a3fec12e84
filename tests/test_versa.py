"""engine/motion/versa (VersaAnimator-style gesture prior) and its teacher: text features and templates by hand, one
training step per loss on tiny random models, EMA dead-code reset, the token->pose bank against a hand mean,
sampling through the Teacher interface, and live text control with the bundled models/versa."""
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.avatar.particles import canonical_names
from engine.motion.versa.commands import BODY_NAMES, BODY_SLOTS, COMMANDS, VOCAB, gesture_motion, text_features
from engine.motion.versa.prior import DEFAULT_DIR, GesturePrior, build_pose_bank
from engine.motion.versa.tokens import MotionTokenConfig, MotionTokenModel
from engine.motion.versa.vqvae import MotionVQVAE, MotionVQVAEConfig

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("one_thread")
TINY_VQ = MotionVQVAEConfig(width=32, code_dim=8, n_codes=16, reset_after=3)
TINY_TOK = MotionTokenConfig(n_codes=16, width=32, layers=2, heads=2, max_tokens=16, dropout=0.0)


def tiny_prior(seed: int = 0) -> GesturePrior:
    torch.manual_seed(seed)
    return GesturePrior(MotionVQVAE(TINY_VQ), MotionTokenModel(TINY_TOK))


# --------------------------------------------------------------------------------------------- commands
def test_text_features_are_a_normalised_bag_of_words():
    v = text_features("Raise your RIGHT hand!")
    want = torch.zeros(len(VOCAB))
    for w in ("raise", "your", "right", "hand"):
        want[VOCAB.index(w)] = 0.5
    assert torch.equal(v, want) and torch.equal(text_features("hand right raise your"), v)
    assert torch.equal(text_features(""), torch.zeros(len(VOCAB)))
    with pytest.raises(ValueError, match=r"unknown word\(s\) \['dance'\]"):
        text_features("dance right hand")


def test_raise_right_hand_template_lifts_only_the_right_arm():
    g = gesture_motion("raise right hand", 48)                          # mid values: lift 2.7, ramp 7 frames
    right = [i for i, n in enumerate(BODY_NAMES) if n.startswith("hand_right:") or n in ("pose:16", "pose:22")]
    elbow = BODY_NAMES.index("pose:14")
    mid = 24                                                              # fully raised (after the ramp)
    assert torch.allclose(g[mid, right, 1], torch.full((len(right),), -2.7))
    assert float(g[mid, elbow, 1]) == pytest.approx(-0.4 * 2.7)
    others = [i for i in range(len(BODY_NAMES)) if i not in right + [elbow, BODY_NAMES.index("pose:18"),
                                                                       BODY_NAMES.index("pose:20")]]
    assert float(g[:, others].abs().max()) == 0.0 and float(g[0].abs().max()) == 0.0
    assert float(g[-1].abs().max()) == 0.0                               # eased back down by the window's end
    assert float(gesture_motion("raise right hand", 48, hold=True)[-1, right, 1].max()) == pytest.approx(-2.7)
    assert float(gesture_motion("", 48).abs().max()) == 0.0


# ------------------------------------------------------------------------------------------------ VQ-VAE
def test_vqvae_training_step_lowers_the_loss_and_uses_several_codes():
    torch.manual_seed(0)
    vq = MotionVQVAE(TINY_VQ).train()
    rng = np.random.default_rng(0)
    x = torch.stack([gesture_motion(str(rng.choice(COMMANDS)), 16, rng).reshape(16, -1) for _ in range(8)])
    opt = torch.optim.Adam(vq.parameters(), 3e-3)
    first = None
    for _ in range(60):
        out = vq(x)
        loss = out["smooth_l1"] + TINY_VQ.beta * out["commit"]
        assert torch.equal(loss, out["loss"])
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert vq(x)["loss"].item() < 0.85 * first
    assert len(set(vq.eval().tokenize(x).flatten().tolist())) > 1
    with pytest.raises(ValueError, match="motion: expected"):
        vq.encode(torch.zeros(1, 10, 192))                                 # 10 frames: not a multiple of 4


def test_ema_resets_a_dead_code_onto_an_encoder_output():
    torch.manual_seed(1)
    vq = MotionVQVAE(TINY_VQ).train()
    z = torch.randn(2, 4, TINY_VQ.code_dim)
    vq.codebook[5] = vq.ema_sum[5] = 1e3                                    # far away: never the nearest
    for _ in range(TINY_VQ.reset_after):
        tokens, _ = vq.quantize(z)
        vq._ema_update(z, tokens)
    flat = z.reshape(-1, TINY_VQ.code_dim)
    assert bool((vq.codebook[5] - flat).abs().sum(-1).min() < 1e-6)         # moved onto one of the encodings
    assert int(vq.unused[5]) == 0


def test_vqvae_save_load_round_trip(tmp_path):
    vq = MotionVQVAE(TINY_VQ)
    vq.save_pretrained(tmp_path / "vq")
    back = MotionVQVAE.from_pretrained(tmp_path / "vq")
    assert all(torch.equal(a, b) for a, b in zip(vq.state_dict().values(), back.state_dict().values()))


# ------------------------------------------------------------------------------------------- token model
def test_masked_token_training_lowers_the_loss_for_each_branch():
    torch.manual_seed(0)
    model = MotionTokenModel(TINY_TOK).train()
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 16, (4, 6), generator=g)
    mel, text = torch.randn(4, 24, 80, generator=g), torch.rand(4, len(VOCAB), generator=g)
    for text_only in (True, False):
        opt = torch.optim.Adam(model.parameters(), 3e-3)
        losses = []
        for step in range(60):
            loss = model.masked_loss(tokens, None if text_only else mel, text, text_only,
                                     torch.Generator().manual_seed(step))
            losses.append(loss.item())
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), (text_only, losses)


def test_text_branch_is_summed_into_the_audio_branch():
    torch.manual_seed(0)
    model = MotionTokenModel(TINY_TOK).eval()
    tokens, mel = torch.randint(0, 16, (1, 6)), torch.randn(1, 24, 80)
    a = model(tokens, mel, text_features("raise right hand")[None])
    b = model(tokens, mel, text_features("wave left hand")[None])
    assert not torch.allclose(a, b)
    with torch.no_grad():
        for layer in model.text_layers:                                     # a silent text branch ...
            for p in layer.parameters():
                p.zero_()
        for p in model.text_in.parameters():
            p.zero_()
    # ... adds the same (bias-free) hidden state whatever the text: the logits no longer depend on it
    assert torch.allclose(model(tokens, mel, text_features("raise right hand")[None]),
                          model(tokens, mel, text_features("wave left hand")[None]))
    s1, s2 = model.sample(6, mel, None, steps=3), model.sample(6, mel, None, steps=3)
    assert torch.equal(s1, s2) and int(s1.max()) < 16 and int(s1.min()) >= 0


# ---------------------------------------------------------------------------------------------- pose bank
def test_pose_bank_is_the_mean_pose_of_each_codes_frames():
    vq = MotionVQVAE(TINY_VQ).eval()
    rng = np.random.default_rng(3)
    motion = torch.stack([gesture_motion(str(rng.choice(COMMANDS)), 16, rng).reshape(16, -1) for _ in range(6)])
    bank = build_pose_bank(vq, motion)
    tokens = vq.tokenize(motion)
    code = int(tokens[0, 1])
    frames = motion.reshape(6, 4, 4, len(BODY_NAMES), 3)[tokens == code][..., :2]   # [n, l, 64, 2]
    assert torch.allclose(bank.bank[code], frames.mean(0), atol=1e-6)
    assert bank(tokens).shape == (6, 16, len(BODY_NAMES), 2)


# --------------------------------------------------------------------------------------- Teacher interface
def test_versa_teacher_generates_through_the_teacher_interface(tmp_path, photo):
    pytest.importorskip("mediapipe", reason="mediapipe is installed by scripts/setup.sh")
    from distill.teachers import make_teacher, teacher_names
    prior = tiny_prior()
    prior.pose_bank = build_pose_bank(prior.vqvae, torch.randn(2, 16, 192))
    prior.save_pretrained(tmp_path / "prior")
    assert "versa_animator" in teacher_names()
    teacher = make_teacher("versa_animator", prior_dir=str(tmp_path / "prior"), command="wave right hand",
                           max_side=96, steps=2)
    audio = torch.randn(30 * 640) * 0.05
    frames = teacher.generate(photo, audio)
    assert frames.shape == (30, 96, 96, 3) and frames.dtype == np.uint8
    assert teacher.body_motion(audio).shape == (30, 64, 3) and teacher.poses(audio).shape == (30, 64, 2)
    with pytest.raises(ValueError, match="unknown word"):
        make_teacher("versa_animator", prior_dir=str(tmp_path / "prior"), command="jump")
    with pytest.raises(ValueError, match="unknown key"):
        make_teacher("versa_animator", prior_dir=str(tmp_path / "prior"), nonsense=1)


# ------------------------------------------------------------------------------------ live text control
@pytest.mark.slow
def test_bundled_prior_raises_the_commanded_hand():
    """The shipped models/versa: "raise right hand" lifts the right-hand slots, not the left ones."""
    prior = GesturePrior.from_pretrained(DEFAULT_DIR)
    names = canonical_names()
    right = [names.index(n) for n in BODY_NAMES if n.startswith("hand_right:")]
    left = [names.index(n) for n in BODY_NAMES if n.startswith("hand_left:")]
    g = prior.gesture("raise right hand")                                   # [48, K_c, 3], face units
    assert float(g[:, right, 1].mean(1).min()) < -1.5                      # up by > 1.5 face units at the peak
    assert float(g[:, left, 1].mean(1).abs().max()) < 0.5
    w = prior.gesture("raise left hand")
    assert float(w[:, left, 1].mean(1).min()) < -1.5 and float(w[:, right, 1].mean(1).abs().max()) < 0.5
    wave = prior.gesture("wave right hand")[:, right, 0].mean(1)                # the sideways swing (template 1.4)
    assert float(wave.max() - wave.min()) > 0.8
    assert float(g[:, right, 0].mean(1).max() - g[:, right, 0].mean(1).min()) < 0.4   # a raise does not swing
    face = [i for i in range(len(names)) if i not in BODY_SLOTS.tolist()]
    assert float(g[:, face].abs().max()) == 0.0


@pytest.mark.slow
def test_live_command_raises_the_right_arm_in_the_next_window():
    """On the live engine: after command("raise right hand"), the next window's frames show the right elbow
    control particle (the astronaut's only right-arm particle in view) raised, against the same run without
    the command; the frames before the command and the face are unchanged."""
    from engine.audio.features import load_audio
    from engine.avatar.personalize import PersonalizeConfig, personalize
    from engine.runtime import AvatarEngine, EngineConfig

    avatar = personalize(ROOT / "assets" / "astronaut.png", PersonalizeConfig(max_side=160, fit_steps=5),
                         progress=False)
    clip = load_audio(ROOT / "assets" / "speech" / "heldout" / "heldout-01-en-029.flac")
    wave = torch.cat([clip, clip])                              # long enough for frames after the window
    elbow = avatar.particle_names.index("pose:14")

    def run(command: str | None) -> tuple[np.ndarray, int, int]:
        engine = AvatarEngine(avatar, EngineConfig(width=64, height=64, motion="procedural"))
        ys = []
        render = engine.render_motion

        def record(motion):                                    # project the deformed elbow particle
            p = avatar.particles[elbow] + engine.view().to_world(motion)[elbow]
            cam = engine.viewmat[:3, :3] @ p + engine.viewmat[:3, 3]
            ys.append(float(engine.K[1, 1] * cam[1] / cam[2] + engine.K[1, 2]))
            return render(motion)
        engine.render_motion = record
        engine.push_audio(wave)
        engine.end_audio()
        first = [engine.next_frame() for _ in range(5)]         # the engine has generated one batch by now
        generated = len(first) + len(engine._queue)
        window = engine.command(command) if command is not None else 0
        list(engine.frames())
        return np.array(ys), generated, window

    base, start, _ = run(None)
    raised, start2, window = run("raise right hand")
    assert start == start2 and window == 48
    assert np.array_equal(base[:start], raised[:start])         # frames generated before the command: unchanged
    lift = base[start:start + window] - raised[start:start + window]   # pixels up (y grows downward)
    assert lift.max() > 2.0, lift                               # of 64 px frames: the elbow rises visibly
    assert len(base) > start + window
    assert np.abs(base[start + window:] - raised[start + window:]).max() < 1e-4   # after the window: as before
