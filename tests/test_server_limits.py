"""viewer/server.py under load and abuse: the session cap under simultaneous hellos, DNS rebinding (Host), HTTP
statuses (405, 414, 400, /health), the warm-up state, bad values that must stay non-fatal, bounded audio ahead,
catching up after falling behind, a client that stops reading, and the pacing pieces (earliest-deadline render
slot, event-loop freeze watch). Timings belong to bench/server_abuse.py; nothing here asserts a speed."""
# ruff: noqa: F811  (pytest injects the imported `avatar` fixture by parameter name)
import asyncio
import http.client
import json
import socket
import time

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

pytest.importorskip("mediapipe", reason="mediapipe is installed by scripts/setup.sh")
from test_server import Running, avatar, hello, next_frame, next_json  # noqa: E402,F401  (avatar: a fixture)
from viewer.client import ws_url  # noqa: E402
from viewer.pacing import LoopWatch, RenderSlots  # noqa: E402
from viewer.protocol import pack_audio  # noqa: E402
from viewer.server import AvatarServer, ServerConfig, Session  # noqa: E402
from viewer.web import allowed_hosts, host_ok  # noqa: E402
from warming_server import warming_server  # noqa: E402


@pytest.fixture(scope="module")
def server(avatar):
    s = Running(avatar, max_sessions=8)
    yield s
    s.close()


def http_request(port, method, path, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, headers=headers or {})
    r = conn.getresponse()
    out = r.status, dict(r.getheaders()), r.read()
    conn.close()
    return out


UPGRADE = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
           "Sec-WebSocket-Version": "13"}


def test_cap_is_counted_from_connect_so_simultaneous_hellos_cannot_overshoot(avatar):
    s = Running(avatar, max_sessions=4)
    try:
        async def one(ws):
            try:
                await ws.send(json.dumps({"type": "hello", "version": 1}))
                reply = json.loads(await ws.recv())
                return reply["type"]
            except ConnectionClosed as e:
                return e.rcvd.code if e.rcvd else None

        async def run():
            sockets = [await connect(s.url) for _ in range(8)]          # all connected before anyone says hello
            results = await asyncio.gather(*(one(ws) for ws in sockets))
            live = len(s.server.sessions)
            for ws in sockets:
                await ws.close()
            return results, live
        results, live = asyncio.run(run())
        assert results.count("welcome") == 4 and results.count(1013) == 4, results
        assert live == 4
    finally:
        s.close()


def test_dns_rebinding_host_gets_403_before_the_upgrade(server):
    port = server.server.port
    evil = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
    status, _, body = http_request(port, "GET", "/ws", {**UPGRADE, **evil})
    assert status == 403 and b"host name" in body
    assert http_request(port, "GET", "/", {"Host": f"evil.example:{port}"})[0] == 403    # the page too
    assert http_request(port, "GET", "/health", {"Host": f"127.0.0.1.nip.io:{port}"})[0] == 403
    # the names of this server pass, with or without a port, in any case, with a trailing dot
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", f"[::1]:{port}", "localhost.",
                 f"app.localhost:{port}"):
        assert http_request(port, "GET", "/", {"Host": host})[0] == 200, host
    # a same-origin browser on a good name upgrades; a foreign Origin on a good Host does not
    status, _, _ = http_request(port, "GET", "/ws", {**UPGRADE, "Host": f"localhost:{port}",
                                                     "Origin": f"http://localhost:{port}"})
    assert status == 101

    async def foreign_origin():
        with pytest.raises(InvalidStatus) as refused:
            await connect(server.url, origin="http://evil.example")
        return refused.value.response.status_code
    assert asyncio.run(foreign_origin()) == 403


def test_host_rules_for_other_binds_and_allowed_origins():
    names = allowed_hosts("127.0.0.1", ["http://avatar.example:8080"])
    assert host_ok("avatar.example:8080", "127.0.0.1", names)
    assert not host_ok("evil.example", "127.0.0.1", names)
    assert not host_ok("192.168.1.5:8765", "127.0.0.1", names)          # loopback bind: not a LAN address
    assert not host_ok("bad host:x", "127.0.0.1", names) and not host_ok("", "127.0.0.1", names)
    wild = allowed_hosts("0.0.0.0", [])
    assert host_ok("192.168.1.5:8765", "0.0.0.0", wild) and host_ok("[fe80::1]:8765", "0.0.0.0", wild)
    assert host_ok(socket.gethostname(), "0.0.0.0", wild)
    assert not host_ok("evil.example:8765", "0.0.0.0", wild)
    lan = allowed_hosts("10.0.0.7", [])
    assert host_ok("10.0.0.7:8765", "10.0.0.7", lan) and not host_ok("10.0.0.8", "10.0.0.7", lan)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "BREW"])
def test_methods_other_than_get_and_head_get_405(server, method):
    status, headers, _ = http_request(server.server.port, method, "/")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    assert http_request(server.server.port, method, "/ws", UPGRADE)[0] == 405


def test_head_long_urls_missing_host_and_health(server):
    port = server.server.port
    status, headers, body = http_request(port, "HEAD", "/")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 100
    for length in (3000, 8000):
        assert http_request(port, "GET", "/" + "a" * length)[0] == 414
    assert http_request(port, "GET", "/" + "a" * 300)[0] == 404                 # long but legal: not found
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:     # HTTP/1.0, no Host header
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400")
    status, _, body = http_request(port, "GET", "/health")
    assert status == 200 and json.loads(body)["status"] == "ready" and json.loads(body)["max_sessions"] == 8


def test_capacity_says_when_the_worker_is_full(avatar):
    """/capacity: 200 with the free slots while there is room, 503 once every session slot is taken."""
    s = Running(avatar, max_sessions=2)
    port = s.server.port

    async def run():
        status, _, body = http_request(port, "GET", "/capacity")
        assert status == 200 and json.loads(body)["free"] == 2
        ws1, _ = await hello(s.url)
        status, _, body = http_request(port, "GET", "/capacity")
        assert status == 200 and json.loads(body)["free"] == 1 and json.loads(body)["sessions"] == 1
        ws2, _ = await hello(s.url)
        status, _, body = http_request(port, "GET", "/capacity")
        assert status == 503 and json.loads(body)["free"] == 0
        assert http_request(port, "GET", "/healthz")[0] == 200               # full, but healthy
        await ws1.close()
        await ws2.close()
    try:
        asyncio.run(run())
    finally:
        s.close()


def test_warming_up_answers_503_and_health_until_the_renderer_is_ready(avatar):
    with warming_server(avatar, hold_s=30) as (server, release, ready):
        port = server.port
        status, _, body = http_request(port, "GET", "/health")
        assert status == 200 and json.loads(body)["status"] == "warming" and not ready.is_set()
        assert http_request(port, "GET", "/healthz")[0] == 503               # a balancer keeps away ...
        status, _, body = http_request(port, "GET", "/capacity")
        assert status == 503 and json.loads(body)["free"] == 0                # ... and sends no session here
        status, headers, body = http_request(port, "GET", "/ws", UPGRADE)
        assert status == 503 and int(headers["Retry-After"]) > 0 and b"warming up" in body
        assert http_request(port, "GET", "/")[0] == 200                    # the page loads and says so
        release.set()
        assert ready.wait(60)
        assert json.loads(http_request(port, "GET", "/health")[2])["status"] == "ready"
        assert http_request(port, "GET", "/healthz")[0] == 200

        async def session():
            ws, welcome = await hello(f"ws://127.0.0.1:{port}/ws")
            await next_frame(ws)
            await ws.close()
            return welcome
        assert asyncio.run(session())["type"] == "welcome"


HUGE = "9" * 5000


@pytest.mark.parametrize("first, code", [
    ('{"type": "hello", "version": %s}' % HUGE, 1002),          # beyond Python's int digits: not valid JSON
    ('{"type": "hello", "version": %s}' % HUGE[:4000], 1002),   # parses; out of range
    ('{"type": "hello", "version": 1, "token": "%s"}' % ("x" * 5000), 1002),
])
def test_bad_hello_values_close_with_a_protocol_code_never_1011(server, first, code):
    async def run():
        ws = await connect(server.url)
        await ws.send(first)
        error = json.loads(await ws.recv())
        assert error["type"] == "error" and error["fatal"] and len(error["message"]) < 400
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        return closed.value.rcvd.code
    assert asyncio.run(run()) == code


BAD_VALUES = [
    '{"type": "camera", "yaw": 0, "zoom": 1e-300}', '{"type": "camera", "yaw": 0, "zoom": 1e300}',
    '{"type": "camera", "yaw": 0, "zoom": 0.01}', '{"type": "camera", "yaw": 0, "zoom": 11}',
    '{"type": "camera", "yaw": %s}' % HUGE[:400], '{"type": "camera", "yaw": -%s}' % HUGE[:4000],
    '{"type": "camera", "yaw": 0, "pitch": 1e308}', '{"type": "camera", "yaw": 1e7}',
    '{"type": "camera", "yaw": %s}' % HUGE, '{"type": %s}' % HUGE[:300],
    json.dumps({"type": "gesture", "text": "raise " * 2000}), json.dumps({"type": "gesture", "text": 5}),
    json.dumps({"type": "gesture", "text": "x" * 150}), json.dumps({"type": "hello", "version": 1}),
    json.dumps({"type": "marks", "alphabet": "viseme", "marks": [[0, 0.1, "open"]] * 5000}),
    json.dumps({"type": "marks", "alphabet": 3, "marks": []}),
    json.dumps({"type": "x" * 10000}),
]


def test_every_bad_value_gets_a_non_fatal_error_and_the_session_goes_on(server):
    async def run():
        ws, _ = await hello(server.url)
        for bad in BAD_VALUES:
            await ws.send(bad)
            reply = await next_json(ws)
            assert reply["type"] == "error" and not reply["fatal"] and len(reply["message"]) <= 300, (bad[:60], reply)
            await next_frame(ws)                                        # still streaming
        await ws.send(json.dumps({"type": "camera", "yaw": 30, "zoom": 0.1}))   # the edges of the range are fine
        await ws.send(json.dumps({"type": "camera", "yaw": 30, "zoom": 10}))
        await ws.send(json.dumps({"type": "stats"}))
        assert (await next_json(ws))["type"] == "stats"
        await ws.close()
    asyncio.run(run())


def test_audio_ahead_is_bounded_and_the_excess_dropped_with_an_error(avatar):
    s = Running(avatar, max_audio_ahead_s=1.0)
    try:
        async def run():
            ws, welcome = await hello(s.url)
            assert welcome["max_audio_ahead_s"] == 1.0
            tone = (np.sin(np.arange(48000) * 2 * np.pi * 200 / 16000) * 9000).astype(np.int16)   # 3 s
            await ws.send(pack_audio(tone, 16000, seq=3))
            error = await next_json(ws)
            assert error["type"] == "error" and not error["fatal"] and "dropped" in error["message"]
            speaking = 0
            t_end = time.perf_counter() + 4.0
            while time.perf_counter() < t_end:
                msg = await asyncio.wait_for(ws.recv(), 5)
                if isinstance(msg, bytes):
                    from viewer.protocol import unpack_frame
                    speaking += unpack_frame(msg)["speaking"]
            await ws.send(json.dumps({"type": "stats"}))
            stats = await next_json(ws)
            overran = [x.overran for x in s.server.sessions.values()]       # it now renders after the others
            await ws.close()
            return speaking, stats, overran
        speaking, stats, overran = asyncio.run(run())
        assert 1.9 <= stats["audio_dropped_s"] <= 2.1, stats        # 3 s sent, 1 s allowed ahead
        assert overran == [True]
        assert speaking <= 27                                        # ~1 s of speech frames, no more
    finally:
        s.close()


class Recorder:
    """A websocket stand-in that takes every message at once, or never (stalled)."""

    def __init__(self, stalled=False):
        self.stalled, self.messages = stalled, []

    async def send(self, message):
        if self.stalled:
            await asyncio.Event().wait()
        self.messages.append(message)


def run_session(avatar, seconds, setup, stalled=False, **cfg):
    async def run():
        server = AvatarServer(avatar, ServerConfig(port=0, size=64, motion="procedural", **cfg))
        session = Session(server, Recorder(stalled))
        setup(session)
        tasks = [asyncio.create_task(session.produce()), asyncio.create_task(session.send())]
        watch = asyncio.create_task(server.watch.run())
        done, _ = await asyncio.wait(tasks, timeout=seconds)
        session.closed = True
        for t in tasks + [watch]:
            t.cancel()
        await asyncio.gather(*tasks, watch, return_exceptions=True)
        server.slots.close()
        return session, [t.exception() for t in done]
    return asyncio.run(run())


def test_a_session_behind_real_time_drops_its_backlog_unrendered(avatar):
    """A stall left 4 s of speech due in the past: those frames are dropped without rendering and the next frame
    sent is one that is on time, instead of the whole backlog being rendered late."""
    from viewer.protocol import unpack_frame

    def setup(session):
        tone = (np.sin(np.arange(16000 * 6) * 2 * np.pi * 200 / 16000) * 9000).astype(np.int16)
        session._speech_queued(session.engine.push_audio(tone, 16000))
        session.clock0 = time.perf_counter() - 4.0                     # frame 100 is due now
    session, errors = run_session(avatar, 2.5, setup)
    frames = [unpack_frame(m) for m in session.ws.messages if isinstance(m, bytes)]
    speech = [f["index"] for f in frames if f["speaking"]]
    assert errors == [] and speech, errors
    assert session.skipped >= 90 and speech[0] >= 90, (session.skipped, speech[0])
    assert speech == list(range(speech[0], 150))                   # from there on, every frame was sent
    assert all(i not in session.arrivals for i in range(150))      # no bookkeeping left for any of them


def test_a_burst_is_rendered_no_sooner_than_render_ahead_s_before_it_is_due(avatar):
    """6 s of speech queued at once: frames come at real-time pace from 1 s ahead, never all at once, so a
    sender faster than real time cannot take more than its share of the renderer."""
    from viewer.protocol import unpack_frame

    def setup(session):
        tone = (np.sin(np.arange(16000 * 6) * 2 * np.pi * 200 / 16000) * 9000).astype(np.int16)
        session._speech_queued(session.engine.push_audio(tone, 16000))
    session, errors = run_session(avatar, 1.0, setup, render_ahead_s=1.0)
    frames = [unpack_frame(m) for m in session.ws.messages if isinstance(m, bytes)]
    assert errors == [] and frames and frames[-1]["index"] <= 2.0 * 25 + 2, frames[-1]["index"]
    assert session.skipped == 0 and session.engine.pending() >= 90


def test_a_session_that_sent_too_much_audio_renders_after_the_others(avatar):
    """Its audio cut for exceeding max_audio_ahead_s, a session asks for the render slot with its deadlines
    OVERRUN_PENALTY_S later, so well-behaved sessions due at the same time go first."""
    from viewer.session import OVERRUN_PENALTY_S
    asked = []

    def setup(session):
        slots = session.server.slots
        original = slots.run

        async def run(deadline, fn, *args):
            if fn == session._render_and_encode:
                asked.append(deadline - session.due(session.engine.index))
            return await original(deadline, fn, *args)
        slots.run = run                                                  # idle frames come as they fall due
        def overrun():
            session.overrun_at, session.overran = time.perf_counter(), True
        asyncio.get_running_loop().call_later(0.4, overrun)              # an overrun 0.4 s into the run

    run_session(avatar, 0.8, setup)
    assert asked and min(asked) > -0.05 and asked[0] < 0.05               # on time before the overrun ...
    assert max(asked) >= OVERRUN_PENALTY_S - 0.05                         # ... and penalized after it


def test_speech_arriving_during_an_idle_push_is_counted_and_timed(avatar):
    """Speech pushed while the producer is still pushing an idle frame (a slow push here) lands after it, and
    every frame is counted once: each speech frame sent carries its own latency, and no bookkeeping is left."""
    from viewer.protocol import unpack_frame

    def setup(session):
        engine, original = session.engine, session.engine.push_silence

        def slow_silence(seconds):
            time.sleep(0.15)
            return original(seconds)
        engine.push_silence = slow_silence
        tone = (np.sin(np.arange(640 * 10) * 2 * np.pi * 200 / 16000) * 9000).astype(np.int16)

        async def speak():
            for k in range(10):                                 # 10 chunks, each landing on a slow idle push
                await asyncio.sleep(0.3)
                await session._audio(pack_audio(tone[640 * k:640 * (k + 1)], 16000, k))
            await asyncio.sleep(0.5)
            async with session.feeding:                         # no push in flight: the books must balance
                counts.append((session.enqueued, await asyncio.to_thread(session.engine.frame_count),
                               dict(session.arrivals)))
        session.speaker = asyncio.create_task(speak())
    counts = []
    # max_behind_s: no catch-up drops (a loaded CI machine would otherwise drop late speech frames); this test is
    # about the bookkeeping, catching up has its own test
    session, errors = run_session(avatar, 7.0, setup, max_behind_s=5.0)
    frames = [unpack_frame(m) for m in session.ws.messages if isinstance(m, bytes)]
    speech = [f for f in frames if f["speaking"]]
    assert errors == [] and len(speech) == 10, (errors, len(speech))
    assert all(f["latency_us"] > 0 for f in speech)                     # each found its own arrival
    assert len(counts) == 1 and counts[0][0] == counts[0][1] and counts[0][2] == {}, counts


def test_a_client_that_stops_reading_costs_no_renders_and_is_closed(avatar):
    from viewer.session import ClientStalled
    renders = []

    def setup(session):
        session.engine.push_silence(4.0)
        original = session._render_and_encode
        session._render_and_encode = lambda: renders.append(1) or original()
    session, errors = run_session(avatar, 3.0, setup, stalled=True, send_queue=3, send_stall_s=2.0)
    assert len(errors) == 1 and isinstance(errors[0], ClientStalled)
    assert len(renders) <= 4 and len(session.outbox) <= 3 and session.sent == 0      # 1 in flight + 3 queued
    assert session.dropped >= 20                                                      # the rest went unrendered


def test_render_slots_go_earliest_deadline_first_and_survive_cancellation():
    async def run():
        slots, order = RenderSlots(), []
        await slots.acquire(0.0)

        async def waiter(name, deadline):
            await slots.acquire(deadline)
            order.append(name)
            slots.release()
        tasks = [asyncio.create_task(waiter(n, d)) for n, d in (("late", 3.0), ("first", 1.0), ("gone", 0.5),
                                                                ("second", 2.0))]
        await asyncio.sleep(0.01)
        tasks[2].cancel()                                                 # a waiter that gave up is skipped
        await asyncio.sleep(0.01)
        slots.release()
        await asyncio.gather(*tasks, return_exceptions=True)
        result = await slots.run(0.0, lambda: "ran")
        slots.close()
        return order, result, slots.busy
    order, result, busy = asyncio.run(run())
    assert order == ["first", "second", "late"] and result == "ran" and not busy


def test_loop_watch_sees_a_frozen_event_loop():
    async def run():
        watch = LoopWatch()
        task = asyncio.create_task(watch.run())
        await asyncio.sleep(0.1)
        t0 = time.perf_counter()
        time.sleep(0.4)                                                   # the loop runs nothing meanwhile
        t1 = time.perf_counter()
        await asyncio.sleep(0.1)
        task.cancel()
        return watch.frozen(t0, t1), watch.frozen(t1 + 0.01, time.perf_counter())
    during, after = asyncio.run(run())
    assert during > 0.3 and after == 0.0


def test_ws_url_takes_the_url_serve_prints():
    assert ws_url("http://127.0.0.1:8765/") == "ws://127.0.0.1:8765/ws"
    assert ws_url("https://host.example/") == "wss://host.example/ws"
    assert ws_url("ws://127.0.0.1:9/ws") == "ws://127.0.0.1:9/ws"
    assert ws_url("127.0.0.1:5000") == "ws://127.0.0.1:5000/ws"
    with pytest.raises(ValueError, match="as `audioavatar serve` prints it"):
        ws_url("ftp://x/")
