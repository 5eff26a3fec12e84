"""A real Pipecat pipeline driving a live avatar: TTS frames in, image frames (with their audio) out.

    audioavatar serve out/demo/avatar --port 0                      # prints: serving http://127.0.0.1:PORT/
    .venv-pipecat/bin/python viewer/examples/pipecat_pipeline.py --url http://127.0.0.1:PORT/ \
        "Hello there." "Pipecat drives me." [--interrupt-after-frames 12] [--json]

Pipeline: TTS frames -> viewer.pipecat_service.AudioAvatarVideoService -> a sink that counts what comes out. The
TTS is espeak-ng (`espeak-ng --stdout`, 16-bit WAV) cut into 20 ms TTSAudioRawFrames between a TTSStartedFrame and
a TTSStoppedFrame per sentence, as a streaming TTS service would push them; no cloud service. With
--interrupt-after-frames N an InterruptionFrame (barge-in) follows N speaking frames of the first sentence.
In a real agent the sink is the transport's output (Daily, LiveKit, a websocket) and the TTS frames come from a
TTS service after an LLM; the avatar service sits between them unchanged.

Prints one JSON object: frames out, speaking frames, image size, and for an interruption how many speaking frames
came out after it (the speech stops within one frame: 0 or 1).
Runs in an environment with pipecat-ai (which cannot share one with the engine's mediapipe; docs/agents.md).
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import subprocess
import sys
import time
import wave
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from pipecat.frames.frames import (EndFrame, Frame, InterruptionFrame, OutputImageRawFrame,  # noqa: E402
                                   TTSAudioRawFrame, TTSStartedFrame, TTSStoppedFrame)
from pipecat.pipeline.pipeline import Pipeline  # noqa: E402
from pipecat.pipeline.worker import PipelineWorker  # noqa: E402
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor  # noqa: E402
from pipecat.workers.runner import WorkerRunner  # noqa: E402

from viewer.pipecat_service import AudioAvatarVideoService  # noqa: E402


def espeak_frames(text: str, chunk_ms: int = 20) -> list[TTSAudioRawFrame]:
    """espeak-ng's speech of `text` as TTSAudioRawFrames of chunk_ms each (its own rate, mono int16)."""
    wav = subprocess.run(["espeak-ng", "--stdout", text], check=True, capture_output=True).stdout
    with wave.open(io.BytesIO(wav)) as w:
        rate, pcm = w.getframerate(), w.readframes(w.getnframes())
    step = 2 * rate * chunk_ms // 1000
    return [TTSAudioRawFrame(audio=pcm[i:i + step], sample_rate=rate, num_channels=1)
            for i in range(0, len(pcm), step)]


class Sink(FrameProcessor):
    """The end of the pipeline: counts images and audio, in the order they arrive."""

    def __init__(self):
        super().__init__()
        self.images = self.audio = 0
        self.size = None
        self.order: list[str] = []          # "image" / "audio", as they came

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, OutputImageRawFrame):
            self.images += 1
            self.size = frame.size
            self.order.append("image")
        elif isinstance(frame, TTSAudioRawFrame):
            self.audio += 1
            self.order.append("audio")
        await self.push_frame(frame, direction)


async def wait_until(condition, what: str, timeout_s: float = 30.0) -> None:
    """Poll condition() every 10 ms; TimeoutError naming `what` after timeout_s."""
    end = time.perf_counter() + timeout_s
    while not condition():
        if time.perf_counter() > end:
            raise TimeoutError(f"waited {timeout_s:.0f} s for {what}")
        await asyncio.sleep(0.01)


async def run(url: str, sentences: list[str], interrupt_after: int, tail_s: float) -> dict:
    avatar = AudioAvatarVideoService(url=url)
    sink = Sink()
    worker = PipelineWorker(Pipeline([avatar, sink]), idle_timeout_secs=None)
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    running = asyncio.create_task(runner.run())
    t0 = time.perf_counter()
    report: dict = {}
    for k, text in enumerate(sentences):
        frames = espeak_frames(text)
        await worker.queue_frames([TTSStartedFrame(), *frames, TTSStoppedFrame()])
        report[f"sentence_{k}_s"] = round(sum(len(f.audio) for f in frames) / 2 / frames[0].sample_rate, 2)
        if k == 0 and interrupt_after:
            await wait_until(lambda: avatar.speaking_frames >= interrupt_after, f"{interrupt_after} speaking frames")
            before = avatar.speaking_frames
            await worker.queue_frame(InterruptionFrame())
            await wait_until(lambda: avatar.frames_at_interrupt is not None, "the interruption to reach the service")
            await asyncio.sleep(1.0)                   # what would have been a second more of speech
            report["speaking_frames_after_interrupt"] = avatar.speaking_frames - before
        else:
            start, want = avatar.speaking_frames, int(report[f"sentence_{k}_s"] * 25) - 1
            await wait_until(lambda: avatar.speaking_frames - start >= want, f"sentence {k}'s {want} frames")
    await asyncio.sleep(tail_s)
    await worker.queue_frame(EndFrame())
    await running
    report.update({"frames_out": avatar.frames_out, "speaking_frames": avatar.speaking_frames,
                   "images": sink.images, "audio_frames": sink.audio, "image_size": list(sink.size or ()),
                   "audio_before_its_image": all(sink.order[i + 1] == "image"
                                                 for i, kind in enumerate(sink.order[:-1]) if kind == "audio"),
                   "wall_s": round(time.perf_counter() - t0, 2)})
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True, help="the avatar server, as `audioavatar serve` prints it")
    ap.add_argument("sentences", nargs="+")
    ap.add_argument("--interrupt-after-frames", type=int, default=0)
    ap.add_argument("--tail", type=float, default=0.5, help="seconds of idle frames to take at the end")
    a = ap.parse_args()
    print(json.dumps(asyncio.run(run(a.url, a.sentences, a.interrupt_after_frames, a.tail))))


if __name__ == "__main__":
    main()
