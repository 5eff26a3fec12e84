"""Live text gestures on the engine (issue 9's bar), one JSON line per command: how far the command moves the
avatar's arm control particles in the rendered frames of the next window, against the same run without it.

Usage: python bench/gestures.py [--avatar DIR] [--size 512] [--motion procedural|learned] [--gesture-dir DIR]
                                [--out DIR]

Per command: the held-out clip (twice over) is pushed; 5 frames are taken; the command is given; every frame
is taken. Each right- and left-arm particle the avatar has (mediapipe pose 13..22 and the hand points) is
deformed by the frame's motion and projected by the engine's camera. `lift_px` is the largest upward move,
in pixels of the size x size frame, within the window (negative: it went down). Also reported: the frames
before the command and after the window unchanged (max |dy| in px), and command() wall time. With --out,
each command's frame at mid-window is written beside the same frame without it (OUT/<command>.png).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    from engine.audio.features import load_audio
    from engine.avatar.bundle import Avatar
    from engine.avatar.personalize import personalize
    from engine.runtime import AvatarEngine, EngineConfig
    from engine.motion.versa.commands import COMMANDS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--avatar")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--motion", default="procedural", choices=["procedural", "learned"])
    ap.add_argument("--gesture-dir", default="")
    ap.add_argument("--out", help="write OUT/<command>.png: the mid-window frame without and with the command")
    args = ap.parse_args()
    avatar = Avatar.from_pretrained(args.avatar) if args.avatar else personalize(ROOT / "assets" / "astronaut.png",
                                                                                   progress=False)
    clip = load_audio(ROOT / "assets" / "speech" / "heldout" / "heldout-01-en-029.flac")
    wave = torch.cat([clip, clip])
    arm = {side: [i for i, n in enumerate(avatar.particle_names)
                  if n in {f"pose:{j}" for j in (range(14, 23, 2) if side == "right" else range(13, 22, 2))}
                  or n.startswith(f"hand_{side}:")] for side in ("right", "left")}

    def run(command: str | None):
        engine = AvatarEngine(avatar, EngineConfig(width=args.size, height=args.size, motion=args.motion,
                                                   gesture_dir=args.gesture_dir))
        ys, images = [], []
        render = engine.render_motion

        def record(motion):
            p = avatar.particles + engine.view().to_world(motion)           # [P, 3] deformed particles
            cam = p @ engine.viewmat[:3, :3].T + engine.viewmat[:3, 3]
            ys.append((engine.K[1, 1] * cam[:, 1] / cam[:, 2] + engine.K[1, 2]).numpy())
            images.append(render(motion))
            return images[-1]
        engine.render_motion = record
        engine.push_audio(wave)
        engine.end_audio()
        for _ in range(5):
            engine.next_frame()
        start = 5 + len(engine._queue)
        t0 = time.perf_counter()
        window = engine.command(command) if command is not None else 0
        wall = time.perf_counter() - t0
        list(engine.frames())
        return np.stack(ys), start, window, wall, images

    base, start, _, _, base_images = run(None)
    for command in [c for c in COMMANDS if c]:
        ys, start2, window, wall, images = run(command)
        assert start2 == start
        if args.out:
            from PIL import Image
            Path(args.out).mkdir(parents=True, exist_ok=True)
            mid = start + window // 2
            Image.fromarray(np.concatenate([base_images[mid], images[mid]], 1)).save(
                Path(args.out) / f"{command.replace(' ', '_')}.png")
        up = base[start:start + window] - ys[start:start + window]             # [W, P] pixels up
        row = {"command": command, "size": args.size, "motion": args.motion, "window_frames": window,
               "command_ms": round(1e3 * wall, 1)}
        for side, idx in arm.items():
            names = [avatar.particle_names[i] for i in idx]
            row[f"{side}_arm_particles"] = names
            row[f"{side}_lift_px"] = round(float(up[:, idx].max()), 2) if idx else None
        row["unchanged_before_px"] = float(np.abs(base[:start] - ys[:start]).max())
        row["unchanged_after_px"] = float(np.abs(base[start + window:] - ys[start + window:]).max())
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
