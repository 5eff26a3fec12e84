"""`audioavatar serve --workers N`: N server processes, one per share of the cores, behind any balancer.

Each worker is a whole `audioavatar serve` (its own engines, kernels, sessions and GIL) on its own port:
port P, P+1, ... (with --port 0 each picks a free one), with the machine's cores split between them
(`--threads`). A websocket session lives on the worker it connected to, so a balancer only has to spread new
connections: each worker answers `GET /capacity` (200 while it has a free session slot, 503 when full or
warming; JSON {"status", "sessions", "max_sessions", "free"}) and `GET /healthz` (200 once warm). docs/scaling.md
has an HAProxy and an nginx configuration.

The supervisor prints one line per worker when it is ready (`worker I serving http://HOST:PORT/`) and then
`serving N workers`; it stops them all when it is stopped, or when any of them exits.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading


def worker_threads(workers: int, cores: int | None = None) -> int:
    """Compute threads per worker: the cores shared out, at least one each."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // workers)


def run_workers(serve_args: list[str], workers: int, port: int, threads: int) -> int:
    """Start `workers` children `python -m audioavatar --threads T serve SERVE_ARGS --port P+i`; returns the exit
    code of the first child to exit (0 after a stop signal)."""
    children = []
    for i in range(workers):
        cmd = [sys.executable, "-m", "audioavatar", "--threads", str(threads), "serve", *serve_args,
               "--port", str(port + i if port else 0)]
        children.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
    stopping = threading.Event()

    def stop(*_):
        stopping.set()
        for child in children:
            if child.poll() is None:
                child.terminate()

    signal.signal(signal.SIGTERM, stop)
    try:
        for i, child in enumerate(children):
            line = child.stdout.readline().strip()          # "serving http://HOST:PORT/" once warm
            if not line.startswith("serving"):
                stop()
                print(f"worker {i} did not start (exit code {child.wait()})", file=sys.stderr, flush=True)
                return 1
            print(f"worker {i} {line}", flush=True)
        print(f"serving {workers} workers", flush=True)
        done = threading.Event()
        code = [0]

        def watch(child):
            child.wait()
            if not stopping.is_set():
                code[0] = child.returncode or 1
            done.set()

        for child in children:
            threading.Thread(target=watch, args=(child,), daemon=True).start()
        done.wait()
        return code[0]
    except KeyboardInterrupt:
        return 0
    finally:
        stop()
        for child in children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
