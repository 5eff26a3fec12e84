"""Every measure on one clip -> one dict (what report.json holds). Measures that cannot run here say why
("skipped") instead of failing the whole evaluation."""
from __future__ import annotations

import time

import numpy as np
import torch

from .clip import Clip
from .config import EvalConfig


def evaluate(clip: Clip, wave: torch.Tensor, reference: np.ndarray | None = None,
             teacher: np.ndarray | None = None, cfg: EvalConfig = EvalConfig(), progress: bool = True) -> dict:
    """clip, its speech wave [S] (16 kHz), optional reference photo [h, w, 3] uint8 and teacher frames
    [T', h', w', 3] uint8 -> {"clip": ..., "lipsync": ..., "identity": ..., "hands": ..., "fidelity": ...,
    "piqe": ..., "temporal": ..., "seconds": {measure: wall time}}."""
    from . import fidelity, hands, identity, sync, temporal

    frames = clip.frames
    out = {"clip": {"source": clip.source, "frames": len(frames), "fps": clip.fps, "width": frames.shape[2],
                    "height": frames.shape[1], "seconds": round(clip.seconds, 3),
                    "audio_seconds": round(wave.shape[0] / 16000, 3)}}
    timing = {}

    def timed(name, fn):
        t0 = time.perf_counter()
        out[name] = fn()
        timing[name] = round(time.perf_counter() - t0, 2)

    timed("lipsync", lambda: sync.lip_sync(frames, wave, clip.fps, cfg.max_lag, progress))
    timed("identity", lambda: identity.identity_scores(frames, reference, cfg.identity_stride, progress)
          if reference is not None else {"skipped": "no --reference photo given"})
    timed("hands", lambda: hands.hand_scores(frames, cfg.hands_stride, progress))
    timed("fidelity", lambda: fidelity.against_teacher(frames, teacher, progress=progress)
          if teacher is not None else {"skipped": "no --teacher video given"})
    timed("piqe", lambda: fidelity.piqe_scores(frames, cfg.piqe_stride, progress))
    timed("temporal", lambda: temporal.flicker(frames, cfg.flicker_threshold, cfg.flicker_dilate))
    out["seconds"] = timing
    return out


def summary(result: dict) -> dict:
    """The headline numbers of an evaluate() result, flat (None where a measure was skipped)."""
    ls, idn, hd, fi, pq, tm = (result.get(k, {}) for k in ("lipsync", "identity", "hands", "fidelity", "piqe",
                                                            "temporal"))
    return {"sync_peak_r": ls.get("peak_r"), "sync_lag_frames": ls.get("lag_frames"), "sync_r_at_0": ls.get("r_at_0"),
            "face_found": ls.get("face_found"), "identity_cosine_mean": idn.get("cosine_mean"),
            "identity_cosine_min": idn.get("cosine_min"), "hand_detection_rate": hd.get("detection_rate"),
            "hand_confidence": hd.get("confidence"), "hand_spread": hd.get("spread"), "psnr": fi.get("psnr"),
            "ssim": fi.get("ssim"), "ms_ssim": fi.get("ms_ssim"), "piqe": pq.get("mean"),
            "flicker": tm.get("flicker")}
