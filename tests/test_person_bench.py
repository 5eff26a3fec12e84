"""bench/person.py's blink floor: the eye openness it measures and the eyes it paints shut, on a drawn face."""
import numpy as np

from bench.person import LASH_RGB, openness, paint_eyes_shut
from engine.avatar.eyelids import EYES_ARCS

SKIN = np.array([200, 160, 140])


def drawn_eyes(up: float = 8.0, down: float = 6.0):
    """A 200 x 100 skin-coloured image with two dark almond eyes, and a face mesh [478, 3] whose eye arcs trace
    them: each eye 40 px wide, its upper arc up to `up` px above the corners' row, its lower arc `down` below."""
    import cv2
    lm = np.zeros((478, 3))
    img = np.empty((100, 200, 3), np.uint8)
    img[:] = SKIN
    t = np.linspace(0.0, 1.0, 9)
    for (upper, lower, _), cx in zip(EYES_ARCS, (60.0, 140.0)):
        x = cx - 20 + 40 * t if upper[0] in (33,) else cx + 20 - 40 * t        # outer corner first
        lm[list(upper), 0], lm[list(upper), 1] = x, 50 - up * np.sin(np.pi * t)
        lm[list(lower), 0], lm[list(lower), 1] = x, 50 + down * np.sin(np.pi * t)
        poly = np.concatenate([lm[list(upper), :2], lm[list(lower), :2][::-1]])
        cv2.fillPoly(img, [np.round(poly).astype(np.int32)], (235, 235, 235))     # the white
        cv2.circle(img, (int(cx), 50), 5, (30, 20, 20), -1)                       # the iris
    return img, lm


def test_openness_is_the_lid_gap_over_the_eye_width_on_both_eyes():
    _, lm = drawn_eyes(8.0, 6.0)
    assert abs(openness(lm[None])[0] - 14.0 / 40.0) < 1e-9
    _, lm = drawn_eyes(2.0, 1.0)
    assert abs(openness(lm[None])[0] - 3.0 / 40.0) < 1e-9


def test_painted_eyes_are_skin_with_a_lash_line_on_the_lower_lid():
    import cv2
    img, lm = drawn_eyes()
    out = paint_eyes_shut(img, lm)
    for upper, lower, _ in EYES_ARCS:
        inside = np.zeros(img.shape[:2], np.uint8)
        cv2.fillPoly(inside, [np.round(np.concatenate([lm[list(upper), :2], lm[list(lower), :2][::-1]])
                                       ).astype(np.int32)], 1)
        line = np.zeros_like(inside)
        cv2.polylines(line, [np.round(lm[list(lower), :2]).astype(np.int32)], False, 1, 3)
        skin = inside.astype(bool) & ~line.astype(bool)
        assert skin.sum() > 200
        # the white and the iris are gone: skin coloured, within 12 levels on average
        assert np.abs(out[skin].astype(float) - SKIN).mean() < 12
        # the lash line lies on the lower arc's middle, dark
        mid = np.round(lm[lower[4], :2]).astype(int)
        assert np.abs(out[mid[1], mid[0]].astype(float) - LASH_RGB).max() < 40
    # outside the eyes (and the 2 px the fill widens them by) nothing changes
    far = np.ones(img.shape[:2], bool)
    far[30:62, 30:172] = False
    assert (out[far] == img[far]).all()
