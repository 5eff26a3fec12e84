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
"""
from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import numpy as np
from livekit import rtc
from livekit.agents.voice.avatar import AudioSegmentEnd, VideoGenerator
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
