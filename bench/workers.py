"""Sessions held at 25 fps by `audioavatar serve --workers W` pinned to W cores (taskset), for W = 1 and 2: does
the capacity scale with the workers (issue 20's bar: >= 1.8x from 1 core to 2)? One JSON line per trial and one
summary line.

A trial: N clients (spread over the workers round-robin, as a least-connections balancer would) each stream the
bundled speech in 40 ms chunks at real-time pace for --seconds; the trial holds if every session receives >= 24
frames per second over its steady part (bench/server.py's stream_session). N climbs from 1 until a trial fails.
Each trial also reports the server's CPU time (all its processes, from /proc) per frame received by a session.

Usage: python bench/workers.py [--avatar DIR] [--size 256] [--seconds 8] [--motion learned] [--cores 0,1]
Without --avatar the bundled photo is personalized first (about 30 s). Linux only (taskset).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _avatar import avatar_folder  # noqa: E402
from _speech import speech  # noqa: E402
from server import stream_session  # noqa: E402  (bench/server.py)


def start(avatar: str, cores: list[int], size: int, motion: str, max_sessions: int, extra: tuple = ()):
    """The server pinned to `cores`, one worker per core -> (process, [ws URL per worker])."""
    workers = len(cores)
    proc = subprocess.Popen(["taskset", "-c", ",".join(map(str, cores)), sys.executable, "-m", "audioavatar",
                             "serve", avatar, "--port", "0", "--size", str(size), "--motion", motion,
                             "--max-sessions", str(max_sessions), "--workers", str(workers), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    urls = []
    for _ in range(workers):
        line = proc.stdout.readline().strip()             # "[worker I ]serving http://HOST:PORT/"
        if "serving http" not in line:
            proc.kill()
            raise RuntimeError(f"the server did not start: {line!r}")
        urls.append(line.split()[-1].replace("http://", "ws://") + "ws")
    if workers > 1:
        proc.stdout.readline()                            # "serving W workers"
    return proc, urls


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and all its descendants so far (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(d.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)   # ppid, cpu
    tree, todo = set(), [pid]
    while todo:
        p = todo.pop()
        tree.add(p)
        todo += [q for q, (parent, _) in stats.items() if parent == p and q not in tree]
    return sum(stats[p][1] for p in tree if p in stats)


def trial(urls: list[str], n: int, wave: np.ndarray, render: str = "server") -> list[dict]:
    """n sessions spread round-robin over the workers' URLs, each streaming wave in real time (asking for
    `render`: "server" frames or "client" motion) -> each one's stream_session figures."""
    async def all_sessions():
        return await asyncio.gather(*(stream_session(urls[i % len(urls)], wave, render) for i in range(n)))
    return asyncio.run(all_sessions())


def capacity(avatar: str, cores: list[int], args, wave: np.ndarray) -> int:
    proc, urls = start(avatar, cores, args.size, args.motion, max_sessions=32)
    held = 0
    try:
        for n in range(1, 33):
            cpu0 = cpu_seconds(proc.pid)
            got = trial(urls, n, wave)
            cpu = cpu_seconds(proc.pid) - cpu0
            fps = [g["fps_steady"] for g in got]
            p95 = max(g["server_latency_ms_p95"] for g in got)
            ok = min(fps) >= 24.0
            print(json.dumps({"cores": len(cores), "workers": len(urls), "sessions": n, "min_fps": min(fps),
                              "median_fps": float(np.median(fps)), "worst_p95_latency_ms": p95, "held": ok,
                              "server_cpu_ms_per_session_frame": round(1e3 * cpu / sum(g["frames"] for g in got), 2)}),
                  flush=True)
            if not ok:
                break
            held = n
    finally:
        proc.terminate()
        proc.wait(30)
    return held


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--avatar")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--motion", default="learned", choices=["learned", "procedural"])
    ap.add_argument("--cores", default="0,1", help="the cores to use; the 1-core run takes the first")
    args = ap.parse_args()
    cores = [int(c) for c in args.cores.split(",")]
    wave = (speech(args.seconds) * 32767).astype(np.int16)
    with avatar_folder(args.avatar) as avatar:
        one = capacity(avatar, cores[:1], args, wave)
        many = capacity(avatar, cores, args, wave)
    print(json.dumps({"summary": True, "size": args.size, "motion": args.motion, "seconds": args.seconds,
                      "sessions_1_core_1_worker": one, f"sessions_{len(cores)}_cores_{len(cores)}_workers": many,
                      "scaling": round(many / one, 2) if one else None}), flush=True)


if __name__ == "__main__":
    main()
