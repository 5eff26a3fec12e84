"""Issue 19's measuring tools: phoneme-labelled speech from libespeak-ng (distill/phonemes.py; skipped when the
library is absent) and the phoneme-level figures (bench/phoneme_metrics.py) on hand-made landmark arrays."""
from __future__ import annotations

import math

import numpy as np
import pytest

from bench import phoneme_metrics as pm
from distill import phonemes as P


needs_espeak = pytest.mark.skipif(not P.available(), reason="libespeak-ng absent (apt install espeak-ng)")


def _rms(wave: np.ndarray, sr: int, t0: float, t1: float) -> float:
    seg = wave[max(0, int(round(t0 * sr))): int(round(t1 * sr))]
    return float(np.sqrt(np.mean(seg.astype(np.float64) ** 2)))


# ------------------------------------------------------------------------------------------------ synthesis
@needs_espeak
def test_events_are_ordered_and_inside_the_audio():
    s = P.synthesize("Peter picked plump purple plums by the pool.")
    assert s.sample_rate == 22050 and s.wave.dtype == np.float32 and s.wave.ndim == 1
    assert 1.0 < s.seconds < 6.0 and 0.05 < np.abs(s.wave).max() <= 1.0
    starts = [a for a, _, _ in s.phonemes]
    assert starts == sorted(starts) and all(0 <= a <= b <= s.seconds for a, b, _ in s.phonemes)
    assert all(s.phonemes[i][1] == s.phonemes[i + 1][0] for i in range(len(s.phonemes) - 1))
    speech = [p for *_, p in s.phonemes if not p.startswith("_")]
    assert speech[:2] == ["p", "i:"] and speech.count("p") == 8     # Peter picked plump (2) purple (2) plums pool


@needs_espeak
@pytest.mark.parametrize("word, phoneme", [("pop", "p"), ("bob", "b"), ("mom", "m")])
def test_bilabial_words_report_their_bilabials(word, phoneme):
    names = [p for *_, p in P.synthesize(word).phonemes]
    assert names.count(phoneme) == 2 and P.phoneme_class(phoneme) == "bilabial"


@needs_espeak
def test_a_slower_rate_gives_longer_audio_and_proportionally_later_events():
    text = "Peter picked plump purple plums by the pool."
    slow, fast = P.synthesize(text, rate=100), P.synthesize(text, rate=200)
    assert [p for *_, p in slow.phonemes] == [p for *_, p in fast.phonemes]
    ratio = slow.seconds / fast.seconds
    assert 1.5 < ratio < 2.2                                        # 100 vs 200 wpm
    a, b = (np.array([t for t, _, _ in s.phonemes]) for s in (slow, fast))
    slope = np.polyfit(b, a, 1)[0]
    assert abs(slope / ratio - 1) < 0.1 and np.corrcoef(a, b)[0, 1] > 0.99


def _median_f0(s: P.Speech) -> float:
    """Median autocorrelation pitch (60..400 Hz) over the middles of the vowels."""
    f0 = []
    for a, b, p in s.phonemes:
        if P.phoneme_class(p) in ("open", "spread", "rounded") and b - a > 0.06:
            m = (a + b) / 2
            x = s.wave[int((m - 0.025) * s.sample_rate): int((m + 0.025) * s.sample_rate)].astype(np.float64)
            x = x - x.mean()
            r = np.correlate(x, x, "full")[x.size - 1:]
            lo, hi = s.sample_rate // 400, s.sample_rate // 60
            f0.append(s.sample_rate / (lo + int(np.argmax(r[lo:hi]))))
    return float(np.median(f0))


@needs_espeak
def test_voices_and_pitches_differ():
    text = "Peter picked plump purple plums by the pool."
    us, gb = P.synthesize(text, "en-us"), P.synthesize(text, "en-gb")
    assert [p for *_, p in us.phonemes] != [p for *_, p in gb.phonemes]     # en-us r-coloured 3 vs en-gb @
    low, high = P.synthesize(text, pitch=10), P.synthesize(text, pitch=90)
    assert _median_f0(high) > 1.3 * _median_f0(low)


@needs_espeak
def test_a_p_event_sits_at_the_burst_after_a_silent_closure():
    """espeak reports a stop at its release: the 30 ms before each /p/ event are the lips' silent closure,
    the 15 ms after it the burst. A timeline off by 10 ms or more breaks one side or the other."""
    s = P.synthesize("A pop, a pup, a peep.")
    onsets = [a for a, _, p in s.phonemes if p == "p"]
    assert len(onsets) == 6
    for t in onsets:
        closure, burst = _rms(s.wave, s.sample_rate, t - 0.035, t - 0.005), _rms(s.wave, s.sample_rate, t, t + 0.015)
        assert closure < 0.002 < 0.005 < burst, (t, closure, burst)
    late = [_rms(s.wave, s.sample_rate, t - 0.025, t + 0.005) for t in onsets]   # 10 ms later: burst in "closure"
    assert max(late) > 0.002


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="text"):
        P.synthesize("  ")
    with pytest.raises(ValueError, match="rate"):
        P.synthesize("pop", rate=10)
    with pytest.raises(ValueError, match="pitch"):
        P.synthesize("pop", pitch=101)


@needs_espeak
def test_an_unknown_voice_is_named():
    with pytest.raises(ValueError, match="xx-nobody"):
        P.synthesize("pop", voice="xx-nobody")


def test_phoneme_classes_are_disjoint():
    members = [p for ps in P.CLASSES.values() for p in ps]
    assert len(members) == len(set(members))
    assert P.phoneme_class("b") == "bilabial" and P.phoneme_class("u:") == "rounded"
    assert P.phoneme_class("i:") == "spread" and P.phoneme_class("aI") == "open" and P.phoneme_class("t") is None


# ------------------------------------------------------------------------------------------------ metrics
def _landmarks(gap: np.ndarray, width=None, openness=None, nose=None) -> np.ndarray:
    """[T, 478, 3]: eye corners 100 px apart (the unit), lips 13/14 gap * 100 px apart, and so on."""
    T = gap.shape[0]
    lm = np.zeros((T, 478, 3))
    lm[:, 263, 0] = 100.0
    lm[:, 14, 1] = gap * 100
    lm[:, 291, 0] = (np.full(T, 0.5) if width is None else width) * 100
    o = np.full(T, 0.1) if openness is None else openness
    lm[:, 145, 1] = lm[:, 374, 1] = o * 100
    if nose is not None:
        lm[:, 1, :2] = nose * 100
    return lm


def test_frame_measures_are_in_eye_widths():
    lm = _landmarks(np.array([0.2, 0.0, 0.4]), width=np.array([0.5, 0.6, 0.4]))
    lm[:, 386, 1], lm[:, 374, 1] = 0.0, 0.3 * 100                 # right eye wider: mean of the two
    m = pm.frame_measures(lm)
    assert m["unit"] == 100.0
    np.testing.assert_allclose(m["gap"], [0.2, 0.0, 0.4])
    np.testing.assert_allclose(m["width"], [0.5, 0.6, 0.4])
    np.testing.assert_allclose(m["openness"], [0.2, 0.2, 0.2])
    with pytest.raises(ValueError, match="landmarks"):
        pm.frame_measures(np.zeros((3, 468, 3)))


def test_phoneme_frames_and_middle():
    assert list(pm.phoneme_frames(0.05, 0.13, 100)) == [1, 2, 3]   # [0.04, 0.08) .. [0.12, 0.16)
    assert list(pm.phoneme_frames(0.05, 0.13, 100, pad=1)) == [0, 1, 2, 3, 4]
    assert list(pm.phoneme_frames(0.0, 0.01, 3, pad=1)) == [0, 1]
    assert list(pm.phoneme_frames(0.10, 0.10, 10)) == [2]           # an empty interval keeps its frame
    assert pm.middle_frame(0.05, 0.13) == 2


BILABIALS = [(0.40, 0.48), (1.00, 1.04), (2.00, 2.12)]            # frames 10-11, 25, 50-52


def test_closure_rate_against_hand_counts():
    gap = np.full(100, 0.3)
    assert pm.closure_rate(gap, BILABIALS) == 0.0                  # never closes
    closed = gap.copy()
    closed[[10, 11, 25, 50, 51, 52]] = 0.0
    assert pm.closure_rate(closed, BILABIALS) == 1.0               # closes exactly on the bilabial frames
    near = gap.copy()
    near[[9, 26, 54]] = 0.0                                        # 1 frame before, 1 after, 2 after
    assert list(pm.closures(near, BILABIALS)) == [True, True, False]
    assert pm.closure_rate(near, BILABIALS) == pytest.approx(2 / 3)
    almost = gap.copy()                                           # p90 = 0.3: the limit is 0.06
    almost[10], almost[25], almost[51] = 0.059, 0.061, 0.06
    assert list(pm.closures(almost, BILABIALS)) == [True, False, True]
    assert math.isnan(pm.closure_rate(gap, []))


def test_median_ratio_at_middle_frames():
    gap = np.full(100, 0.5)
    gap[[11, 25, 51]] = [0.1, 0.2, 0.3]                            # the bilabials' middle frames
    opens = [(0.6, 0.7), (1.2, 1.3)]                               # middle frames 16, 31
    gap[[16, 31]] = [0.4, 0.8]
    assert pm.median_ratio(gap, BILABIALS, opens) == pytest.approx(0.2 / 0.6)
    assert math.isnan(pm.median_ratio(gap, BILABIALS, []))


def test_count_blinks_on_a_constructed_trace():
    trace = np.array([1, 1, 0.2, 0.1, 1, 1, 0.25, 1, 0.5, 1, np.nan, 1, 0.2])   # median 1: limit 0.3
    assert pm.count_blinks(trace) == 3                             # 2-3, 6, 12; 0.5 and the NaN are not
    assert pm.count_blinks(np.array([0.1, 0.1, 1, 1, 1])) == 1      # a run from frame 0
    assert pm.count_blinks(np.ones(50)) == 0


def test_nose_std_is_the_rms_distance_from_the_mean():
    a = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    circle = np.stack([3 + 0.07 * np.cos(a), 5 + 0.07 * np.sin(a)], axis=1)
    assert pm.nose_std(circle) == pytest.approx(0.07)
    m = pm.frame_measures(_landmarks(np.zeros(400), nose=circle))
    assert pm.nose_std(m["nose"]) == pytest.approx(0.07)


def test_bars():
    assert pm.meets("closure_rate", 0.8) and not pm.meets("closure_rate", 0.79)
    assert pm.meets("gap_ratio", 0.35) and not pm.meets("width_ratio", 0.96)
    assert pm.meets("blinks_per_10s", 3.0) and not pm.meets("blinks_per_10s", 6.0)
    assert pm.meets("nose_std", float("nan")) is None


def test_the_bench_splits_are_disjoint_and_balanced():
    from bench.phonemes import clips
    held, train = clips("heldout"), clips("train")
    assert len(held) == len(train) == 12 and len(clips("all")) == 24
    assert not {c["text"] for c in held} & {c["text"] for c in train}
    assert len({(c["voice"], c["rate"], c["pitch"]) for c in held}) == 4
    with pytest.raises(ValueError, match="split"):
        clips("test")


def test_a_missing_library_names_the_package(monkeypatch):
    def no_lib(name):
        raise OSError(f"{name}: cannot open shared object file")
    monkeypatch.setattr(P, "_STATE", {})
    monkeypatch.setattr(P.ctypes, "CDLL", no_lib)
    with pytest.raises(RuntimeError, match="apt install espeak-ng"):
        P.synthesize("pop")
