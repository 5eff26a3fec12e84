"""AvatarEngine (engine.runtime) on a small astronaut avatar at 64x64: frame count and timing, chunked pushes
give the same frames as one push, untrained learned models render the rest pose exactly, barge-in, the
camera, bad audio, the async path and `audioavatar animate`."""
import asyncio
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("mediapipe", reason="mediapipe is installed by scripts/setup.sh")
from audioavatar import cli  # noqa: E402
from engine.audio.features import HOP, load_audio  # noqa: E402
from engine.avatar.personalize import PersonalizeConfig, personalize  # noqa: E402
from engine.render.splat import render_gaussians
from engine.runtime import AvatarEngine, EngineConfig  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SMALL = EngineConfig(width=64, height=64, motion="procedural")


@pytest.fixture(scope="module")
def avatar_dir(tmp_path_factory):
    avatar = personalize(ROOT / "assets" / "astronaut.png", PersonalizeConfig(max_side=160, fit_steps=5),
                         progress=False)
    return avatar.save_pretrained(tmp_path_factory.mktemp("av") / "astronaut")


@pytest.fixture(scope="module")
def speech():
    return load_audio(ROOT / "assets" / "speech.wav")[: 16000 * 2]          # 2 s at 16 kHz


def test_one_frame_per_40ms_with_the_audio_it_shows(avatar_dir, speech):
    engine = AvatarEngine(avatar_dir, SMALL)
    n = engine.push_audio(speech.numpy(), 16000) + engine.end_audio()
    frames = list(engine.frames())
    assert n == len(frames) == speech.shape[0] // HOP == 50
    assert [f.index for f in frames] == list(range(50)) and frames[10].pts == pytest.approx(0.4)
    assert frames[0].image.shape == (64, 64, 3) and frames[0].image.dtype == np.uint8
    echo = np.concatenate([f.audio for f in frames])
    assert np.abs(echo - speech.numpy()).max() < 1e-6                  # 16 kHz in: the echo is the input
    assert engine.pending() == 0 and engine.next_frame() is None


def test_chunked_push_equals_one_push_and_resamples(avatar_dir, speech):
    whole = AvatarEngine(avatar_dir, SMALL)
    whole.push_audio(speech.numpy(), 16000)
    ref = [f.image for f in whole.frames()]
    live = AvatarEngine(avatar_dir, SMALL)
    got, i = [], 0
    for size in [160, 640, 1000, 37, 5000, 16000] * 10:                 # 10 ms .. 1 s chunks
        live.push_audio(speech[i:i + size].numpy(), 16000)
        got += [f.image for f in live.frames()]
        i += size
        if i >= speech.shape[0]:
            break
    assert len(got) == len(ref) and all(np.array_equal(a, b) for a, b in zip(got, ref))
    # 48 kHz stereo int16 works and gives about as many frames
    stereo = (np.interp(np.arange(96000) / 3, np.arange(32000), speech.numpy())[:, None]
              * np.ones((1, 2)) * 20000).astype(np.int16)
    e48 = AvatarEngine(avatar_dir, SMALL)
    assert abs(e48.push_audio(stereo, 48000) + e48.end_audio() - 50) <= 1


def test_mouth_moves_with_speech_and_rests_in_silence(avatar_dir, speech):
    engine = AvatarEngine(avatar_dir, SMALL)
    engine.push_silence(0.4)
    engine.push_audio(speech.numpy(), 16000)
    frames = list(engine.frames())
    quiet = [f for f in frames if not f.speaking]
    loud = [f for f in frames if f.speaking]
    assert len(quiet) == 10 and len(loud) == 50
    rest = engine.render_motion(torch.zeros(len(engine.source.rest), 3))
    change = lambda f: float(np.abs(f.image.astype(float) - rest.astype(float)).mean())  # noqa: E731
    assert max(change(f) for f in loud) > 3 * max(change(f) for f in quiet) > 0.0     # idle motion, not frozen


def test_untrained_learned_models_render_the_rest_pose(avatar_dir, speech, tmp_path):
    from engine.audio.encoder import AudioEncoder
    from engine.motion.dit import MotionDiT
    from engine.motion.refiner import FaceHandRefiner
    for name, model in (("audio_encoder", AudioEncoder()), ("motion", MotionDiT()), ("refiner", FaceHandRefiner())):
        model.save_pretrained(tmp_path / "untrained" / name)
    engine = AvatarEngine(avatar_dir, EngineConfig(width=64, height=64, motion="learned", alive=False,
                                                   model_dir=str(tmp_path / "untrained")))
    engine.push_audio(speech[:16000].numpy(), 16000)
    a = engine.avatar
    rest, _ = render_gaussians(a.gaussians, engine.viewmat, engine.K, 64, 64, normals=a.normals)
    rest = (rest.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
    frames = list(engine.frames())
    assert len(frames) == 25 and all(np.array_equal(f.image, rest) for f in frames)


def test_interrupt_drops_queued_speech_and_closes_the_mouth(avatar_dir, speech):
    engine = AvatarEngine(avatar_dir, SMALL)
    engine.push_audio(speech.numpy(), 16000)
    first = engine.next_frame()
    assert first is not None and engine.pending() == 49
    assert engine.interrupt() == 49 and engine.pending() == 0 and engine.next_frame() is None
    assert engine.source.level == 0.0                                       # the jaw closes on the next frame
    engine.push_silence(0.04)
    assert engine.next_frame().index == 1


def test_camera_orbit_changes_the_view_and_checks_input(avatar_dir, speech):
    engine = AvatarEngine(avatar_dir, SMALL)
    m = torch.zeros(len(engine.source.rest), 3)
    front = engine.render_motion(m)
    engine.set_orbit(30.0)
    side = engine.render_motion(m)
    assert np.abs(front.astype(int) - side.astype(int)).mean() > 2.0
    engine.set_orbit(0.0)                                               # back in front, at the orbit's distance
    assert np.abs(engine.render_motion(m).astype(int) - front.astype(int)).mean() < 1.0
    with pytest.raises(ValueError, match="zoom"):
        engine.set_orbit(10.0, zoom=0.0)


@pytest.mark.parametrize("pcm, rate, message", [
    (np.array([0.1, np.nan, 0.2], np.float32), 16000, "NaN or inf"),
    (np.zeros(100, np.float32), 7, "sample_rate"),
    ("not audio", 16000, "expected a numpy array or torch.Tensor"),
])
def test_bad_audio_is_a_clear_error(avatar_dir, pcm, rate, message):
    engine = AvatarEngine(avatar_dir, SMALL)
    with pytest.raises(ValueError, match=message):
        engine.push_audio(pcm, rate)
    assert engine.push_audio(np.zeros(0, np.float32), 16000) == 0           # an empty chunk is fine
    assert engine.push_audio(np.full(640, 5.0, np.float32), 16000) == 1     # clipping is clipped


def test_async_frames(avatar_dir, speech):
    engine = AvatarEngine(avatar_dir, SMALL)

    async def run():
        stop = asyncio.Event()
        got = []

        async def feed():
            for i in range(0, 16000, 640):
                engine.push_audio(speech[i:i + 640].numpy(), 16000)
                await asyncio.sleep(0.001)

        feeder = asyncio.create_task(feed())
        async for frame in engine.aframes(stop):
            got.append(frame.index)
            if len(got) == 25:
                stop.set()
        await feeder
        return got

    assert asyncio.run(asyncio.wait_for(run(), 30)) == list(range(25))


def test_animate_writes_an_mp4_with_audio(avatar_dir, tmp_path, capsys):
    import soundfile as sf

    wav = tmp_path / "say.wav"
    sf.write(str(wav), np.sin(np.linspace(0, 2000, 16000)).astype(np.float32) * 0.3, 16000)
    out = tmp_path / "talk.mp4"
    assert cli.main(["animate", str(avatar_dir), str(wav), "-o", str(out), "--size", "64"]) == 0
    assert out.is_file() and out.stat().st_size > 1000
    import subprocess
    from engine.render.video import ffmpeg_exe
    probe = subprocess.run([ffmpeg_exe(), "-i", str(out)], capture_output=True, text=True).stderr
    assert "Audio:" in probe and "Video:" in probe and "64x64" in probe
    bad = tmp_path / "bad.wav"
    bad.write_text("nope")
    assert cli.main(["animate", str(avatar_dir), str(bad), "-o", str(tmp_path / "x.mp4")]) == 2
    assert not (tmp_path / "x.mp4").exists()


def test_animate_refuses_audio_shorter_than_one_frame(avatar_dir, tmp_path, capsys):
    import soundfile as sf
    wav = tmp_path / "blip.wav"
    sf.write(str(wav), np.zeros(160, np.float32), 16000)                # 10 ms: less than one 40 ms frame
    out = tmp_path / "blip.mp4"
    assert cli.main(["animate", str(avatar_dir), str(wav), "-o", str(out), "--size", "64"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "10 ms of audio; need at least 40 ms" in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blip.wav"]


def test_animate_keeps_the_inputs_rate_and_channels(avatar_dir, tmp_path):
    """44.1 kHz stereo in -> 44.1 kHz stereo AAC in the mp4 (it used to be resampled to the engine's 16 kHz
    mono), with the left and right channels still different after decoding."""
    import subprocess

    import soundfile as sf
    from engine.render.video import ffmpeg_exe
    t = np.arange(44100) / 44100
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 660 * t)], 1).astype(np.float32)
    wav = tmp_path / "stereo.wav"
    sf.write(str(wav), stereo, 44100)
    out = tmp_path / "talk.mp4"
    assert cli.main(["animate", str(avatar_dir), str(wav), "-o", str(out), "--size", "64"]) == 0
    probe = subprocess.run([ffmpeg_exe(), "-i", str(out)], capture_output=True, text=True).stderr
    audio_line = next(line for line in probe.splitlines() if "Audio:" in line)
    assert "44100 Hz" in audio_line and "stereo" in audio_line, audio_line
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(out), "-f", "f32le", "-"], capture_output=True).stdout
    back = np.frombuffer(raw, np.float32).reshape(-1, 2)
    mid = back[4410:-4410]                                               # away from the codec's edges
    spectrum = np.abs(np.fft.rfft(mid, axis=0))
    freqs = np.fft.rfftfreq(len(mid), 1 / 44100)
    assert abs(freqs[spectrum[:, 0].argmax()] - 440) < 5 and abs(freqs[spectrum[:, 1].argmax()] - 660) < 5


def test_marks_reach_the_motion_source_on_their_frames(avatar_dir, speech):
    """push_marks: times count from the utterance's first sample, which here starts at frame 10 (after 0.4 s of
    silence, pushed after the marks: marks sent early wait for their audio); the source gets exactly
    marks_to_weights' rows for the frames the marks span, NaN elsewhere."""
    from engine.motion.visemes import marks_to_weights
    engine = AvatarEngine(avatar_dir, SMALL)
    seen = []
    push = engine.source.push

    def spy(mel, rms, visemes=None):               # no marks in a batch: None, i.e. NaN rows
        seen.append(torch.full((mel.shape[0], 6), float("nan")) if visemes is None else visemes.clone())
        return push(mel, rms, visemes)

    engine.source.push = spy
    marks = [(0.2, 0.3, 21), (0.3, 0.5, 2)]                      # microsoft ids: p b m, then aa
    assert engine.push_marks(marks, "microsoft") == 2            # before the audio: bound when it starts
    engine.push_silence(0.4)
    engine.push_audio(speech[:16000].numpy(), 16000)
    frames = list(engine.frames())
    assert len(frames) == 35
    got = torch.cat(seen)
    assert got.shape[0] == 35
    want = marks_to_weights(marks, 25, "microsoft")               # the utterance's own frames 0..24
    span = torch.zeros(35, dtype=torch.bool)
    span[10 - 2:10 + 13 + 1] = True                               # 2 frames before it .. the last mark's end
    assert torch.isnan(got[~span]).all()
    torch.testing.assert_close(got[12:23], want[2:13], atol=1e-5, rtol=0)
    assert abs(float(got[15, 1]) - 1.0) < 1e-5                    # mid-closure: the closed viseme, fully
    with pytest.raises(ValueError, match="alphabet"):
        engine.push_marks(marks, "ipa")
    with pytest.raises(ValueError, match="0..21"):
        engine.push_marks([(0.0, 0.1, 99)], "microsoft")


def test_marks_waiting_are_bounded(avatar_dir):
    from engine.runtime import MAX_MARKS_HELD
    engine = AvatarEngine(avatar_dir, SMALL)
    chunk = [(i * 0.01, i * 0.01 + 0.01, "open") for i in range(4000)]
    for _ in range(MAX_MARKS_HELD // 4000):
        engine.push_marks(chunk, "viseme")
    with pytest.raises(ValueError, match="already waiting"):
        engine.push_marks(chunk[:1], "viseme")
    engine.interrupt()                                          # a barge-in forgets them
    assert engine.push_marks(chunk, "viseme") == 4000


def test_engines_generating_together_move_as_each_alone(avatar_dir, speech):
    """generate_together (the server's batch of sessions, viewer/pacing.py): three learned engines with different
    audio, histories and seeds, and a procedural one, come out frame for frame as the same engines run alone;
    an engine with nothing waiting is left as it was."""
    from engine.runtime import generate_together
    cfgs = [EngineConfig(width=64, height=64, motion="learned", seed=s) for s in (0, 1, 2)] + [SMALL]
    alone = [AvatarEngine(avatar_dir, c) for c in cfgs]
    together = [AvatarEngine(avatar_dir, c) for c in cfgs]
    idle = AvatarEngine(avatar_dir, cfgs[0])
    for k in range(6):
        for i, (a, t) in enumerate(zip(alone, together)):
            chunk = speech[(k * 3 + i * 5) * HOP:(k * 3 + i * 5 + 1 + (k + i) % 2) * HOP]   # 1 or 2 frames
            a.push_audio(chunk, 16000)
            t.push_audio(chunk, 16000)
        assert generate_together(together + [idle]) == 4
        for a, t in zip(alone, together):
            assert t.needs_motion() is False
            while (fa := a.next_motion()) is not None:
                ft = t.next_motion()
                assert ft.index == fa.index and np.abs(ft.translation - fa.translation).max() <= 1e-5
            assert t.next_motion() is None
    assert idle.pending() == 0 and idle.index == 0
    assert all(e.batchable() for e in together[:3]) and not together[3].batchable()


def test_skip_frame_without_generating_leaves_the_audio_for_a_batch(avatar_dir, speech):
    """skip_frame(generate=False) (a late session on a batching server) drops only frames whose motion is made;
    the waiting audio stays for the next generate_together."""
    from engine.runtime import generate_together
    e = AvatarEngine(avatar_dir, EngineConfig(width=64, height=64, motion="learned"))
    e.push_audio(speech[:3 * HOP], 16000)
    assert e.needs_motion() and e.skip_frame(generate=False) is False and e.pending() == 3
    assert generate_together([e]) == 1 and not e.needs_motion()
    assert [e.skip_frame(generate=False) for _ in range(4)] == [True, True, True, False] and e.index == 3
