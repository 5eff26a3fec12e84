"""Run by tests/test_livekit.py inside .venv-livekit: the session glue of viewer/livekit_avatar.py without a LiveKit
server. The avatar participant's token, decoded with LiveKit's own verifier (identity, kind, the room grant, the
publish-on-behalf attribute), the refusals, and that a refused start leaves nothing open.

    python tests/livekit_session.py  -> one JSON line
"""
from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from livekit import api, rtc  # noqa: E402

from viewer.livekit_avatar import AudioAvatarSession  # noqa: E402

KEY, SECRET = "devkey", "a-secret-of-at-least-32-characters!!"


async def main() -> dict:
    avatar = AudioAvatarSession(url="http://127.0.0.1:1/", identity="audioavatar")
    token = avatar.participant_token("room-7", "agent-42", KEY, SECRET)
    claims = api.TokenVerifier(KEY, SECRET).verify(token)
    out = {"identity": claims.identity, "kind": claims.kind, "room_join": claims.video.room_join,
           "room": claims.video.room, "attributes": claims.attributes}
    try:
        api.TokenVerifier(KEY, "another-secret-of-32-characters-or-more").verify(token)
        out["wrong_secret"] = "accepted"
    except Exception as e:                                   # a forged or foreign token is refused
        out["wrong_secret"] = type(e).__name__
    errors = []
    try:
        avatar.participant_token("", "agent-42", KEY, SECRET)
    except ValueError as e:
        errors.append(str(e))
    try:
        await avatar.start(object(), rtc.Room(), livekit_url="ws://127.0.0.1:1", api_key=KEY, api_secret=SECRET)
    except ValueError as e:
        errors.append(str(e))
    out["errors"] = errors
    out["left_open"] = [n for n in ("generator", "room", "runner") if getattr(avatar, n) is not None]
    await avatar.aclose()
    await avatar.aclose()                                    # twice is fine
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
