"""Face identity with an embedding nobody on this project wrote: dlib's 128-d ResNet face descriptor
(dlib-bin), with the model files that the face_recognition_models package ships (HOG face detector, 68-point
shape predictor, descriptor network). An optional extra: `available()` says whether it can run, and callers
report "skipped" when it cannot.

dlib's cosines are compressed: different people score about 0.80-0.89 and the same person 0.94 or more
(measured on this project's machines, docs/evaluation.md). So the L2 distance is reported too; dlib's own
same-person threshold is L2 < 0.6.
"""
from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np


def available() -> bool:
    try:
        _models()
    except ImportError:
        return False
    return True


@lru_cache(maxsize=1)
def _models():
    import dlib
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                        # face_recognition_models imports pkg_resources
        import face_recognition_models as frm
    return (dlib.get_frontal_face_detector(), dlib.shape_predictor(frm.pose_predictor_model_location()),
            dlib.face_recognition_model_v1(frm.face_recognition_model_location()))


def embedding(image: np.ndarray) -> np.ndarray | None:
    """image [H, W, 3] uint8 RGB -> the 128-d descriptor of the largest face, or None when no face is found."""
    detector, shapes, net = _models()
    img = np.ascontiguousarray(image)
    faces = []
    for upsample in (1, 2, 3):                   # look harder (upsampled) for small faces
        faces = list(detector(img, upsample))
        if faces:
            break
    if not faces:
        return None
    face = max(faces, key=lambda r: r.width() * r.height())
    return np.asarray(net.compute_face_descriptor(img, shapes(img, face)), dtype=np.float64)


def similarity(a: np.ndarray, b: np.ndarray) -> dict:
    """Cosine and L2 distance between two descriptors."""
    return {"cosine": float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))), "l2": float(np.linalg.norm(a - b))}
