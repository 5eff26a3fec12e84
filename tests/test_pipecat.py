"""The Pipecat video service (viewer/pipecat_service.py) in a real Pipecat pipeline against a live avatar server:
espeak-ng's speech as TTS frames in, image frames with their audio out, and an interruption mid-utterance stops
the speech within one frame. Pipecat cannot be installed beside the engine (it needs protobuf >= 5.29, mediapipe
0.10.21 breaks under it), so the pipeline runs in its own environment, .venv-pipecat (scripts/setup.sh test),
as a subprocess: viewer/examples/pipecat_pipeline.py. Skipped without that environment or espeak-ng."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("mediapipe", reason="mediapipe is installed by scripts/setup.sh")
from test_server import Running, avatar  # noqa: E402,F401  (avatar: a fixture)

ROOT = Path(__file__).resolve().parent.parent
PIPECAT_PY = ROOT / ".venv-pipecat" / "bin" / "python"
pytestmark = [
    pytest.mark.skipif(not PIPECAT_PY.is_file(), reason=".venv-pipecat is missing (scripts/setup.sh test makes it)"),
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng absent (apt install espeak-ng)")]


@pytest.fixture(scope="module")
def server(avatar):  # noqa: F811
    s = Running(avatar, max_sessions=2)
    yield s
    s.close()


def pipeline(server, *args) -> dict:
    out = subprocess.run([str(PIPECAT_PY), str(ROOT / "viewer" / "examples" / "pipecat_pipeline.py"),
                          "--url", server.url, *args], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_tts_frames_in_image_frames_with_their_audio_out(server):
    got = pipeline(server, "Pop a big map.", "We go now.")
    speech_frames = sum(int(got[f"sentence_{k}_s"] * 25) for k in range(2))
    assert abs(got["speaking_frames"] - speech_frames) <= 2                # one audio frame per 40 ms of speech
    assert got["audio_frames"] == got["speaking_frames"]
    assert got["images"] == got["frames_out"] > got["speaking_frames"]    # and idle frames around it
    assert got["image_size"] == [64, 64]
    assert got["audio_before_its_image"]                                   # each frame's sound leaves with it


def test_an_interruption_stops_the_speech_within_one_frame(server):
    got = pipeline(server, "Maybe my mom brought the blue paper book home, and then she read it.",
                   "Then I spoke again.", "--interrupt-after-frames", "10")
    assert got["sentence_0_s"] > 2.0                                       # far more than the 10 frames before it
    assert got["speaking_frames_after_interrupt"] <= 1
    # the next sentence still speaks in full after the barge-in
    assert got["speaking_frames"] >= 10 + int(got["sentence_1_s"] * 25) - 2
