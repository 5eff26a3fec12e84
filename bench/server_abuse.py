"""`audioavatar serve` under abuse, and a soak: one JSON line per case.

The bench starts the server itself (`python -m audioavatar serve`, as in use) on the lighter avatar (personalized
here with --body-stride 3 unless --avatar is given). In each scenario a victim session streams the bundled
speech in 40 ms chunks at real-time pace (a live microphone) while, after a few seconds, one abusive client
does its thing for --abuse-seconds, then leaves:

    baseline  nobody (the victim alone)
    pair      a well-behaved second session streaming speech in real time: what two sessions cost anyway
    blast     30 x 1 MiB audio messages as fast as the socket takes them (16 minutes of speech), then reads
    fast      speech at 10x real time, reading its frames
    noread    real-time speech, never reading a frame
    stall     no client: the server process is stopped (SIGSTOP) for 2 s, as a machine hiccup would

Reported for the victim over the abuse window (from 1 s after it starts to its end): frames per second received,
the server's latency (audio arrived -> frame sent, from the frame header) p50/p95, and the client's (chunk sent ->
frame received) p95. Also the server's RSS just before the abuser came and 3 s after it left, and the load
average. For `stall`: from the resume, how long until the client latency is under 300 ms again for a whole
second of frames (recovery_s), and the window's figures from 2 s after the resume.

Bars (issue "Robust under load and abuse"): victim >= 24 fps and p95 latency <= 300 ms in every scenario; RSS
after within 50 MB of before; stall recovery <= 2 s.

Soak (--minutes N): one session streams speech (with pauses) for N minutes while other clients come and go
every 20 s and a fuzz burst of 300 malformed messages comes every minute. Reported: RSS each minute, its growth
after the first minute (bar: <= 5%), and the streaming session's fps and latency per minute (no drift).

Usage: python bench/server_abuse.py [--avatar DIR] [--size 512] [--scenarios baseline,blast,fast,noread,stall]
                                    [--abuse-seconds 8] [--minutes 0]
The machine is shared and these are real-time figures: each line carries the load average.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _speech import speech  # noqa: E402
from viewer.protocol import AUDIO_HEADER, MAGIC, pack_audio, unpack_frame  # noqa: E402

CHUNK = 640                         # 40 ms at 16 kHz: one frame per chunk
CODES, CODE_STEP = 256, 8           # chunk k carries 8 * (k % 256) in its first sample; the frame's echo brings
                                    # it back (within 1 LSB), which names the chunk even after frames were dropped
SCENARIOS = ("baseline", "pair", "blast", "fast", "noread", "stall")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def load() -> list:
    return [round(x, 2) for x in os.getloadavg()]


class Server:
    """`python -m audioavatar serve` on a free port; the URL is read from its first line."""

    def __init__(self, avatar: str, size: int, max_sessions: int = 4):
        self.proc = subprocess.Popen([sys.executable, "-m", "audioavatar", "serve", avatar, "--port", "0", "--size",
                                      str(size), "--max-sessions", str(max_sessions)],
                                     stdout=subprocess.PIPE, text=True, cwd=ROOT)
        line = self.proc.stdout.readline()
        if not line.startswith("serving "):
            self.proc.kill()
            raise RuntimeError(f"serve did not start: {line!r}")
        self.url = line.split()[-1].rstrip("/").replace("http://", "ws://") + "/ws"
        self.pid = self.proc.pid

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def open_session(url: str):
    from websockets.asyncio.client import connect
    ws = await connect(url, max_size=None, open_timeout=60)
    await ws.send(json.dumps({"type": "hello", "version": 1}))
    welcome = json.loads(await ws.recv())
    if welcome.get("type") != "welcome":
        raise RuntimeError(f"no welcome: {welcome}")
    return ws


class Streamer:
    """A session that streams `wave` (16 kHz int16) in real time and records every frame it receives."""

    def __init__(self, url: str, wave: np.ndarray, pause_every_s: float = 0.0):
        self.url, self.wave, self.pause_every_s = url, wave, pause_every_s
        self.frames: list = []            # (arrival time, index, speaking, server latency ms, chunk number or None)
        self.sent_at: dict = {}           # chunk number -> send time
        self.last_chunk = -1

    def chunk_of(self, audio: np.ndarray):
        """The chunk whose audio a speech frame echoes: the latest sent with that code."""
        code = int(round(float(audio[0]) / CODE_STEP)) % CODES
        k = self.last_chunk - ((self.last_chunk - code) % CODES)
        return k if k in self.sent_at else None

    async def run(self, stop: asyncio.Event) -> None:
        ws = await open_session(self.url)

        async def receive():
            async for msg in ws:
                if isinstance(msg, bytes):
                    f = unpack_frame(msg)
                    self.frames.append((time.perf_counter(), f["index"], f["speaking"], f["latency_us"] / 1e3,
                                        self.chunk_of(f["audio"]) if f["speaking"] else None))
        reader = asyncio.create_task(receive())
        await asyncio.sleep(1.0)
        start, k, n = time.perf_counter(), 0, self.wave.shape[0] // CHUNK
        every = int(self.pause_every_s * 25)
        while not stop.is_set():
            if every and k and k % every == 0 and k not in self.sent_at:   # a 1 s pause now and then: idle
                await ws.send(json.dumps({"type": "end"}))
                await asyncio.sleep(1.0)
                start += 1.0
            await asyncio.sleep(max(0.0, start + k * 0.04 - time.perf_counter()))
            i = k % n
            chunk = self.wave[i * CHUNK:(i + 1) * CHUNK].copy()
            chunk[0] = CODE_STEP * (k % CODES)
            self.sent_at[k], self.last_chunk = time.perf_counter(), k
            await ws.send(pack_audio(chunk, 16000, k))
            k += 1
        await ws.close()
        reader.cancel()

    def window(self, t0: float, t1: float) -> dict:
        """fps and latencies of the frames that arrived in [t0, t1]."""
        inside = [f for f in self.frames if t0 <= f[0] <= t1]
        speech_ms = [f[3] for f in inside if f[2]]
        client_ms = [(f[0] - self.sent_at[f[4]]) * 1e3 for f in inside if f[4] is not None]
        pct = (lambda a, q: round(float(np.percentile(a, q)), 1) if a else None)  # noqa: E731
        return {"fps": round(len(inside) / max(t1 - t0, 1e-9), 2), "speech_frames": len(speech_ms),
                "server_latency_ms_p50": pct(speech_ms, 50), "server_latency_ms_p95": pct(speech_ms, 95),
                "client_latency_ms_p50": pct(client_ms, 50), "client_latency_ms_p95": pct(client_ms, 95)}


# ---------------------------------------------------------------------------------------------------- abusers
async def drain(ws, counts: dict) -> None:
    try:
        async for msg in ws:
            if isinstance(msg, bytes):
                counts["frames"] += 1
            elif json.loads(msg).get("type") == "error":
                counts["errors"] += 1
    except Exception:                                         # the server may close us: that is a result too
        pass


async def abuse_blast(url: str, stop: asyncio.Event, counts: dict) -> None:
    ws = await open_session(url)
    reader = asyncio.create_task(drain(ws, counts))
    n = (1 << 20) - AUDIO_HEADER.size                            # 1 MiB messages: the default maximum size
    noise = (np.random.default_rng(0).standard_normal(n // 2) * 3000).astype(np.int16)
    t0 = time.perf_counter()
    for k in range(30):
        await ws.send(pack_audio(noise, 16000, k))
    counts["send_s"] = round(time.perf_counter() - t0, 2)
    await stop.wait()
    await ws.close()
    reader.cancel()


async def abuse_fast(url: str, stop: asyncio.Event, counts: dict, wave: np.ndarray) -> None:
    ws = await open_session(url)
    reader = asyncio.create_task(drain(ws, counts))
    start, k, n = time.perf_counter(), 0, wave.shape[0] // CHUNK
    while not stop.is_set():                                   # 10x real time: a 40 ms chunk every 4 ms
        await asyncio.sleep(max(0.0, start + k * 0.004 - time.perf_counter()))
        i = k % n
        await ws.send(pack_audio(wave[i * CHUNK:(i + 1) * CHUNK], 16000, k))
        k += 1
    counts["chunks"] = k
    await ws.close()
    reader.cancel()


async def abuse_noread(url: str, stop: asyncio.Event, counts: dict, wave: np.ndarray) -> None:
    ws = await open_session(url)                               # and never reads again
    start, k, n = time.perf_counter(), 0, wave.shape[0] // CHUNK
    try:
        while not stop.is_set():
            await asyncio.sleep(max(0.0, start + k * 0.04 - time.perf_counter()))
            i = k % n
            await ws.send(pack_audio(wave[i * CHUNK:(i + 1) * CHUNK], 16000, k))
            k += 1
    except Exception as e:                                     # closed by the server
        counts["closed"] = type(e).__name__
    counts["chunks"] = k
    try:
        await asyncio.wait_for(ws.close(), 5)
    except (asyncio.TimeoutError, Exception):
        pass


async def scenario(name: str, server: Server, wave: np.ndarray, abuse_s: float) -> dict:
    stop_victim, stop_abuse, counts = asyncio.Event(), asyncio.Event(), {"frames": 0, "errors": 0}
    victim = Streamer(server.url, wave)
    vtask = asyncio.create_task(victim.run(stop_victim))
    await asyncio.sleep(4.0)                                   # 1 s idle, then 3 s of speech
    rss_before = rss_mb(server.pid)
    t_start = time.perf_counter()
    out: dict = {"case": name}
    if name == "stall":
        os.kill(server.pid, signal.SIGSTOP)
        await asyncio.sleep(2.0)
        os.kill(server.pid, signal.SIGCONT)
        resumed = time.perf_counter()
        await asyncio.sleep(abuse_s)
        t_end = time.perf_counter()
        out.update(victim.window(resumed + 2.0, t_end))
        out["recovery_s"] = recovery(victim, resumed)
    else:
        abuser = None
        if name == "pair":
            other = Streamer(server.url, wave[16000 * 7:])
            abuser = asyncio.create_task(other.run(stop_abuse))
        elif name == "blast":
            abuser = asyncio.create_task(abuse_blast(server.url, stop_abuse, counts))
        elif name == "fast":
            abuser = asyncio.create_task(abuse_fast(server.url, stop_abuse, counts, wave))
        elif name == "noread":
            abuser = asyncio.create_task(abuse_noread(server.url, stop_abuse, counts, wave))
        await asyncio.sleep(abuse_s)
        t_end = time.perf_counter()
        stop_abuse.set()
        if abuser is not None:
            await asyncio.wait_for(abuser, 30)
        out.update(victim.window(t_start + 1.0, t_end))
        if name == "pair":
            counts = {"fps": other.window(t_start + 1.0, t_end)["fps"]}
        out["abuser"] = counts if abuser is not None else None
    await asyncio.sleep(3.0)
    out["rss_mb_before"], out["rss_mb_after"] = rss_before, rss_mb(server.pid)
    out["rss_mb_delta"] = round(out["rss_mb_after"] - rss_before, 1)
    stop_victim.set()
    await asyncio.wait_for(vtask, 30)
    out["load"] = load()
    return out


def recovery(victim: Streamer, resumed: float, bar_ms: float = 300.0):
    """Seconds from the resume to the first speech frame that starts a second (25 frames) of frames all with
    client latency under bar_ms; None if that never happens."""
    after = [(f[0], (f[0] - victim.sent_at[f[4]]) * 1e3) for f in victim.frames if f[0] >= resumed and f[4] is not None]
    for i in range(len(after) - 24):
        if all(ms < bar_ms for _, ms in after[i:i + 25]):
            return round(after[i][0] - resumed, 2)
    return None


# ------------------------------------------------------------------------------------------------------- soak
def malformed(rng: random.Random):
    kind = rng.randrange(6)
    if kind == 0:
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 64)))
    if kind == 1:
        return AUDIO_HEADER.pack(MAGIC, 1, 1, rng.choice([0, 7, 10**9]), 0) + bytes(10)
    if kind == 2:
        return rng.choice(["", "{", "[]", "null", '"hello"', '{"type": "nope"}', '{"type": "camera", "yaw": NaN}'])
    if kind == 3:
        return json.dumps({"type": "camera", "yaw": rng.choice([1e300, 10**30, "x"]), "zoom": rng.choice([0, 1e-300])})
    if kind == 4:
        return '{"type": "hello", "version": %s}' % ("9" * rng.choice([50, 5000]))
    return struct.pack("<2sBB", MAGIC, 1, 2) + bytes(rng.randrange(0, 40))


async def churn(url: str, wave: np.ndarray) -> None:
    ws = await open_session(url)
    reader = asyncio.create_task(drain(ws, {"frames": 0, "errors": 0}))
    for k in range(50):                                        # 2 s of speech at 10x
        await ws.send(pack_audio(wave[k * CHUNK:(k + 1) * CHUNK], 16000, k))
        await asyncio.sleep(0.004)
    await asyncio.sleep(3.0)
    await ws.close()
    reader.cancel()


async def fuzz_burst(url: str, rng: random.Random, n: int = 300) -> int:
    from websockets.exceptions import ConnectionClosed
    counts, sent = {"frames": 0, "errors": 0}, 0
    while sent < n:
        ws = await open_session(url)
        reader = asyncio.create_task(drain(ws, counts))
        try:
            while sent < n:
                await ws.send(malformed(rng))
                sent += 1
        except ConnectionClosed:
            pass
        await ws.close()
        reader.cancel()
    return counts["errors"]


async def soak(server: Server, wave: np.ndarray, minutes: float) -> list:
    stop, rng = asyncio.Event(), random.Random(0)
    streamer = Streamer(server.url, wave, pause_every_s=10.0)
    task = asyncio.create_task(streamer.run(stop))
    t0, rows, rss, errors = time.perf_counter(), [], [], 0
    for minute in range(int(np.ceil(minutes))):
        m0 = time.perf_counter()
        for tick in range(3):                                  # 20 s each: a client comes and goes
            await churn(server.url, wave)
            await asyncio.sleep(max(0.0, m0 + 20 * (tick + 1) - time.perf_counter()))
            if tick == 1:
                errors += await fuzz_burst(server.url, rng)
        rss.append(rss_mb(server.pid))
        row = {"case": "soak minute", "minute": minute + 1, "rss_mb": rss[-1],
               **streamer.window(m0 + 1.0, time.perf_counter()), "load": load()}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if time.perf_counter() - t0 >= minutes * 60:
            break
    stop.set()
    await asyncio.wait_for(task, 30)
    p95 = [r["server_latency_ms_p95"] for r in rows if r["server_latency_ms_p95"] is not None]
    fps = [r["fps"] for r in rows]
    return [{"case": "soak", "minutes": len(rows), "rss_mb_first_minute": rss[0], "rss_mb_end": rss[-1],
             "rss_growth_pct_after_first_minute": round(100 * (rss[-1] - rss[0]) / rss[0], 2),
             "rss_mb_max": max(rss), "fps_min": min(fps), "fps_first": fps[0], "fps_last": fps[-1],
             "latency_ms_p95_first": p95[0] if p95 else None, "latency_ms_p95_last": p95[-1] if p95 else None,
             "latency_ms_p95_max": max(p95) if p95 else None, "fuzz_errors_received": errors, "load": load()}]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--avatar", help="avatar folder (default: the bundled photo, personalized with --body-stride 3)")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated, or 'none'")
    ap.add_argument("--abuse-seconds", type=float, default=8.0)
    ap.add_argument("--minutes", type=float, default=0.0, help="soak for this many minutes (0: no soak)")
    args = ap.parse_args()
    names = [] if args.scenarios == "none" else args.scenarios.split(",")
    for n in names:
        if n not in SCENARIOS:
            ap.error(f"--scenarios: unknown {n!r}; known: {', '.join(SCENARIOS)}")
    with tempfile.TemporaryDirectory() as tmp:
        avatar = args.avatar
        if avatar is None:
            subprocess.run([sys.executable, "-m", "audioavatar", "personalize", str(ROOT / "assets" / "astronaut.png"),
                            "-o", str(Path(tmp) / "light"), "--body-stride", "3"], check=True, cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            avatar = str(Path(tmp) / "light")
        wave = (speech(60.0) * 32767).astype(np.int16)
        server = Server(avatar, args.size)
        try:
            print(json.dumps({"case": "server ready", "rss_mb": rss_mb(server.pid), "size": args.size,
                              "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"), "load": load()}), flush=True)
            for name in names:
                print(json.dumps(asyncio.run(scenario(name, server, wave, args.abuse_seconds))), flush=True)
            if args.minutes > 0:
                for row in asyncio.run(soak(server, wave, args.minutes)):
                    print(json.dumps(row), flush=True)
        finally:
            server.close()


if __name__ == "__main__":
    main()
