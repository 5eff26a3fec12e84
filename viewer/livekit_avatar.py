"""AudioAvatarVideoGenerator: a LiveKit Agents `VideoGenerator` (livekit-agents 1.8) over a running `audioavatar serve`.

LiveKit's avatar worker (`livekit.agents.voice.avatar.AvatarRunner`) reads the agent's speech from the room,
pushes it into a VideoGenerator and publishes what the generator yields through its audio/video synchronizer.
This generator is a client of the avatar server (docs/protocol.md), so the worker's environment needs
livekit-agents, websockets and numpy, not the engine (docs/agents.md: the protobuf conflict with mediapipe):
- `push_audio(rtc.AudioFrame)`: sent to the server as protocol audio (any rate; stereo is averaged);
  `push_audio(AudioSegmentEnd())`: the utterance is over (`end`);
- `clear_buffer()`: barge-in (`interrupt`): the server drops the speech it has not shown, and frames it had sent
  ahead are dropped here, so no more of that speech is yielded;
- iterating yields, per 40 ms frame the server renders: `rtc.AudioFrame` (16 kHz mono, the 640 samples the frame
  shows; speaking frames only) then `rtc.VideoFrame` (RGBA); idle frames between utterances too; and an
  `AudioSegmentEnd` once the last frame of an ended utterance has been yielded.

`AudioAvatarSession` is the session glue, what a LiveKit avatar plugin's AvatarSession does: `start(agent_session,
room, ...)` puts the avatar in the agent's room as its own participant (publishing on the agent's behalf), runs
LiveKit's AvatarRunner over this generator in this process, and sends the agent's speech to it instead of to the
room.
"""
from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import numpy as np
from livekit import api, rtc
from livekit.agents.types import ATTRIBUTE_PUBLISH_ON_BEHALF
from livekit.agents.voice.avatar import (AudioSegmentEnd, AvatarOptions, AvatarRunner, DataStreamAudioOutput,
                                         DataStreamAudioReceiver, VideoGenerator)
from PIL import Image

from viewer.client import AvatarClient

SAMPLE_RATE = 16000      # a frame message's audio (docs/protocol.md)


class AudioAvatarVideoGenerator(VideoGenerator):
    """url: the avatar server as `audioavatar serve` prints it (or its ws:// URL); token: its session token.
    `await start()` opens the session (the first push or iteration does it otherwise); `aclose()` ends it.
    `size` is (width, height) of the frames, known after start()."""

    def __init__(self, *, url: str, token: str | None = None):
        self._url, self._token = url, token
        self._client: AvatarClient | None = None
        self._frames: asyncio.Queue = asyncio.Queue()    # frame messages from the server, oldest first
        self._first_after = 0                            # frames numbered below this were cut by clear_buffer
        self._interrupting = False
        self._segment_open = False                       # speech pushed since the last AudioSegmentEnd
        self._segment_ended = False                      # the utterance ended; its end not yet yielded
        self._spoke = False                              # a speaking frame of it was yielded
        self.size: tuple[int, int] | None = None

    async def start(self) -> None:
        if self._client is None:
            self._client = AvatarClient(self._url, self._token, on_frame=self._frames.put_nowait)
            welcome = await self._client.connect()
            self.size = (int(welcome["width"]), int(welcome["height"]))

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def push_audio(self, frame: rtc.AudioFrame | AudioSegmentEnd) -> None:
        await self.start()
        if isinstance(frame, AudioSegmentEnd):
            if self._segment_open:
                await self._client.end()
                self._segment_open, self._segment_ended = False, True
            return
        pcm = np.frombuffer(bytes(frame.data), dtype="<i2")
        if frame.num_channels > 1:
            pcm = pcm.reshape(-1, frame.num_channels).mean(axis=1).astype("<i2")
        self._segment_open = True
        await self._client.send_audio(pcm, frame.sample_rate)

    async def clear_buffer(self) -> None:
        await self.start()
        self._interrupting = True                        # until the reply: no speaking frame is yielded
        self._segment_open = self._segment_ended = self._spoke = False
        self._first_after = await self._client.interrupt()
        self._interrupting = False

    def __aiter__(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        return self._stream()

    async def _stream(self):
        await self.start()
        while True:
            frame = await self._frames.get()
            if frame["index"] < self._first_after or (self._interrupting and frame["speaking"]):
                continue
            if frame["speaking"]:
                audio = frame["audio"].astype("<i2")
                yield rtc.AudioFrame(data=audio.tobytes(), sample_rate=SAMPLE_RATE, num_channels=1,
                                     samples_per_channel=audio.shape[0])
                self._spoke = True
            elif self._segment_ended and self._spoke:      # the ended utterance's frames are all out
                self._segment_ended = self._spoke = False
                yield AudioSegmentEnd()
            image = Image.open(io.BytesIO(frame["image"])).convert("RGBA")
            yield rtc.VideoFrame(image.width, image.height, rtc.VideoBufferType.RGBA, image.tobytes())


class AudioAvatarSession:
    """The avatar as a participant of the agent's LiveKit room:

        avatar = AudioAvatarSession(url="http://127.0.0.1:8765/")          # a running `audioavatar serve`
        await avatar.start(session, ctx.room, livekit_url=URL, api_key=KEY, api_secret=SECRET)
        await session.start(agent=..., room=ctx.room)                       # as usual
        ...
        await avatar.aclose()

    start(): opens the avatar server session first (so a server that is down is an error before anything joins),
    joins the room as `identity` with a token of its own (`participant_token`), runs AvatarRunner there (audio from
    the agent over a LiveKit data stream, video and synced audio published at the server's frame size and 25 fps),
    and points the agent session's audio output at it (DataStreamAudioOutput), so the room hears the agent's speech
    from the avatar, in sync with its lips. The agent's interruptions reach the generator as clear_buffer()."""

    def __init__(self, *, url: str, token: str | None = None, identity: str = "audioavatar",
                 name: str = "AudioAvatar"):
        if not identity:
            raise ValueError("identity: the avatar participant needs a non-empty identity")
        self.url, self.token, self.identity, self.name = url, token, identity, name
        self.generator: AudioAvatarVideoGenerator | None = None
        self.room: rtc.Room | None = None
        self.runner: AvatarRunner | None = None

    def participant_token(self, room_name: str, agent_identity: str, api_key: str, api_secret: str) -> str:
        """A LiveKit access token (JWT) for the avatar participant: join `room_name` as `identity`, kind agent,
        publishing on behalf of `agent_identity` (the lk.publish_on_behalf attribute LiveKit's clients use to
        show the avatar's tracks as the agent's)."""
        for field, value in (("room_name", room_name), ("agent_identity", agent_identity), ("api_key", api_key),
                             ("api_secret", api_secret)):
            if not value:
                raise ValueError(f"{field}: must be a non-empty string, got {value!r}")
        return (api.AccessToken(api_key, api_secret).with_kind("agent").with_identity(self.identity)
                .with_name(self.name).with_grants(api.VideoGrants(room_join=True, room=room_name))
                .with_attributes({ATTRIBUTE_PUBLISH_ON_BEHALF: agent_identity}).to_jwt())

    async def start(self, agent_session, room: rtc.Room, *, livekit_url: str, api_key: str, api_secret: str) -> None:
        """agent_session: the livekit.agents AgentSession; room: the agent's room, connected."""
        if not room.isconnected():
            raise ValueError("room: connect the agent's room before starting the avatar (ctx.connect())")
        token = self.participant_token(room.name, room.local_participant.identity, api_key, api_secret)
        self.generator = AudioAvatarVideoGenerator(url=self.url, token=self.token)
        await self.generator.start()
        try:
            self.room = rtc.Room()
            await self.room.connect(livekit_url, token)
            width, height = self.generator.size
            self.runner = AvatarRunner(
                self.room, audio_recv=DataStreamAudioReceiver(self.room, sender_identity=room.local_participant.identity),
                video_gen=self.generator, options=AvatarOptions(video_width=width, video_height=height, video_fps=25,
                                                                audio_sample_rate=SAMPLE_RATE, audio_channels=1))
            await self.runner.start()
        except BaseException:
            await self.aclose()
            raise
        agent_session.output.audio = DataStreamAudioOutput(room, destination_identity=self.identity,
                                                           wait_remote_track=rtc.TrackKind.KIND_VIDEO)

    async def aclose(self) -> None:
        """Leave the room and end the avatar server session (safe to call twice, or after a failed start)."""
        if self.runner is not None:
            await self.runner.aclose()
            self.runner = None
        if self.room is not None:
            await self.room.disconnect()
            self.room = None
        if self.generator is not None:
            await self.generator.aclose()
            self.generator = None
