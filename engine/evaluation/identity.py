"""Identity (CSIM-like): cosine between dlib's 128-d face descriptor of the reference photo and of every n-th
frame (engine.evaluation.dlib_face; dlib-bin and face_recognition_models are an optional extra). Reports mean and min over
the frames with a face, and the L2 distance (dlib's same-person threshold is L2 < 0.6)."""
from __future__ import annotations

import numpy as np
from tqdm import tqdm

from engine.evaluation import dlib_face as dlib_identity

SKIPPED = ("skipped: dlib-bin and face_recognition_models are not installed (scripts/setup.sh test, or "
           "pip install dlib-bin face_recognition_models 'setuptools<81', brings them)")


def identity_scores(frames: np.ndarray, reference: np.ndarray, stride: int = 5, progress: bool = False) -> dict:
    """frames [T, H, W, 3] uint8, reference photo [h, w, 3] uint8 -> scores and the per-frame series."""
    if not dlib_identity.available():
        return {"skipped": SKIPPED}
    ref = dlib_identity.embedding(np.ascontiguousarray(reference))
    if ref is None:
        return {"skipped": "no face found in the reference photo"}
    index = list(range(0, len(frames), stride))
    cosine, l2 = [], []
    for i in tqdm(index, desc="identity (dlib)", unit="frame", disable=not progress):
        e = dlib_identity.embedding(np.ascontiguousarray(frames[i]))
        s = dlib_identity.similarity(ref, e) if e is not None else {"cosine": None, "l2": None}
        cosine.append(s["cosine"])
        l2.append(s["l2"])
    found = [c for c in cosine if c is not None]
    out = {"frames": index, "cosine": cosine, "l2": l2, "face_found": len(found) / len(index)}
    if found:
        out.update(cosine_mean=float(np.mean(found)), cosine_min=float(min(found)),
                   l2_max=float(max(d for d in l2 if d is not None)))
    else:
        out["note"] = "no face found in any sampled frame"
    return out
