"""Running the learned motion of many live sessions as one batch.

A live session's learned motion for one 40 ms frame is a handful of tiny network calls (the audio encoder, the
DiT's four denoising steps over a short window, the refiner, the viseme model), each costing about as much for
one frame as for ten sessions' frames at once: on a server holding many sessions, calling them per session
wastes most of the CPU. So LearnedMotion.push_steps (and MotionStream.push_steps) are generators that *yield*
each network call as a request instead of making it, and are sent its result back:

    EncodeRequest   an AudioEncoderStream's push of mel [t, n_mels]             -> features [t, dim]
    Window          a DiT window to sample (engine/motion/dit.py)               -> motion [T, K, C]
    RefineRequest   the refiner over motion [t, K, C], features, time indices   -> motion [t, K, C]

`run_alone` answers each request by itself (one session: what push does), `run_together` drives many
generators in rounds, answering the requests of each round grouped by kind and key (same model, same shapes)
with one call per group. Every request kind has run(requests) -> results, rows independent of each other, so a
session's motion is the same either way up to the float rounding of a bigger matrix product.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from engine.audio.encoder import AudioEncoderStream


def run_alone(steps):
    """Drive one push_steps generator, answering each request by itself -> what the generator returns."""
    try:
        request = next(steps)
        while True:
            request = steps.send(type(request).run([request])[0])
    except StopIteration as done:
        return done.value


def run_together(generators: list) -> list:
    """Drive many push_steps generators at once -> each one's return value, in order. Each round answers every
    generator's current request, one call per group of requests of the same kind and key."""
    results: list = [None] * len(generators)
    pending: dict[int, object] = {}
    for i, steps in enumerate(generators):
        try:
            pending[i] = next(steps)
        except StopIteration as done:
            results[i] = done.value
    while pending:
        groups: dict[tuple, list[int]] = {}
        for i, request in pending.items():
            groups.setdefault((type(request), request.key()), []).append(i)
        answers: dict[int, object] = {}
        for (kind, _), rows in groups.items():
            answers.update(zip(rows, kind.run([pending[i] for i in rows])))
        for i, answer in answers.items():
            try:
                pending[i] = generators[i].send(answer)
            except StopIteration as done:
                del pending[i]
                results[i] = done.value
    return results


@dataclass
class EncodeRequest:
    """stream.push(mel) for mel [t, n_mels]."""
    stream: AudioEncoderStream
    mel: Tensor

    def key(self) -> tuple:
        return id(self.stream.model), self.mel.shape[0]

    @staticmethod
    def run(requests: list["EncodeRequest"]) -> list[Tensor]:
        if len(requests) == 1:
            return [requests[0].stream.push(requests[0].mel)]
        return AudioEncoderStream.push_many([r.stream for r in requests], [r.mel for r in requests])


@dataclass
class RefineRequest:
    """refiner(motion [t, K, C], features [t, D], frame index [t]) -> refined motion [t, K, C]. The refiner works
    frame by frame, so many sessions' frames run as one sequence of frames."""
    refiner: torch.nn.Module
    motion: Tensor
    features: Tensor
    index: Tensor

    def key(self) -> tuple:
        return (id(self.refiner),)

    @staticmethod
    def run(requests: list["RefineRequest"]) -> list[Tensor]:
        lengths = [r.motion.shape[0] for r in requests]
        with torch.no_grad():
            out = requests[0].refiner(torch.cat([r.motion for r in requests])[None],
                                      torch.cat([r.features for r in requests])[None],
                                      torch.cat([r.index for r in requests])[None])[0]
        return list(out.split(lengths))
