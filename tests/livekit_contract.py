"""Run by tests/test_livekit.py inside .venv-livekit: the VideoGenerator contract of viewer/livekit_avatar.py
against a live avatar server, the way LiveKit's AvatarRunner drives it (one task pushes audio, another iterates).

    python tests/livekit_contract.py URL  -> one JSON line

Utterance 1 (espeak-ng, pushed as 10 ms rtc.AudioFrames at espeak's rate, then AudioSegmentEnd) plays out in full;
utterance 2 is cut by clear_buffer() after 10 of its speaking frames.
"""
from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import time
import wave
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from livekit import rtc  # noqa: E402
from livekit.agents.voice.avatar import AudioSegmentEnd, VideoGenerator  # noqa: E402

from viewer.livekit_avatar import AudioAvatarVideoGenerator  # noqa: E402


def espeak(text: str) -> list[rtc.AudioFrame]:
    wav = subprocess.run(["espeak-ng", "--stdout", text], check=True, capture_output=True).stdout
    with wave.open(io.BytesIO(wav)) as w:
        rate, pcm = w.getframerate(), w.readframes(w.getnframes())
    n = rate // 100
    return [rtc.AudioFrame(data=pcm[i:i + 2 * n].ljust(2 * n, b"\0"), sample_rate=rate, num_channels=1,
                           samples_per_channel=n) for i in range(0, len(pcm), 2 * n)]


async def main(url: str) -> dict:
    gen = AudioAvatarVideoGenerator(url=url)
    assert isinstance(gen, VideoGenerator)
    await gen.start()
    log: list[tuple[str, float]] = []                  # ("audio" | "video" | "end", time)
    sizes, audio_rates = set(), set()

    async def consume():
        async for item in gen:
            if isinstance(item, rtc.AudioFrame):
                log.append(("audio", time.perf_counter()))
                audio_rates.add((item.sample_rate, item.samples_per_channel))
            elif isinstance(item, rtc.VideoFrame):
                log.append(("video", time.perf_counter()))
                sizes.add((item.width, item.height, item.type == rtc.VideoBufferType.RGBA))
            elif isinstance(item, AudioSegmentEnd):
                log.append(("end", time.perf_counter()))

    reader = asyncio.create_task(consume())
    count = lambda kind: sum(k == kind for k, _ in log)  # noqa: E731
    one, two = espeak("Pop a big map for mom."), espeak("Maybe my mom brought the blue paper book home, I think.")
    for f in one:
        await gen.push_audio(f)
    await gen.push_audio(AudioSegmentEnd())
    end = time.perf_counter() + 30
    while count("end") < 1 and time.perf_counter() < end:
        await asyncio.sleep(0.01)
    report = {"seconds_1": round(sum(f.samples_per_channel for f in one) / one[0].sample_rate, 2),
              "audio_1": count("audio"), "ends_1": count("end")}
    for f in two:
        await gen.push_audio(f)
    await gen.push_audio(AudioSegmentEnd())
    while count("audio") < report["audio_1"] + 10 and time.perf_counter() < end + 30:
        await asyncio.sleep(0.005)
    before = count("audio")
    await gen.clear_buffer()
    await asyncio.sleep(1.0)
    report.update({"seconds_2": round(sum(f.samples_per_channel for f in two) / two[0].sample_rate, 2),
                   "audio_after_clear": count("audio") - before, "ends": count("end"), "video": count("video"),
                   "sizes": sorted(sizes), "audio_format": sorted(audio_rates),
                   "audio_then_video": all(log[i + 1][0] == "video" for i in range(len(log) - 1)
                                           if log[i][0] == "audio")})
    reader.cancel()
    await gen.aclose()
    return report


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1]))))
