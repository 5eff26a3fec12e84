"""`audioavatar serve --workers N` (viewer/workers.py): N server processes on their own ports, each answering
/healthz and /capacity and holding sessions; stopping the supervisor stops them all."""
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("mediapipe", reason="mediapipe is installed by scripts/setup.sh")
from engine.avatar.personalize import PersonalizeConfig, personalize  # noqa: E402
from test_server import hello, next_frame  # noqa: E402
from test_server_limits import http_request  # noqa: E402
from viewer.workers import worker_threads  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def test_cores_are_shared_out():
    assert worker_threads(2, cores=16) == 8 and worker_threads(3, cores=16) == 5 and worker_threads(4, cores=2) == 1


@pytest.fixture(scope="module")
def avatar(tmp_path_factory):
    return personalize(ROOT / "assets" / "astronaut.png", PersonalizeConfig(max_side=160, fit_steps=5),
                       progress=False).save_pretrained(tmp_path_factory.mktemp("av") / "a")


def serve(avatar, port=0):
    return subprocess.Popen([sys.executable, "-m", "audioavatar", "serve", str(avatar), "--workers", "2",
                             "--port", str(port), "--size", "64", "--motion", "procedural", "--max-sessions", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)


def test_two_workers_serve_and_stop_together(avatar):
    proc = serve(avatar)
    try:
        lines = [proc.stdout.readline().strip() for _ in range(3)]
        assert lines[0].startswith("worker 0 serving http://127.0.0.1:") and lines[2] == "serving 2 workers", lines
        ports = [int(line.split(":")[-1].strip("/")) for line in lines[:2]]
        assert len(set(ports)) == 2

        async def fill(port):                          # one session each: then that worker is full
            ws, welcome = await hello(f"ws://127.0.0.1:{port}/ws")
            await next_frame(ws)
            status, _, body = http_request(port, "GET", "/capacity")
            await ws.close()
            return welcome["type"], status, json.loads(body)["free"]
        for port in ports:
            assert http_request(port, "GET", "/healthz")[0] == 200
            assert http_request(port, "GET", "/capacity")[0] == 200
            assert asyncio.run(fill(port)) == ("welcome", 503, 0)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        for port in ports:                             # the workers went with it
            with pytest.raises(OSError):
                http_request(port, "GET", "/healthz")
    finally:
        if proc.poll() is None:
            proc.kill()


def free_ports(n: int) -> int:
    """A port P such that P .. P+n-1 are free now."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n > 65535:
            continue
        try:
            socks = [socket.create_server(("127.0.0.1", base + i)) for i in range(n)]
        except OSError:
            continue
        for s in socks:
            s.close()
        return base
    raise RuntimeError("no run of free ports")


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy absent (apt install haproxy)")
def test_haproxy_sends_new_sessions_to_the_worker_with_room(avatar):
    """deploy/haproxy.cfg in front of two workers of one session each: the first two sessions through the
    balancer land on different workers (the full one's /capacity turns 503), the third gets 503."""
    from websockets.exceptions import InvalidStatus
    base = free_ports(3)
    proc = serve(avatar, base)
    env = {**os.environ, "AA_BIND": f"127.0.0.1:{base + 2}", "AA_W0": f"127.0.0.1:{base}",
           "AA_W1": f"127.0.0.1:{base + 1}"}
    lb = None
    try:
        assert [proc.stdout.readline() for _ in range(3)][-1].strip() == "serving 2 workers"
        lb = subprocess.Popen(["haproxy", "-db", "-f", str(ROOT / "deploy" / "haproxy.cfg")], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.5)                                      # its first health checks

        async def run():
            url = f"ws://127.0.0.1:{base + 2}/ws"
            a, _ = await hello(url)
            await next_frame(a)
            await asyncio.sleep(1.5)                         # the full worker is marked down
            b, _ = await hello(url)
            await next_frame(b)
            sessions = [json.loads(http_request(p, "GET", "/health")[2])["sessions"] for p in (base, base + 1)]
            await asyncio.sleep(1.5)
            with pytest.raises(InvalidStatus) as refused:
                await hello(url)
            await a.close()
            await b.close()
            return sessions, refused.value.response.status_code
        assert asyncio.run(run()) == ([1, 1], 503)
    finally:
        if lb is not None:
            lb.terminate()
            lb.wait(10)
        proc.terminate()
        proc.wait(30)
