"""engine.evaluation.dlib_face (dlib's face descriptor, an evaluator we did not write): the astronaut matches herself,
her mirror image closely, and scikit-image's `camera` man less than both."""
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("dlib", reason="dlib-bin is a test extra")
pytest.importorskip("face_recognition_models", reason="face_recognition_models is a test extra")
from engine.evaluation.dlib_face import embedding, similarity  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def test_same_person_mirror_and_another_person():
    from PIL import Image
    from skimage import data

    photo = np.asarray(Image.open(ROOT / "assets" / "astronaut.png").convert("RGB"))
    man = np.repeat(data.camera()[..., None], 3, axis=2)
    ref = embedding(photo)
    same = similarity(ref, embedding(photo.copy()))
    mirror = similarity(ref, embedding(np.ascontiguousarray(photo[:, ::-1])))
    other = similarity(ref, embedding(man))
    assert same["cosine"] >= 0.99 and same["l2"] < 1e-6
    assert mirror["cosine"] >= 0.95 and mirror["l2"] < 0.6              # dlib's same-person threshold
    assert other["cosine"] < mirror["cosine"] and other["l2"] > mirror["l2"]
    assert embedding(np.full((200, 200, 3), 255, np.uint8)) is None      # no face
