"""The LiveKit Agents VideoGenerator (viewer/livekit_avatar.py) against a live avatar server, without a LiveKit
server: audio frames in (espeak-ng's speech, 10 ms rtc.AudioFrames, then AudioSegmentEnd), 16 kHz audio frames
and RGBA video frames out, one AudioSegmentEnd once the utterance has played, and clear_buffer() stops the speech
at once. livekit-agents needs protobuf >= 5, which the engine's mediapipe cannot share, so the contract runs in its
own environment, .venv-livekit (scripts/setup.sh test), as a subprocess: tests/livekit_contract.py."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("mediapipe", reason="mediapipe is installed by scripts/setup.sh")
from test_server import Running, avatar  # noqa: E402,F401  (avatar: a fixture)

ROOT = Path(__file__).resolve().parent.parent
LIVEKIT_PY = ROOT / ".venv-livekit" / "bin" / "python"
pytestmark = [
    pytest.mark.skipif(not LIVEKIT_PY.is_file(), reason=".venv-livekit is missing (scripts/setup.sh test makes it)"),
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng absent (apt install espeak-ng)")]


@pytest.fixture(scope="module")
def server(avatar):  # noqa: F811
    s = Running(avatar, max_sessions=2)
    yield s
    s.close()


def test_video_generator_contract(server):
    out = subprocess.run([str(LIVEKIT_PY), str(ROOT / "tests" / "livekit_contract.py"), server.url],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert abs(got["audio_1"] - got["seconds_1"] * 25) <= 2              # one audio frame per 40 ms of speech
    assert got["ends_1"] == 1                                              # and the segment's end after it
    assert got["audio_format"] == [[16000, 640]]
    assert got["sizes"] == [[64, 64, True]]                                # RGBA at the server's size
    assert got["audio_then_video"]                                         # each frame's sound, then its picture
    assert got["video"] > got["audio_1"] + 10                              # idle frames too
    assert got["seconds_2"] > 2.0 and got["audio_after_clear"] == 0        # clear_buffer: the speech stops at once
    assert got["ends"] == 1                                                # a cleared segment does not "end"
