"""Full-body photos and articulated arms (issue 18's bar), one JSON line: on an avatar made from a photo,
- how many Gaussians it has, and its crop of the photo;
- which leg and foot joints (mediapipe pose 23..32) mediapipe pose finds on the avatar's front render;
- "raise right hand": on the rendered frame of the window's peak, the right wrist's (pose 16) and right
  shoulder's (pose 12) image y (the wrist must be above: a smaller y), and how far the left arm moved against
  the same frame without the command: the left-arm control particles (pose 11, 13, 15, 17, 19, 21 and the left
  hand), projected, and mediapipe's left elbow and wrist (pose 13, 15) on the two renders, in pixels.

Usage: python bench/body.py --photo PHOTO [--avatar DIR (load it instead of personalizing)] [--save DIR]
                            [--out DIR (front.png, side.png, raise_right_hand.png: without | with)]

The engine runs its procedural motion over silence; the command is given after 5 frames. Images are rendered
through the photo camera at the photo crop's size (side: the engine's orbit, yaw 90 degrees).
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

LEGS = tuple(range(23, 33))


def pose_on(image: np.ndarray):
    """mediapipe pose (complexity 1, still image) on uint8 [H, W, 3] -> [33, 4] (x, y px, z, visibility) or None."""
    from engine.avatar.landmarks import mediapipe_module, quiet_native_logs
    mp = mediapipe_module()
    h, w = image.shape[:2]
    with quiet_native_logs(), mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1) as model:
        res = model.process(np.ascontiguousarray(image)).pose_landmarks
    if res is None:
        return None
    return np.array([[p.x * w, p.y * h, p.z, p.visibility] for p in res.landmark])


def seen(pose, joints, w: int, h: int) -> list[int]:
    """The joints mediapipe places inside the frame with visibility > 0.5."""
    if pose is None:
        return []
    return [j for j in joints if pose[j, 3] > 0.5 and 0 <= pose[j, 0] < w and 0 <= pose[j, 1] < h]


def main() -> None:
    from engine.avatar.bundle import Avatar
    from engine.avatar.particles import canonical_names
    from engine.avatar.personalize import personalize
    from engine.runtime import AvatarEngine, EngineConfig

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photo")
    ap.add_argument("--avatar")
    ap.add_argument("--save")
    ap.add_argument("--out")
    ap.add_argument("--command", default="raise right hand")
    args = ap.parse_args()
    if not (args.photo or args.avatar):
        ap.error("give --photo or --avatar")
    t0 = time.perf_counter()
    avatar = Avatar.from_pretrained(args.avatar) if args.avatar else personalize(args.photo, progress=False)
    wall = time.perf_counter() - t0
    if args.save:
        avatar.save_pretrained(args.save)
    W, H = (v + v % 2 for v in (avatar.camera.width, avatar.camera.height))     # the engine wants even sizes
    out = Path(args.out) if args.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    def engine() -> AvatarEngine:
        return AvatarEngine(avatar, EngineConfig(width=W, height=H, motion="procedural"))

    rest = engine()
    zero = torch.zeros(len(canonical_names()), 3)
    front = rest.render_motion(zero)
    front_pose = pose_on(front)
    rest.set_orbit(90.0)
    side = rest.render_motion(zero)
    if out:
        Image.fromarray(front).save(out / "front.png")
        Image.fromarray(side).save(out / "side.png")

    left_arm = [i for i, n in enumerate(avatar.particle_names)
                if n in {f"pose:{j}" for j in (11, 13, 15, 17, 19, 21)} or n.startswith("hand_left:")]

    def run(command: str | None):
        e = engine()
        frames, xy = [], []
        render = e.render_motion

        def record(motion):
            p = avatar.particles + e.view().to_world(motion)
            cam = p @ e.viewmat[:3, :3].T + e.viewmat[:3, 3]
            xy.append(torch.stack([e.K[0, 0] * cam[:, 0] / cam[:, 2] + e.K[0, 2],
                                   e.K[1, 1] * cam[:, 1] / cam[:, 2] + e.K[1, 2]], -1).numpy())
            frames.append(render(motion))
            return frames[-1]
        e.render_motion = record
        e.push_silence(4.0)
        e.end_audio()
        for _ in range(5):
            e.next_frame()
        start = 5 + len(e._queue)
        window = e.command(command) if command else 0
        list(e.frames())
        return frames, np.stack(xy), start, window

    base_frames, base_xy, start, _ = run(None)
    frames, xy, start2, window = run(args.command)
    assert start2 == start
    names = avatar.particle_names
    wrist = names.index("pose:16") if "pose:16" in names else None
    if wrist is not None:          # the peak: the frame where the right wrist particle is highest
        peak = start + int(np.argmin(xy[start:start + window, wrist, 1]))
    else:
        peak = start + window // 2
    raised, plain = frames[peak], base_frames[peak]
    if out:
        Image.fromarray(np.concatenate([plain, raised], 1)).save(out / f"{args.command.replace(' ', '_')}.png")
    p_raised, p_plain = pose_on(raised), pose_on(plain)
    row = {"photo": avatar.meta.get("photo"), "gaussians": len(avatar.gaussians), "size": [W, H],
           "crop": avatar.meta.get("crop"), "personalize_s": round(wall, 1),
           "legs_on_front_render": seen(front_pose, LEGS, W, H),
           "feet_on_front_render": seen(front_pose, range(27, 33), W, H),
           "command": args.command, "peak_frame": peak - start, "window": window}
    if p_raised is not None:
        row["render_right_wrist_y"] = round(float(p_raised[16, 1]), 1)
        row["render_right_shoulder_y"] = round(float(p_raised[12, 1]), 1)
        row["render_wrist_above_shoulder"] = bool(p_raised[16, 1] < p_raised[12, 1])
        row["render_right_wrist_visibility"] = round(float(p_raised[16, 3]), 2)
    if p_raised is not None and p_plain is not None:
        row["render_left_elbow_wrist_moved_px"] = [round(float(np.linalg.norm(p_raised[j, :2] - p_plain[j, :2])), 1)
                                                   for j in (13, 15)]
    if wrist is not None:
        row["particle_right_wrist_lift_px"] = round(float(base_xy[peak, wrist, 1] - xy[peak, wrist, 1]), 1)
    row["particle_left_arm_moved_px"] = (round(float(np.linalg.norm(xy[:, left_arm] - base_xy[:, left_arm], axis=-1)
                                                     .max()), 3) if left_arm else None)
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
