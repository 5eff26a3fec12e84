"""`audioavatar serve` against issue 5's bars, one JSON line per case. The server runs as its own process, as it
would in use; the clients here stream the bundled speech in 40 ms chunks at real-time pace (a live microphone).

- latency: one session at 512x512. Per speech frame: the server's own figure (the audio that completed the
  frame arrived -> the frame was sent, from the frame header) and the client's (the chunk was sent -> the frame
  arrived). p50/p95/max, and the first speech frame's.
- two sessions at once, each streaming speech in real time: frames per second each receives over the
  steady part, and their latencies.

Usage: python bench/server.py [--avatar DIR] [--seconds 20] [--size 512]
Without --avatar the bundled photo is personalized first (about 30 s).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _avatar import avatar_folder  # noqa: E402
from _speech import speech  # noqa: E402
from viewer.protocol import pack_audio, unpack_frame, unpack_motion  # noqa: E402


async def stream_session(url: str, wave: np.ndarray, render: str = "server") -> dict:
    """One client: hello (asking for `render`: "server" frames or "client" motion), stream wave (16 kHz int16) in
    real time, collect every frame's timing and the bytes received (wire_kbps_steady: kB per second)."""
    from websockets.asyncio.client import connect
    ws = await connect(url, max_size=None)
    await ws.send(json.dumps({"type": "hello", "version": 1, "render": render}))
    welcome = json.loads(await ws.recv())
    assert welcome["type"] == "welcome" and welcome["render"] == render, welcome
    unpack = unpack_motion if render == "client" else unpack_frame
    sent_at: list[float] = []
    frames: list[tuple[float, dict]] = []
    sizes: list[tuple[float, int]] = []

    async def receive():
        async for msg in ws:
            now = time.perf_counter()
            sizes.append((now, len(msg)))
            if isinstance(msg, bytes):
                frames.append((now, unpack(msg)))

    reader = asyncio.create_task(receive())
    await asyncio.sleep(1.0)                                  # idle frames first, as a viewer would see
    start = time.perf_counter()
    for k, i in enumerate(range(0, wave.shape[0] - 639, 640)):
        await asyncio.sleep(max(0.0, start + k * 0.04 - time.perf_counter()))
        sent_at.append(time.perf_counter())
        await ws.send(pack_audio(wave[i:i + 640], 16000, k))
    await asyncio.sleep(1.0)
    end = time.perf_counter()
    await ws.close()
    reader.cancel()
    spoken = [(t, f) for t, f in frames if f["speaking"]]
    client_ms = np.asarray([(t - sent_at[k]) * 1e3 for k, (t, _) in enumerate(spoken[: len(sent_at)])])
    server_ms = np.asarray([f["latency_us"] / 1e3 for _, f in spoken])
    steady = [t for t, _ in frames if start + 1.0 <= t <= end - 1.5]
    steady_bytes = sum(n for t, n in sizes if start + 1.0 <= t <= end - 1.5)
    pct = lambda a, q: round(float(np.percentile(a, q)), 1)  # noqa: E731
    return {"frames": len(frames), "speech_frames": len(spoken), "chunks": len(sent_at),
            "fps_steady": round(len(steady) / max(end - 2.5 - start, 1e-9), 2),
            "wire_kbps_steady": round(steady_bytes / 1e3 / max(end - 2.5 - start, 1e-9), 1),
            "server_latency_ms_p50": pct(server_ms, 50), "server_latency_ms_p95": pct(server_ms, 95),
            "server_latency_ms_max": round(float(server_ms.max()), 1), "server_latency_first_ms": round(float(server_ms[0]), 1),
            "client_latency_ms_p50": pct(client_ms, 50), "client_latency_ms_p95": pct(client_ms, 95),
            "client_latency_first_ms": round(float(client_ms[0]), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--avatar")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args()
    with avatar_folder(args.avatar) as avatar:
        proc = subprocess.Popen([sys.executable, "-m", "audioavatar", "serve", avatar, "--port", "0",
                                 "--size", str(args.size)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            line = proc.stdout.readline()
            url = line.strip().split()[-1].replace("http://", "ws://") + "ws"
            wave = (speech(args.seconds) * 32767).astype(np.int16)
            one = asyncio.run(stream_session(url, wave))
            print(json.dumps({"case": "one session", "size": args.size, "audio_s": args.seconds, **one}))

            async def two():
                return await asyncio.gather(stream_session(url, wave), stream_session(url, wave))
            a, b = asyncio.run(two())
            for name, r in (("two sessions: A", a), ("two sessions: B", b)):
                print(json.dumps({"case": name, "size": args.size, "audio_s": args.seconds, **r}))
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
