"""The live AvatarEngine against issue 4's bars, one JSON line per motion source (and one for lip-sync):

- realtime_factor: audio seconds per wall second for a whole stream pushed at once, 512x512 frames rendered;
- latency: the stream pushed in 40 ms chunks at real-time pace by one thread while another takes frames; the
  latency of frame i is when it was rendered minus when the chunk completing its audio was pushed (p50, p95,
  max, and the first frame's);
- peak RSS of a process running one such session (each source runs in a fresh subprocess);
- lip-sync (each source): mediapipe's mouth opening on the rendered frames vs the audio RMS envelope
  (engine.evaluation.lipsync): peak correlation and its lag.

Usage: python bench/avatar_engine.py [--avatar DIR] [--seconds 30] [--sources procedural,learned] [--no-lipsync]
       [--lipsync-audio a.wav,b.wav] [--context 4]
Without --avatar the bundled photo is personalized first (about 30 s). --context: the learned motion's known
frames per DiT window (EngineConfig.context; 0 = the model's 8); the default 4 is what `audioavatar serve` runs
live (--motion-context, docs/scaling.md: the same lip figures as 8, 16% less motion cost).
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.threads import configure_threads  # noqa: E402

configure_threads(None)        # the CLI's thread count and wait policy, set before torch is imported (engine/threads.py)
from _avatar import avatar_folder  # noqa: E402
from _speech import speech  # noqa: E402


CONTEXT = 4                    # --context


def make_engine(avatar: str, source: str):
    from engine.runtime import AvatarEngine, EngineConfig
    return AvatarEngine(avatar, EngineConfig(width=512, height=512, motion=source, steps=4,    # learned: bundled
                                             context=CONTEXT))


def realtime_factor(avatar: str, source: str, wave: np.ndarray) -> dict:
    engine = make_engine(avatar, source)
    engine.push_silence(0.2)
    list(engine.frames())                      # warm-up: extension load, first allocations
    t0 = time.perf_counter()
    engine.push_audio(wave, 16000)
    engine.end_audio()
    times, last = [], time.perf_counter()
    for _ in engine.frames():
        now = time.perf_counter()
        times.append(now - last)
        last = now
    wall = time.perf_counter() - t0
    return {"realtime_factor": round(wave.shape[0] / 16000 / wall, 3), "frames": len(times),
            "median_frame_ms": round(1e3 * statistics.median(times), 2)}


def latency(avatar: str, source: str, wave: np.ndarray) -> dict:
    engine = make_engine(avatar, source)
    engine.push_silence(0.2)
    list(engine.frames())
    base = engine.index
    pushed: list[float] = []
    done = threading.Event()

    def produce():
        start = time.perf_counter()
        for i in range(0, wave.shape[0] - 639, 640):
            target = start + (i // 640) * 0.04
            time.sleep(max(0.0, target - time.perf_counter()))
            engine.push_audio(wave[i:i + 640], 16000)
            pushed.append(time.perf_counter())
        done.set()

    producer = threading.Thread(target=produce)
    producer.start()
    lat = []
    while not (done.is_set() and engine.pending() == 0):
        frame = engine.next_frame()
        if frame is None:
            engine._wake.wait(0.005)
            continue
        lat.append(time.perf_counter() - pushed[frame.index - base])
    producer.join()
    lat_ms = np.asarray(lat) * 1e3
    return {"latency_first_ms": round(float(lat_ms[0]), 1), "latency_p50_ms": round(float(np.median(lat_ms)), 1),
            "latency_p95_ms": round(float(np.percentile(lat_ms, 95)), 1), "latency_max_ms": round(float(lat_ms.max()), 1),
            "latency_frames": int(lat_ms.shape[0])}


def worker(avatar: str, source: str, seconds: float) -> None:
    import torch
    wave = speech(seconds)
    out = {"source": source, "size": [512, 512], "audio_s": seconds, "threads": torch.get_num_threads(),
           "context": CONTEXT if source == "learned" else None}
    out.update(realtime_factor(avatar, source, wave))
    out.update(latency(avatar, source, wave))
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(out))


def recordings(paths: str) -> np.ndarray:
    """Audio files (comma-separated) at 16 kHz, back to back with 0.3 s of silence between: [S]."""
    from engine.audio.features import load_audio
    gap = np.zeros(int(0.3 * 16000), np.float32)
    return np.concatenate([part for p in paths.split(",") for part in (load_audio(p).numpy(), gap)])


def lipsync(avatar: str, source: str, audio: str = "") -> dict:
    from engine.audio.features import frame_rms
    from engine.evaluation.lipsync import mouth_opening, sync_score
    import torch
    wave = recordings(audio) if audio else speech(10.0)
    engine = make_engine(avatar, source)
    engine.push_audio(wave, 16000)
    frames = [f.image for f in engine.frames()]
    opening = mouth_opening(frames)
    envelope = frame_rms(torch.from_numpy(wave)).numpy()[: len(frames)]
    return {"source": source, "metric": "mouth opening (mediapipe face mesh) vs audio RMS",
            "audio": audio or "assets/speech.wav", "seconds": round(wave.shape[0] / 16000, 2),
            **{k: round(v, 3) if isinstance(v, float) else v for k, v in sync_score(opening, envelope, 5).items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--avatar")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--sources", default="procedural,learned")
    ap.add_argument("--no-lipsync", action="store_true")
    ap.add_argument("--lipsync-audio", default="", help="comma-separated audio files for the lip-sync line "
                    "(e.g. real recordings); default 10 s of assets/speech.wav")
    ap.add_argument("--context", type=int, default=4, help="learned: known frames per DiT window (0: the model's 8)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    global CONTEXT
    CONTEXT = args.context
    if args.worker:
        return worker(args.avatar, args.worker, args.seconds)
    with avatar_folder(args.avatar) as avatar:
        for source in args.sources.split(","):
            subprocess.run([sys.executable, __file__, "--worker", source, "--avatar", avatar,
                            "--seconds", str(args.seconds), "--context", str(args.context)], check=True)
        if not args.no_lipsync:
            for source in args.sources.split(","):
                print(json.dumps(lipsync(avatar, source, args.lipsync_audio)))


if __name__ == "__main__":
    main()
