"""A teacher on the bundled photo and speech against issue 6's bars, one JSON line: generation time for the
clip, lip-sync of its frames (mediapipe mouth opening vs the audio RMS envelope, engine.evaluation.lipsync), and identity
(dlib face descriptor of every 10th frame vs the photo, engine.evaluation.dlib_face; "skipped" without dlib).

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
    from engine.audio.features import frame_rms, load_audio
    from engine.evaluation.identity import identity_scores
    from engine.evaluation.lipsync import mouth_opening, sync_score

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
    ref = np.asarray(Image.fromarray(image).resize(frames.shape[2:0:-1]))
    idn = identity_scores(frames, ref, stride=10)
    if "cosine_min" not in idn:                          # dlib absent, or no face found
        out["identity"] = idn.get("skipped") or idn["note"]
    else:
        out.update({"identity_frames": len(idn["frames"]), "identity_face_found": round(idn["face_found"], 3),
                    "identity_cosine_min": round(idn["cosine_min"], 4),
                    "identity_cosine_mean": round(idn["cosine_mean"], 4), "identity_l2_max": round(idn["l2_max"], 4)})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
