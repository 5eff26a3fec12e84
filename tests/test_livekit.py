"""The LiveKit Agents VideoGenerator (viewer/livekit_avatar.py) against a live avatar server, without a LiveKit
server: audio frames in (espeak-ng's speech, 10 ms rtc.AudioFrames, then AudioSegmentEnd), 16 kHz audio frames
and RGBA video frames out, one AudioSegmentEnd once the utterance has played, and clear_buffer() stops the speech
at once. livekit-agents needs protobuf >= 5, which the engine's mediapipe cannot share, so the contract runs in its
own environment, .venv-livekit (scripts/setup_agents.sh), as a subprocess: tests/livekit_contract.py."""
import pytest

pytest.importorskip("mediapipe", reason="mediapipe is installed by scripts/setup.sh")
from agent_env import ROOT, needs, run_script, server  # noqa: E402,F401  (server: a fixture)
from test_server import avatar  # noqa: E402,F401  (a fixture)

pytestmark = needs("livekit")


def test_video_generator_contract(server):  # noqa: F811
    got = run_script("livekit", ROOT / "tests" / "livekit_contract.py", server.url)
    assert abs(got["audio_1"] - got["seconds_1"] * 25) <= 2              # one audio frame per 40 ms of speech
    assert got["ends_1"] == 1                                              # and the segment's end after it
    assert got["audio_format"] == [[16000, 640]]
    assert got["sizes"] == [[64, 64, True]]                                # RGBA at the server's size
    assert got["audio_then_video"]                                         # each frame's sound, then its picture
    assert got["video"] > got["audio_1"] + 10                              # idle frames too
    assert got["seconds_2"] > 2.0 and got["audio_after_clear"] == 0        # clear_buffer: the speech stops at once
    assert got["ends"] == 1                                                # a cleared segment does not "end"


def test_session_glue_token_and_refusals():
    """AudioAvatarSession (the avatar joins the agent's room): its token, read back with LiveKit's verifier, joins
    the named room as the avatar, kind agent, publishing on behalf of the agent; bad input is refused by name and a
    refused start leaves nothing open (tests/livekit_session.py, no LiveKit server needed)."""
    got = run_script("livekit", ROOT / "tests" / "livekit_session.py")
    assert (got["identity"], got["kind"], got["room_join"], got["room"]) == ("audioavatar", "agent", True, "room-7")
    assert got["attributes"] == {"lk.publish_on_behalf": "agent-42"}
    assert got["wrong_secret"] != "accepted"
    assert got["errors"][0].startswith("room_name:") and "connect the agent's room" in got["errors"][1]
    assert got["left_open"] == []
