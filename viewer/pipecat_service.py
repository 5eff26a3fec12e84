"""AudioAvatarVideoService: a Pipecat video service (pipecat-ai 1.14) driven by a running `audioavatar serve`.

    pipeline = Pipeline([..., tts, AudioAvatarVideoService(url="http://127.0.0.1:8765/"), transport.output()])

Frames in and out, as Pipecat's avatar services do (pipecat/services/simli/video.py names the same frames):
- `TTSAudioRawFrame` (any rate, mono or stereo int16): sent to the avatar server as protocol audio
  (docs/protocol.md); not passed on: it comes back with its frames;
- `TTSStoppedFrame`: the utterance is over (`end`: the server flushes its last partial frame); passed on;
- `InterruptionFrame` (barge-in): `interrupt` to the server, which drops the speech it has not shown, so the
  next frame is silent; passed on;
- out: one `OutputImageRawFrame` (RGB, `sync_with_audio`) per 40 ms frame the server renders (idle frames between
  utterances too), each speaking frame preceded by the 40 ms of speech it shows (the frame message's own 16 kHz
  audio) as a `TTSAudioRawFrame`: picture and sound leave together, in step. After an `InterruptionFrame` no
  speaking frame leaves (those the server had sent ahead are dropped), so the speech stops at once; the
  transport drops what it had queued, as it does for any interruption.
Everything else passes through. `StartFrame` opens the websocket session, `EndFrame` / `CancelFrame` close it.

The service is a client of the server, so an agent's environment needs only pipecat-ai, websockets and numpy,
not the engine: pipecat-ai needs protobuf >= 5.29 and the engine's mediapipe 0.10.21 fails to parse its graphs
under protobuf 5 (docs/agents.md). Install: `pip install pipecat-ai==1.14.0 websockets` and this repository with
`pip install --no-deps -e .` (scripts/setup_agents.sh makes .venv-pipecat that way).
"""
from __future__ import annotations

import asyncio
import io

import numpy as np
from PIL import Image
from pipecat.frames.frames import (CancelFrame, EndFrame, Frame, InterruptionFrame, OutputImageRawFrame, StartFrame,
                                   TTSAudioRawFrame, TTSStoppedFrame)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from viewer.client import AvatarClient

SAMPLE_RATE = 16000      # a frame message's audio (docs/protocol.md)


class AudioAvatarVideoService(FrameProcessor):
    """url: the avatar server as `audioavatar serve` prints it (or its ws:// URL); token: its session token, if
    it has one. `frames_out` and `speaking_frames` count what was pushed (for tests and logs)."""

    def __init__(self, *, url: str, token: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self._url, self._token = url, token
        self._client: AvatarClient | None = None
        self._frames: asyncio.Queue = asyncio.Queue()   # frame messages from the server, oldest first
        self._out_task: asyncio.Task | None = None
        self._first_after = 0                    # frames numbered below this were cut by an interruption
        self._interrupting = False
        self.frames_out = self.speaking_frames = 0
        self.frames_at_interrupt: int | None = None

    # -- pipeline frames ---------------------------------------------------------------------------------
    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            await self._open()
            await self.push_frame(frame, direction)
        elif isinstance(frame, TTSAudioRawFrame):
            if self._client is not None:
                await self._send_audio(frame)
        elif isinstance(frame, TTSStoppedFrame):
            if self._client is not None:
                await self._client.end()
            await self.push_frame(frame, direction)
        elif isinstance(frame, InterruptionFrame) and self._client is None:
            await self.push_frame(frame, direction)
        elif isinstance(frame, InterruptionFrame):
            self._interrupting = True                # until the reply: no speaking frame goes out
            self.frames_at_interrupt = self.frames_out
            self._first_after = await self._client.interrupt()   # frames before it, already on the wire, are stale
            self._interrupting = False
            await self.push_frame(frame, direction)
        elif isinstance(frame, (EndFrame, CancelFrame)):
            await self._close()
            await self.push_frame(frame, direction)
        else:
            await self.push_frame(frame, direction)

    async def _open(self) -> None:
        if self._client is not None:
            return
        client = AvatarClient(self._url, self._token, on_frame=self._frames.put_nowait)
        try:
            await client.connect()
        except (OSError, RuntimeError, ValueError) as e:      # refused, wrong token or version, bad URL
            await self.push_error(error_msg=f"AudioAvatar: cannot open a session at {self._url}: {e}",
                                  exception=e, force_treat_as_permanent=True)   # this service cannot work
            return
        self._client = client
        self._out_task = self.create_task(self._push_video())

    async def _close(self) -> None:
        if self._out_task is not None:
            await self.cancel_task(self._out_task)
            self._out_task = None
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def cleanup(self):
        await super().cleanup()
        await self._close()

    # -- audio in ----------------------------------------------------------------------------------------
    async def _send_audio(self, frame: TTSAudioRawFrame) -> None:
        pcm = np.frombuffer(frame.audio, dtype="<i2")
        if frame.num_channels > 1:
            pcm = pcm.reshape(-1, frame.num_channels).mean(axis=1).astype("<i2")
        await self._client.send_audio(pcm, frame.sample_rate)

    # -- video (and its audio) out -----------------------------------------------------------------------
    async def _push_video(self) -> None:
        while True:
            frame = await self._frames.get()
            if frame["index"] < self._first_after or (self._interrupting and frame["speaking"]):
                continue
            if frame["speaking"]:
                await self.push_frame(TTSAudioRawFrame(audio=frame["audio"].astype("<i2").tobytes(),
                                                       sample_rate=SAMPLE_RATE, num_channels=1))
                self.speaking_frames += 1
            image = Image.open(io.BytesIO(frame["image"])).convert("RGB")
            # the server sends speech frames up to 1 s ahead of their time: the transport shows each picture
            # after the audio pushed before it has played
            out = OutputImageRawFrame(image=image.tobytes(), size=image.size, format="RGB")
            out.sync_with_audio = True
            out.pts = int(frame["pts"] * 1e9)
            await self.push_frame(out)
            self.frames_out += 1
