"""engine.evaluation.lipsync: the lag correlation against a hand-built shifted signal, and mediapipe's mouth opening on
the astronaut photo against the hand-annotated lip gap."""
from pathlib import Path

import numpy as np
import pytest

from engine.evaluation.lipsync import lagged_correlation, sync_score


def test_lag_is_found_and_signed():
    rng = np.random.default_rng(0)
    env = rng.random(200)
    mouth = np.roll(env, 3)                       # the mouth follows the audio by 3 frames
    mouth[:3] = np.nan
    s = sync_score(mouth, env, max_lag=6)
    assert s["lag_frames"] == 3 and s["peak_r"] == pytest.approx(1.0)
    assert abs(s["r_at_0"]) < 0.3
    r = lagged_correlation(mouth, env, 6)
    assert r[-3] < 0.3 and set(r) == set(range(-6, 7))
    with pytest.raises(ValueError, match="signal/reference"):
        lagged_correlation(env[:5], env, 2)


def test_mouth_opening_of_the_astronaut():
    pytest.importorskip("mediapipe", reason="mediapipe is installed by scripts/setup.sh")
    from PIL import Image

    from engine.evaluation.lipsync import mouth_opening
    image = np.asarray(Image.open(Path(__file__).resolve().parent.parent / "assets" / "astronaut.png").convert("RGB"))
    opening = mouth_opening([image, np.full_like(image, 255)])
    # hand annotation (512 px photo): inner lips about 7 px apart (223,143)/(223,150), eye corners about 70 px
    assert 0.05 < opening[0] < 0.15 and np.isnan(opening[1])
