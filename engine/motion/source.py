"""MotionSource: what the live engine (engine/runtime.py) asks of a motion source. Two follow it:
engine.motion.procedural.ProceduralMotion (rules) and engine.motion.learned.LearnedMotion (distilled models).

    push(mel [t, n_mels], rms [t][, visemes [t, V]])
                                   -> canonical motion [t, K_c, 3] (face units), t >= 0, with no look-ahead
                                      past the audio pushed so far. The procedural rig is strictly causal (any
                                      chunking gives the same motion); the learned source samples a DiT window
                                      over the frames it is given, so the frames of one push see each other and
                                      chunk sizes change its draws. visemes: weights from timed marks
                                      (engine/motion/visemes.py; NaN rows: no mark there) that shape the lips
    reset()                           forget everything; the next frame is frame 0
    interrupt()                       barge-in: forget the speech context, keep the time index (blinks and
                                      idle motion go on without a jump)
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class MotionSource(Protocol):
    def push(self, mel: Tensor, rms: Tensor, visemes: Tensor | None = None) -> Tensor: ...

    def reset(self) -> None: ...

    def interrupt(self) -> None: ...
