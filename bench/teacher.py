"""A teacher on the bundled photo and speech against issue 6's bars, one JSON line: generation time for the
clip, lip-sync of its frames (mediapipe mouth opening vs the audio RMS envelope, engine.lipsync), and identity
(dlib face descriptor of every 10th frame vs the photo, engine.identity; "skipped" without dlib).

Usage: python bench/teacher.py [--teacher procedural] [--photo assets/astronaut.png] [--audio assets/speech.wav]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    from PIL import Image

    from distill.teachers import make_teacher
    from engine import identity
    from engine.audio import frame_rms, load_audio
    from engine.lipsync import mouth_opening, sync_score

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default="procedural")
    ap.add_argument("--photo", default=str(ROOT / "assets" / "astronaut.png"))
    ap.add_argument("--audio", default=str(ROOT / "assets" / "speech.wav"))
    args = ap.parse_args()
    image = np.asarray(Image.open(args.photo).convert("RGB"))
    wave = load_audio(args.audio)
    teacher = make_teacher(args.teacher)
    t0 = time.perf_counter()
    frames = teacher.generate(image, wave)
    wall = time.perf_counter() - t0
    sync = sync_score(mouth_opening(list(frames)), frame_rms(wave).numpy()[: len(frames)], 5)
    out = {"teacher": args.teacher, "frames": int(frames.shape[0]), "size": list(frames.shape[1:3]),
           "audio_s": round(wave.shape[0] / 16000, 2), "generate_s": round(wall, 2),
           "lipsync_peak_r": round(sync["peak_r"], 3), "lipsync_lag_frames": sync["lag_frames"]}
    if identity.available():
        ref = identity.embedding(np.asarray(Image.fromarray(image).resize(frames.shape[2:0:-1])))
        scores = [identity.similarity(ref, e) if (e := identity.embedding(f)) is not None else None
                  for f in frames[::10]]
        found = [s for s in scores if s is not None]
        out.update({"identity_frames": len(scores), "identity_face_found": len(found),
                    "identity_cosine_min": round(min(s["cosine"] for s in found), 4),
                    "identity_cosine_mean": round(float(np.mean([s["cosine"] for s in found])), 4),
                    "identity_l2_max": round(max(s["l2"] for s in found), 4)})
    else:
        out["identity"] = "skipped: dlib-bin and face_recognition_models are not installed"
    print(json.dumps(out))


if __name__ == "__main__":
    main()
