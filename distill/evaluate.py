"""Held-out evaluation of a distilled model, and the sample videos the trainer writes.

For each held-out clip (voices and sentences never trained on, distill/data.py):
    motion      learned: audio encoder -> MotionDiT (engine.motion.dit.generate, DDIM, windows as offline engine)
                -> refiner (frame index t); or engine.motion.procedural (the rule-based baseline) for comparison
    frames      the avatar from the photo camera at the teacher's frame size (distill/view.py), on white
    lip sync    mediapipe's mouth opening of the rendered frames vs the audio's RMS envelope, Pearson r at the
                best lag in +-10 frames (engine/evaluation/lipsync.py; issue 4 uses the same measure)
    fidelity    PSNR and SSIM (engine/render/metrics.py) of the rendered frames vs the teacher's frames, inside the
                person's mask of the reference (mediapipe segmentation; issue 3 measures the same way): the
                person, not the photo's background, which the avatar does not have
Clip scores are averaged over the clips (lip sync over all frames concatenated, so short clips count by length).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from engine.audio.features import frame_rms
from engine.evaluation.lipsync import mouth_opening, sync_score
from engine.motion.dit import generate
from engine.motion.procedural import ProceduralMotion
from engine.render.metrics import psnr, ssim
from engine.render.video import Mp4Writer


@torch.no_grad()
def learned_motion(encoder, dit, refiner, mel: Tensor, steps: int = 4, seed: int = 0,
                   use_refiner: bool = True, guidance: float = 1.0) -> Tensor:
    """mel [T, 80] -> canonical motion [T, K_c, 3] (face units), as the live engine makes it."""
    feats = encoder(mel)
    motion = generate(dit, feats, steps=steps, seed=seed, guidance=guidance)
    if not use_refiner:
        return motion
    t = torch.arange(mel.shape[0])[None]
    return refiner(motion[None], feats[None], t)[0]


def procedural_motion(avatar, mel: Tensor, rms: Tensor, seed: int = 0) -> Tensor:
    return ProceduralMotion.for_avatar(avatar, seed=seed)(mel, rms)


@torch.no_grad()
def render_motion(view, decoder, motion: Tensor, batch: int = 8) -> np.ndarray:
    """canonical motion [T, K_c, 3] -> frames [T, H, W, 3] uint8 at the teacher's size."""
    out = []
    world = view.to_world(motion)
    for i in range(0, world.shape[0], batch):
        rgb = view.render(decoder, world[i:i + batch])["rgb"]
        out.append(rgb.clamp(0, 1).mul(255).add(0.5).to(torch.uint8).numpy())
    return np.concatenate(out) if out else np.zeros((0, view.H, view.W, 3), np.uint8)


def fidelity(frames: np.ndarray, teacher: np.ndarray, mask: Tensor) -> tuple[float, float]:
    """Mean PSNR, SSIM over frames [T, H, W, 3] uint8 vs teacher [T, H, W, 3] inside mask [H, W]."""
    p, s = [], []
    for a, b in zip(frames, teacher):
        A, B = torch.from_numpy(a).float() / 255, torch.from_numpy(np.array(b)).float() / 255
        p.append(psnr(A, B, mask))
        s.append(ssim(A, B, mask))
    return float(np.mean(p)), float(np.mean(s))


def score_clips(clips: list[dict], mask: Tensor) -> dict:
    """clips: [{"frames", "teacher", "audio"}] -> {"sync": sync_score over all clips, "psnr", "ssim"}."""
    opening, envelope, psnrs, ssims, lengths = [], [], [], [], []
    for c in clips:
        T = c["frames"].shape[0]
        opening.append(mouth_opening(c["frames"]))
        envelope.append(frame_rms(c["audio"])[:T].numpy())
        # a gap of NaNs between clips keeps lags from pairing frames across clip boundaries
        opening.append(np.full(10, math.nan))
        envelope.append(np.full(10, math.nan))
        p, s = fidelity(c["frames"], c["teacher"], mask)
        psnrs.append(p)
        ssims.append(s)
        lengths.append(T)
    w = np.asarray(lengths, np.float64) / max(sum(lengths), 1)
    return {"sync": sync_score(np.concatenate(opening), np.concatenate(envelope)),
            "psnr": float((np.asarray(psnrs) * w).sum()), "ssim": float((np.asarray(ssims) * w).sum()),
            "frames": int(sum(lengths))}


def side_by_side(path, rendered: np.ndarray, teacher: np.ndarray, audio: Tensor) -> None:
    """An mp4 of the rendered frames (left) next to the teacher's (right), with the clip's audio."""
    T = min(len(rendered), len(teacher))
    both = np.concatenate([rendered[:T], np.asarray(teacher[:T])], axis=2)
    H, W = both.shape[1:3]
    with Mp4Writer(path, W + W % 2, H + H % 2, 25, audio=(audio.numpy(), 16000)) as writer:
        for f in both:
            writer.write(np.pad(f, ((0, H % 2), (0, W % 2), (0, 0)), mode="edge"))
