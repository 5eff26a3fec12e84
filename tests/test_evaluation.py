"""engine/evaluation (issue 8) against its bars and hand computations: identity of the photo, its mirror and
another person; the lip-sync lag following a 10-frame audio shift on a procedural clip; the report's files and
values; and flicker, envelope, spread and PSNR against values worked out by hand."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.audio.features import frame_rms, load_audio
from engine.evaluation.clip import Clip, read_video
from engine.evaluation.fidelity import against_teacher
from engine.evaluation.hands import keypoint_spread
from engine.evaluation.sync import envelope
from engine.evaluation.temporal import flicker

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT / "assets" / "speech" / "heldout" / "heldout-00-en-029.flac"
pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------ hand computations
def test_envelope_is_the_rms_over_each_frame_span():
    wave = torch.from_numpy(np.random.default_rng(0).standard_normal(16000 * 2).astype(np.float32))
    np.testing.assert_allclose(envelope(wave, 25.0, 50), frame_rms(wave).numpy(), rtol=1e-5)
    e30 = envelope(wave, 30.0, 61)                             # 60 frames of audio, then one past its end
    w = wave.double().numpy()
    for t in (0, 17, 59):
        a, b = round(t * 16000 / 30), round((t + 1) * 16000 / 30)
        assert e30[t] == pytest.approx(math.sqrt((w[a:b] ** 2).mean()), rel=1e-9)
    assert e30[60] == 0.0


def test_flicker_counts_only_still_pixels():
    frames = np.full((3, 32, 32, 3), 100, np.uint8)
    frames[1] += 2                                 # every pixel brightens by 2 levels ...
    frames[1, :8, :8] = 200                        # ... except an 8x8 block that moves (diff 100/255 > 0.1)
    frames[2] = frames[1]                          # no change at all
    out = flicker(frames, threshold=0.1, dilate=3)
    still_1 = 32 * 32 - 9 * 9                      # the block grown by one pixel (3x3 dilation) is "moving"
    assert out["per_pair"] == pytest.approx([2.0, 0.0])
    assert out["flicker"] == pytest.approx(1.0)
    assert out["still_fraction"] == pytest.approx((still_1 / 1024 + 1.0) / 2)


def test_keypoint_spread_is_the_std_over_time():
    base = np.random.default_rng(1).random((21, 2))
    tracks = {"Left": [base, base + 0.1, base + 0.2], "Right": [base]}
    spread = keypoint_spread(tracks)
    assert set(spread) == {"Left"}                                  # one frame is not a spread
    assert spread["Left"] == pytest.approx(np.std([0.0, 0.1, 0.2]))


def test_psnr_against_a_teacher_matches_the_formula_and_ssim_orders_noise():
    rng = np.random.default_rng(2)
    clean = rng.integers(0, 256, (4, 48, 64, 3)).astype(np.uint8)
    noisy = np.clip(clean.astype(int) + rng.integers(-8, 9, clean.shape), 0, 255).astype(np.uint8)
    out = against_teacher(clean, noisy)
    mse = ((clean / 255.0 - noisy / 255.0) ** 2).reshape(4, -1).mean(1)
    np.testing.assert_allclose(out["per_frame"]["psnr"], 10 * np.log10(1 / mse), rtol=1e-4)
    assert out["ms_ssim"] is None and any("MS-SSIM skipped" in n for n in out["notes"])
    noisier = np.clip(clean.astype(int) + rng.integers(-40, 41, clean.shape), 0, 255).astype(np.uint8)
    assert against_teacher(clean, noisier)["ssim"] < out["ssim"] < 1.0
    small = against_teacher(clean, noisy[:2, ::2, ::2])              # shorter and half-size: paired and resized
    assert small["frames_compared"] == 2 and len(small["notes"]) == 3


def test_clip_and_video_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="frames: expected a non-empty"):
        Clip(np.zeros((0, 8, 8, 3), np.uint8), 25.0, "x")
    with pytest.raises(FileNotFoundError, match="no such video"):
        read_video(tmp_path / "missing.mp4")
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(ValueError, match="not a readable video"):
        read_video(tmp_path / "bad.mp4")


# ---------------------------------------------------------------------------------------------- identity bar
def test_identity_bar_photo_mirror_and_another_person(photo):
    pytest.importorskip("dlib", reason="dlib-bin is a test extra")
    pytest.importorskip("face_recognition_models", reason="face_recognition_models is a test extra")
    from PIL import Image
    from skimage import data

    from engine.evaluation.identity import identity_scores
    man = np.asarray(Image.fromarray(data.camera()).convert("RGB").resize(photo.shape[1::-1]))
    frames = np.stack([photo, np.ascontiguousarray(photo[:, ::-1]), man])
    out = identity_scores(frames, photo, stride=1)
    same, mirror, other = out["cosine"]
    assert same >= 0.99 and mirror >= 0.95 and other < min(same, mirror)
    assert out["cosine_min"] == other and out["face_found"] == 1.0


# --------------------------------------------------------------------------- lip-sync bar and the full report
@pytest.fixture(scope="module")
def procedural_clip():
    pytest.importorskip("mediapipe", reason="mediapipe is installed by scripts/setup.sh")
    from engine.evaluation.clip import render_avatar
    from engine.avatar.personalize import PersonalizeConfig, personalize

    avatar = personalize(ROOT / "assets" / "astronaut.png", PersonalizeConfig(max_side=192, fit_steps=5),
                         progress=False)
    wave = load_audio(SPEECH)
    # 320 px: at 256 the eye corners are ~12 px apart, and after h.264 (the CLI test) mediapipe's reading of a
    # mouth showing its teeth peaked 2 frames off (r 0.50; 0.73 at lag 0 at 320 px)
    return render_avatar(avatar, wave, size=320, motion="procedural", progress=False), wave


@pytest.mark.slow
def test_a_10_frame_audio_shift_moves_the_lag_by_10(procedural_clip):
    from engine.evaluation.sync import lip_sync
    clip, wave = procedural_clip
    base = lip_sync(clip.frames, wave, clip.fps, max_lag=15)
    late = torch.cat([torch.zeros(10 * 640), wave])[: wave.shape[0]]      # the audio 10 frames (400 ms) later
    shifted = lip_sync(clip.frames, late, clip.fps, max_lag=15)
    assert base["face_found"] == 1.0 and base["peak_r"] > 0.5
    assert abs((shifted["lag_frames"] - base["lag_frames"]) - (-10)) <= 1   # the mouth now leads by 10
    assert shifted["r_at_0"] < base["r_at_0"] - 0.3


@pytest.mark.slow
def test_report_files_and_values(procedural_clip, photo, tmp_path):
    from PIL import Image

    from engine.evaluation.config import EvalConfig
    from engine.evaluation.report import write_report
    from engine.evaluation.suite import evaluate, summary
    clip, wave = procedural_clip
    teacher = np.ascontiguousarray(clip.frames[:, ::-1])                     # a mirrored "teacher"
    result = evaluate(clip, wave, photo, teacher, EvalConfig(identity_stride=25, piqe_stride=25), progress=False)
    out = write_report(result, clip.frames, tmp_path / "report", contact_frames=6)
    assert sorted(p.name for p in out.iterdir()) == ["contact_sheet.png", "identity.png", "lipsync.png",
                                                     "report.html", "report.json"]
    saved = json.loads((out / "report.json").read_text())
    assert saved["summary"] == pytest.approx({k: v for k, v in summary(result).items()}, nan_ok=True)
    assert saved["clip"]["frames"] == len(clip.frames) and saved["clip"]["fps"] == 25.0
    assert len(saved["lipsync"]["opening"]) == len(saved["lipsync"]["envelope"]) == len(clip.frames)
    assert saved["fidelity"]["frames_compared"] == len(clip.frames) and saved["fidelity"]["ms_ssim"] is not None
    psnr0 = 10 * math.log10(1 / ((clip.frames[0] / 255.0 - teacher[0] / 255.0) ** 2).mean())
    assert saved["fidelity"]["per_frame"]["psnr"][0] == pytest.approx(psnr0, rel=1e-4)
    assert saved["identity"]["frames"] == list(range(0, len(clip.frames), 25))
    assert saved["hands"]["detection_rate"] == 0.0 and saved["hands"]["confidence"] is None   # no hands in view
    assert 0 <= saved["piqe"]["mean"] <= 100 and saved["temporal"]["flicker"] >= 0
    sheet = Image.open(out / "contact_sheet.png")
    h, w = clip.frames.shape[1:3]
    assert sheet.size == (4 * w, 2 * h)                                     # 6 frames: 4 across, 2 rows
    assert Image.open(out / "lipsync.png").size[0] > 500
    html = (out / "report.html").read_text()
    assert all(f"src='{name}'" in html for name in ("lipsync.png", "identity.png", "contact_sheet.png"))
    write_report(result, clip.frames, out)                                  # an earlier report is replaced
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds no report"):
        write_report(result, clip.frames, tmp_path / "other")
    assert (tmp_path / "other" / "keep.txt").read_text() == "mine"


def test_cli_eval_rejects_bad_input_and_keeps_files(tmp_path, capsys):
    from audioavatar.cli import main
    assert main(["eval", str(tmp_path / "none.mp4"), "--audio", str(SPEECH), "-o", str(tmp_path / "r")]) == 2
    assert "no such video file or avatar folder" in capsys.readouterr().err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("keep")
    (tmp_path / "clip.mp4").write_bytes(b"x")
    assert main(["eval", str(tmp_path / "clip.mp4"), "--audio", str(SPEECH), "-o", str(busy)]) == 2
    assert "holds no report.json" in capsys.readouterr().err and (busy / "notes.txt").read_text() == "keep"
    assert main(["eval", str(tmp_path), "--audio", str(SPEECH), "-o", str(tmp_path / "r2")]) == 2
    assert "not an avatar bundle" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_eval_of_a_video_file_writes_the_report(procedural_clip, tmp_path, capsys):
    from audioavatar.cli import main
    from engine.render.video import Mp4Writer
    clip, wave = procedural_clip
    mp4 = tmp_path / "talk.mp4"
    with Mp4Writer(mp4, clip.frames.shape[2], clip.frames.shape[1], 25, audio=(wave.numpy(), 16000)) as video:
        for f in clip.frames:
            video.write(f)
    back = read_video(mp4)
    assert back.frames.shape == clip.frames.shape and back.fps == 25.0
    assert np.abs(back.frames.astype(int) - clip.frames).mean() < 3            # h.264 at crf 18
    cfg = tmp_path / "eval.yaml"
    cfg.write_text("identity_stride: 30\npiqe_stride: 30\n")
    assert main(["eval", str(mp4), "--audio", str(SPEECH), "--config", str(cfg), "-o", str(tmp_path / "r")]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    saved = json.loads((tmp_path / "r" / "report.json").read_text())
    assert result["sync_lag_frames"] == saved["lipsync"]["lag_frames"] and abs(result["sync_lag_frames"]) <= 1
    assert saved["identity"]["skipped"] == "no --reference photo given"
    assert saved["fidelity"]["skipped"] == "no --teacher video given"


def _drawn_hand(palm: float = 0.2, finger: float = 0.9) -> np.ndarray:
    """A flat open hand [21, 2] drawn by hand: wrist at (0.5, 0.8), knuckles `palm` above it and 0.7 palm apart,
    each finger `finger` palms long in three equal bones, the thumb out to the side."""
    p = np.zeros((21, 2))
    p[0] = (0.5, 0.8)
    for f, dx in enumerate((-0.35, -0.12, 0.12, 0.35)):                  # index .. little
        base = 5 + 4 * f
        p[base] = (0.5 + dx * palm, 0.8 - palm)
        for b in (1, 2, 3):
            p[base + b] = p[base] + (0, -finger * palm * b / 3)
    for b in (1, 2, 3, 4):                                               # the thumb: 1..4 along a diagonal
        p[b] = p[0] + (-0.2 * palm * b, -0.15 * palm * b)
    return p


def test_plausible_hand_accepts_a_hand_and_rejects_what_no_hand_looks_like():
    from engine.evaluation.hands import plausible
    assert plausible(_drawn_hand())
    fist = _drawn_hand()
    fist[6:9], fist[10:13] = fist[5] + [[0, -0.06], [0.02, -0.03], [0.02, 0.0]], fist[9] + [[0, -0.06], [0.02, -0.03], [0.02, 0.0]]
    assert plausible(fist)                                                # curled: bone lengths still a hand's
    assert not plausible(_drawn_hand(palm=0.9))                           # a palm almost the frame's height
    assert not plausible(_drawn_hand(palm=0.005))                         # a speck
    assert not plausible(_drawn_hand(finger=3.0))                         # fingers three palms long
    blob = np.full((21, 2), 0.5)
    blob[9] += (0, -0.1)                                                  # a palm, but nothing else
    assert not plausible(blob)
    with pytest.raises(ValueError, match=r"\[21, 2\]"):
        plausible(np.zeros((20, 2)))
