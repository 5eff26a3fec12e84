"""The Pipecat video service (viewer/pipecat_service.py) in a real Pipecat pipeline against a live avatar server:
espeak-ng's speech as TTS frames in, image frames with their audio out, and an interruption mid-utterance stops
the speech within one frame. Pipecat cannot be installed beside the engine (it needs protobuf >= 5.29, mediapipe
0.10.21 breaks under it), so the pipeline runs in its own environment, .venv-pipecat (scripts/setup_agents.sh),
as a subprocess: viewer/examples/pipecat_pipeline.py. Skipped without that environment or espeak-ng."""
import pytest

pytest.importorskip("mediapipe", reason="mediapipe is installed by scripts/setup.sh")
from agent_env import ROOT, needs, run_script, server  # noqa: E402,F401  (server: a fixture)
from test_server import avatar  # noqa: E402,F401  (a fixture)

pytestmark = needs("pipecat")


def pipeline(running, *args) -> dict:
    return run_script("pipecat", ROOT / "viewer" / "examples" / "pipecat_pipeline.py", "--url", running.url, *args)


def test_tts_frames_in_image_frames_with_their_audio_out(server):  # noqa: F811
    got = pipeline(server, "Pop a big map.", "We go now.")
    speech_frames = sum(int(got[f"sentence_{k}_s"] * 25) for k in range(2))
    assert abs(got["speaking_frames"] - speech_frames) <= 2                # one audio frame per 40 ms of speech
    assert got["audio_frames"] == got["speaking_frames"]
    assert got["images"] == got["frames_out"] > got["speaking_frames"]    # and idle frames around it
    assert got["image_size"] == [64, 64]
    assert got["audio_before_its_image"]                                   # each frame's sound leaves with it


def test_an_interruption_stops_the_speech_within_one_frame(server):  # noqa: F811
    got = pipeline(server, "Maybe my mom brought the blue paper book home, and then she read it.",
                   "Then I spoke again.", "--interrupt-after-frames", "10")
    assert got["sentence_0_s"] > 2.0                                       # far more than the 10 frames before it
    assert got["speaking_frames_after_interrupt"] <= 1
    # the next sentence still speaks in full after the barge-in
    assert got["speaking_frames"] >= 10 + int(got["sentence_1_s"] * 25) - 2
