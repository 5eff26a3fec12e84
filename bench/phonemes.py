"""The phoneme-level check of issue 19: lips at /p b m/ vs open vowels, rounding, blinks and head motion of the
live AvatarEngine, measured from outside (mediapipe face mesh on the rendered frames) against an exact phoneme
timeline (espeak-ng's phoneme events, distill/phonemes.py). Figures and bars: bench/phoneme_metrics.py.

The split's clips are spoken back to back as one stream per motion source (about 33 s for the held-out split).
One JSON line per (motion source, clip), cut from that stream, then one summary line per motion source (all
clips pooled: bilabials and vowels pooled, blinks per 10 s over the whole stream, nose std over all its frames).

Usage: python bench/phonemes.py [--avatar DIR] [--motion procedural,learned,procedural+marks] [--size 256]
       [--split heldout] [--clips N] [--sheet docs/img/visemes_baseline.png]
Without --avatar the bundled photo is personalized first (about 30 s). The held-out sentences are for
measuring only: nobody tunes on them (tune on --split train).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import phoneme_metrics as pm  # noqa: E402
from bench._avatar import avatar_folder  # noqa: E402

# Dense in /p b m/ and rounded / spread vowels. HELD-OUT: the second half; never tune on it.
SENTENCES = [
    ("train", "Bob bought a big blue map for mom."),
    ("train", "Peter picked plump purple plums by the pool."),
    ("train", "Mary made me move my bike to the moon boat."),
    ("train", "We took two boots to the beach and ate cheese."),
    ("train", "Pam and Bob keep bees in a big brown box."),
    ("train", "Poor Paul played ball by the palm tree at noon."),
    ("heldout", "Maybe my mom brought the blue paper book home."),
    ("heldout", "Ben pulled a heavy rope up the steep bumpy slope."),
    ("heldout", "Please put the spoon back beside the green plate."),
    ("heldout", "Bobby saw a moose move past the maple barn."),
    ("heldout", "Sweet peas and ripe plums grow by my window."),
    ("heldout", "Pick up the map, Pam, we move at both ports."),
]
VOICES = [("en-us", 150, 50), ("en-gb", 175, 40), ("en-us+f3", 130, 65), ("en-gb+m3", 160, 55)]


def clips(split: str) -> list[dict]:
    """Each sentence of the split twice, with two (voice, rate, pitch) settings: [{id, text, voice, rate, pitch}]."""
    if split not in ("heldout", "train", "all"):
        raise ValueError(f"split: expected heldout, train or all, got {split!r}")
    out = []
    for i, (part, text) in enumerate(SENTENCES):
        if split in (part, "all"):
            for k in (i % 4, (i + 2) % 4):
                voice, rate, pitch = VOICES[k]
                out.append({"id": f"s{i:02d}-{voice}-{rate}-{pitch}", "split": part, "text": text,
                            "voice": voice, "rate": rate, "pitch": pitch})
    return out


def render_clip(engine, wave16: np.ndarray, marks=None) -> tuple[np.ndarray, list[np.ndarray]]:
    """Drive the engine with speech (16 kHz [S]) from a reset -> landmarks [T, 478, 3] (NaN rows: no face) and
    the frames, T x [H, W, 3] uint8. marks: espeak phoneme marks [(start_s, end_s, mnemonic)] of the speech,
    given to the engine (AvatarEngine.push_marks) as a TTS that knows its text would."""
    from engine.avatar.landmarks import face_mesh
    engine.reset()
    engine.push_audio(wave16, 16000)
    if marks:
        engine.push_marks(marks, "espeak")
    engine.end_audio()
    lms, images = [], []
    for frame in engine.frames():
        pts, _ = face_mesh(frame.image)
        lms.append(np.full((478, 3), np.nan) if pts is None else pts.numpy().astype(np.float64))
        images.append(frame.image)
    return np.stack(lms), images


def intervals(phonemes, cls: str) -> list[tuple[float, float]]:
    from distill.phonemes import phoneme_class
    return [(s, e) for s, e, p in phonemes if phoneme_class(p) == cls]


def clip_figures(m: dict, phonemes) -> dict:
    """The bar figures of one clip from its frame measures (pm.frame_measures) and phoneme timeline."""
    bil, opn = intervals(phonemes, "bilabial"), intervals(phonemes, "open")
    rnd, spr = intervals(phonemes, "rounded"), intervals(phonemes, "spread")
    frames = m["gap"].shape[0]
    blinks = pm.count_blinks(m["openness"])
    return {"frames": frames, "face_found": round(float(np.isfinite(m["gap"]).mean()), 3),
            "n_bilabial": len(bil), "n_open": len(opn), "n_rounded": len(rnd), "n_spread": len(spr),
            "closure_rate": pm.closure_rate(m["gap"], bil), "gap_ratio": pm.median_ratio(m["gap"], bil, opn),
            "width_ratio": pm.median_ratio(m["width"], rnd, spr), "blinks": blinks,
            "openness_min": float(np.nanmin(m["openness"]) / np.nanmedian(m["openness"])),   # blink: <= 0.3
            "blinks_per_10s": blinks / (frames / pm.FPS) * 10, "nose_std": pm.nose_std(m["nose"])}


def summary(source: str, done: list[tuple[dict, list]]) -> dict:
    """Pooled figures over all clips of a source: done = [(frame measures, phonemes)]."""
    closed, gaps_b, gaps_o, w_r, w_s, blinks, frames, noses = [], [], [], [], [], 0, 0, []
    for m, ph in done:
        closed += list(pm.closures(m["gap"], intervals(ph, "bilabial")))
        for cls, acc, key in (("bilabial", gaps_b, "gap"), ("open", gaps_o, "gap"),
                              ("rounded", w_r, "width"), ("spread", w_s, "width")):
            acc += [m[key][i] for i in (pm.middle_frame(s, e) for s, e in intervals(ph, cls)) if i < len(m[key])]
        blinks += pm.count_blinks(m["openness"])
        frames += m["gap"].shape[0]
        noses.append(m["nose"])
    ratio = lambda a, b: float(np.nanmedian(a) / np.nanmedian(b)) if a and b else math.nan  # noqa: E731
    fig = {"closure_rate": float(np.mean(closed)) if closed else math.nan, "gap_ratio": ratio(gaps_b, gaps_o),
           "width_ratio": ratio(w_r, w_s), "blinks_per_10s": blinks / (frames / pm.FPS) * 10,
           "nose_std": pm.nose_std(np.concatenate(noses))}
    lowest = min(float(np.nanmin(m["openness"]) / np.nanmedian(m["openness"])) for m, _ in done)
    return {"source": source, "summary": True, "clips": len(done), "seconds": round(frames / pm.FPS, 2),
            "n_bilabial": len(closed), "blinks": blinks, "openness_min": round(lowest, 3), **{k: round(v, 4) for k, v in fig.items()},
            "meets": {k: pm.meets(k, v) for k, v in fig.items()}}


def contact_sheet(path: Path, picks: list[tuple[str, str, np.ndarray, np.ndarray]], tile: int = 128) -> None:
    """A grid of mouth crops: picks = [(class, phoneme, image [H, W, 3], landmarks [478, 3])], one row a class."""
    from PIL import Image, ImageDraw
    rows = {}
    for cls, ph, img, lm in picks:
        rows.setdefault(cls, []).append((ph, img, lm))
    cols = max(len(r) for r in rows.values())
    sheet = Image.new("RGB", (cols * tile + 80, len(rows) * (tile + 14)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (cls, items) in enumerate(rows.items()):
        draw.text((4, r * (tile + 14) + tile // 2), cls, fill="black")
        for c, (ph, img, lm) in enumerate(items):
            unit = np.linalg.norm(lm[33, :2] - lm[263, :2])
            cx, cy = lm[[13, 14, 61, 291], :2].mean(axis=0)
            half = 0.5 * unit
            box = tuple(int(round(v)) for v in (cx - half, cy - half, cx + half, cy + half))
            crop = Image.fromarray(img).crop(box).resize((tile, tile), Image.BICUBIC)
            x, y = 80 + c * tile, r * (tile + 14)
            sheet.paste(crop, (x, y))
            draw.text((x + 2, y + tile), f"/{ph}/", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def run_source(avatar: str, source: str, todo: list[dict], size: int, sheet: Path | None, context: int = 0) -> None:
    """Render the split's clips back to back as ONE stream (no reset between them: blinks and head motion are
    measured over the whole 30-odd seconds, as a live session would show them), then cut it per clip."""
    import torch
    from distill.phonemes import synthesize
    from engine.audio.features import Resampler
    from engine.runtime import AvatarEngine, EngineConfig
    t0 = time.perf_counter()
    speeches, waves = [], []
    for clip in todo:
        sp = synthesize(clip["text"], clip["voice"], clip["rate"], clip["pitch"])
        speeches.append(sp)
        waves.append(Resampler(sp.sample_rate, 16000)(torch.from_numpy(sp.wave)).numpy())
    motion, _, with_marks = source.partition("+")
    if with_marks not in ("", "marks"):
        raise ValueError(f"--motion: expected SOURCE or SOURCE+marks, got {source!r}")
    engine = AvatarEngine(avatar, EngineConfig(width=size, height=size, motion=motion, context=context))
    marks, offset = [], 0
    for sp, wave in zip(speeches, waves):
        marks += [(a + offset / 16000, b + offset / 16000, p) for a, b, p in sp.phonemes]
        offset += wave.shape[0]
    lms, images = render_clip(engine, np.concatenate(waves), marks if with_marks else None)
    whole = pm.frame_measures(lms)
    done, picks, offset = [], [], 0
    for clip, sp, wave in zip(todo, speeches, waves):
        start, end = offset / 16000, (offset + wave.shape[0]) / 16000
        first, stop = math.floor(start * pm.FPS), min(math.floor(end * pm.FPS), lms.shape[0])
        shift = start - first / pm.FPS                         # clip time + shift = time from frame `first`
        phonemes = [(a + shift, b + shift, p) for a, b, p in sp.phonemes]
        m = {k: (v[first:stop] if k != "unit" else v) for k, v in whole.items()}
        done.append((m, phonemes))
        fig = clip_figures(m, phonemes)
        name = engine.motion_source + ("+marks" if with_marks else "")
        print(json.dumps({"source": name, **clip, "seconds": round(sp.seconds, 2),
                          "first_frame": first, **{k: round(v, 4) if isinstance(v, float) else v
                                                   for k, v in fig.items()}}), flush=True)
        if sheet is not None:
            for cls in ("bilabial", "open", "rounded", "spread"):
                for a, b, ph in [q for q in phonemes if phoneme_class_of(q[2]) == cls][:1]:
                    i = first + pm.middle_frame(a, b)
                    if sum(p[0] == cls for p in picks) < 4 and i < len(images) and np.isfinite(lms[i]).all():
                        picks.append((cls, ph, images[i], lms[i]))
        offset += wave.shape[0]
    out = summary(engine.motion_source + ("+marks" if with_marks else ""), done)
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out), flush=True)
    if sheet is not None and picks:
        contact_sheet(sheet, sorted(picks, key=lambda p: ["bilabial", "open", "rounded", "spread"].index(p[0])))


def phoneme_class_of(mnemonic: str) -> str | None:
    from distill.phonemes import phoneme_class
    return phoneme_class(mnemonic)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--avatar", help="avatar folder (default: personalize assets/astronaut.png into a temp folder)")
    ap.add_argument("--motion", default="procedural,learned",
                    help="comma-separated motion sources; SOURCE+marks also gives the engine espeak's phoneme marks")
    ap.add_argument("--size", type=int, default=256, help="rendered frame side in pixels")
    ap.add_argument("--split", default="heldout", choices=["heldout", "train", "all"])
    ap.add_argument("--clips", type=int, default=0, help="only the first N clips of the split (0: all)")
    ap.add_argument("--sheet", type=Path, help="write a contact sheet of mouth crops (learned motion) here")
    ap.add_argument("--context", type=int, default=0, help="learned: EngineConfig.context (0: the model's overlap)")
    args = ap.parse_args()
    if args.size < 64:
        ap.error(f"--size: expected >= 64 pixels, got {args.size}")
    todo = clips(args.split)[: args.clips or None]
    with avatar_folder(args.avatar) as avatar:
        for source in args.motion.split(","):
            run_source(avatar, source, todo, args.size, args.sheet if source == "learned" else None, args.context)


if __name__ == "__main__":
    main()
