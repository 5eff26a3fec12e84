"""Client-rendered sessions per box (issue 20's bars): how many sessions asking for `"render": "client"` a server
holds at 25 fps of motion, the server's CPU per session-frame, and the bytes each session receives per second.
One JSON line per trial and one summary line.

A trial: N clients (spread round-robin over the workers, as a least-connections balancer would) each stream the
bundled speech in 40 ms chunks at real-time pace for --seconds (bench/server.py's stream_session); a trial holds
when every session receives >= 24 motion messages a second over its steady part and the worst session's p95
motion latency (the audio completing a frame arrived -> its motion was sent, from the message header) is
<= 150 ms. The server runs as `audioavatar serve --workers W` pinned to --cores with taskset; the clients run in
this process, on the same cores (a real deployment has them elsewhere: their CPU is reported apart).

Usage: python bench/client_sessions.py [--avatar DIR] [--motion procedural,learned] [--sessions 5,10,15,20,25]
       [--seconds 8] [--cores 0,1] [--linger 0.02] [--context 4]
Without --avatar the bundled photo is personalized first (about 30 s). Linux only (taskset, /proc).
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _avatar import avatar_folder  # noqa: E402
from _speech import speech  # noqa: E402
from workers import cpu_seconds, start, trial  # noqa: E402  (bench/workers.py)

FPS_FLOOR, P95_CEILING_MS = 24.0, 150.0


def own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def avatar_download(url: str) -> dict:
    """Bytes of GET /avatar.splat, plain and gzip'd."""
    base = url.replace("ws://", "http://").rsplit("/ws", 1)[0]
    plain = urllib.request.urlopen(base + "/avatar.splat").read()
    req = urllib.request.Request(base + "/avatar.splat", headers={"Accept-Encoding": "gzip"})
    return {"avatar_bytes": len(plain), "avatar_bytes_gzip": len(urllib.request.urlopen(req).read())}


def run(avatar: str, motion: str, cores: list[int], counts: list[int], wave: np.ndarray, size: int,
        linger: float, context: int) -> dict:
    proc, urls = start(avatar, cores, size, motion, max_sessions=max(counts),
                       extra=("--motion-linger", str(linger), "--motion-context", str(context)))
    held, last = 0, {}
    try:
        download = avatar_download(urls[0])
        for n in counts:
            cpu0, mine0 = cpu_seconds(proc.pid), own_cpu()
            got = trial(urls, n, wave, render="client")
            cpu, mine = cpu_seconds(proc.pid) - cpu0, own_cpu() - mine0
            fps = [g["fps_steady"] for g in got]
            p95 = max(g["server_latency_ms_p95"] for g in got)
            frames = sum(g["frames"] for g in got)
            ok = min(fps) >= FPS_FLOOR and p95 <= P95_CEILING_MS
            last = {"motion": motion, "linger_s": linger, "context": context, "cores": len(cores),
                    "workers": len(urls), "sessions": n, "held": ok,
                    "min_fps": min(fps), "median_fps": float(np.median(fps)), "worst_p95_latency_ms": p95,
                    "server_cpu_ms_per_session_frame": round(1e3 * cpu / frames, 3),
                    "client_cpu_ms_per_session_frame": round(1e3 * mine / frames, 3),
                    "wire_kB_per_s_median": float(np.median([g["wire_kbps_steady"] for g in got])),
                    "wire_kB_per_s_max": max(g["wire_kbps_steady"] for g in got), **download}
            print(json.dumps(last), flush=True)
            if not ok:
                break
            held = n
    finally:
        proc.terminate()
        proc.wait(30)
    return {"motion": motion, "linger_s": linger, "context": context, "sessions_held": held, **download}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--avatar")
    ap.add_argument("--motion", default="procedural,learned")
    ap.add_argument("--sessions", default="5,10,15,20,25")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--cores", default="0,1")
    ap.add_argument("--size", type=int, default=256, help="the server's frame size (unused by client sessions)")
    ap.add_argument("--linger", type=float, default=0.02, help="serve --motion-linger (learned motion batching)")
    ap.add_argument("--context", type=int, default=4, help="serve --motion-context (0: the model's 8)")
    args = ap.parse_args()
    cores = [int(c) for c in args.cores.split(",")]
    counts = [int(n) for n in args.sessions.split(",")]
    wave = (speech(args.seconds) * 32767).astype(np.int16)
    with avatar_folder(args.avatar) as avatar:
        results = [run(avatar, m, cores, counts, wave, args.size, args.linger, args.context)
                   for m in args.motion.split(",")]
    print(json.dumps({"summary": True, "seconds": args.seconds, "cores": len(cores), "results": results}), flush=True)


if __name__ == "__main__":
    main()
