"""The viseme model: audio alone -> per-frame viseme weights, distilled from espeak-ng's exact phoneme timelines.

    python -m distill.visemes -o RUN [--clips 900] [--steps 3000] [--export models/default/visemes] [--resume]

1. corpus   RUN/corpus.pt: `clips` sentences spoken by espeak-ng (distill/phonemes.py) with a random training
            voice, rate and pitch each; the sentences are random draws from WORDS plus TEXTS (none of
            bench/phonemes.py's sentences; voice variants f3 and m3, which the bench speaks with, never train).
            Each clip: 16 kHz audio -> a random gain, tilt (a first-order EQ) and noise (20-50 dB SNR) ->
            engine.audio.features.audio_features -> mel [T, 80]; targets engine.motion.visemes.marks_to_weights
            of its phoneme timeline [T, V]. One clip in ten is held out (frame accuracy and closed recall at the end).
2. train    an engine.audio.encoder.AudioEncoder (causal, its outputs are the V viseme logits) with the soft
            cross-entropy against the targets, on random 64-frame windows, through distill/train.py's loop
            (progress bar, CSV log and loss plot, checkpoints, --resume).
3. export   RUN/visemes (save_pretrained) and, with --export, that folder too (a learned model folder's visemes/).
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from distill.dist import DistContext
from distill.phonemes import synthesize
from distill.train import Stage, run_stage, step_generator
from engine.audio.encoder import AudioEncoder, AudioEncoderConfig
from engine.audio.features import SAMPLE_RATE, Resampler, audio_features
from engine.motion.visemes import CLOSED, VISEMES, marks_to_weights
from engine.pretrained import atomic_file_write

# espeak-ng voices (language, then "+variant"); the bench's variants f3 and m3 are left out on purpose.
LANGUAGES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-us-nyc",
             "en-029")
VARIANTS = ("", "f1", "f2", "f4", "f5", "m1", "m2", "m4", "m5", "m6", "m7", "m8", "Annie", "Andy", "Denis",
            "Gene", "Hugo", "Lee", "Mike", "paul", "belinda", "david", "linda", "john", "edward")
WORDS = """a about above after again air all almost also always am an and animal answer any apple are arm
around as ask at away baby back bad bag ball banana band bank barn base basket be beach bear beautiful bed bee
been before began begin behind bell best better between big bike bird black blow blue boat body bone book boom
boot both bottom bought bowl box boy bread break bright bring brother brown build bump bus busy but butter buy by
cake call came can car care carry cat catch chair cheap cheese child chop city clean climb clock close cloud coat
cold come cook cool corn could cow cup cut dad dark day deep did dog done door down draw dream drink drop dry duck
each early earth eat egg eight end even every eye face fall family far farm fast father feel feet few field find
fine fire first fish five floor fly food foot for four free friend frog from front full fun game garden gave get
girl give glass go gold good got grass great green grew group grow had hair half hand happy hard has hat have he
head hear heavy help her here high hill him his hold home hope horse hot house how huge I ice if in inside is it
jump just keep kind king knew know lake lamp large last late laugh learn leave left leg let letter light like
line lion list little live long look lot loud love low made make man many map may me mean meet milk mind mine
miss mix money month moon more morning most mother mountain mouse mouth move much mud must my name near need
never new next nice night no noon north nose not now number oak ocean of off often oil old on once one only open
or orange other our out over own page paint pair palm paper park part party pass path pay peach pen people pepper
pet pick picture pie piece pig pin pink place plan plant play please plenty plum pocket point pony pool poor pop
pot pull pump puppy purple push put queen quick quiet rabbit rain ran reach read ready red remember rest rich
ride right ring river road rock room rope round rub rule run sad said sail same sand saw say school sea seat see
seem seven shall she sheep ship shoe shop short should show shut side simple sing sister sit six sky sleep slow
small smile snow so soap soft some song soon sound soup south space speak spoon spring stand star start stay step
still stone stop story street strong such summer sun sure swim table take talk tall tea teeth tell ten than thank
that the their them then there these they thing think this those three through time to today together told too
took top town toy tree true try turn two under up upon us use very visit voice wait walk wall want warm was wash
watch water wave way we wear weather week well went were west what wheel when where which while white who why
will wind window wing winter wish with wood word work world would write yard year yellow yes you young zoo""".split()
TEXTS = (
    "My brother bought a map of the moon.", "Maybe we will move the boat by noon.",
    "Put the blue pump by the barn, please.", "Mom made plum soup for the baby.",
    "Five fine friends wave from the ferry.", "Bring me the warm bread and the butter.",
    "The bumpy bus moved past the big pool.", "Who put a pin in my purple balloon?",
)
HOLDOUT_EVERY = 10      # clip i is held out when i % HOLDOUT_EVERY == 0


def _sentence(rng: random.Random) -> str:
    if rng.random() < 0.15:
        return rng.choice(TEXTS)
    words = [rng.choice(WORDS) for _ in range(rng.randint(4, 11))]
    return " ".join(words).capitalize() + rng.choice((".", ".", "?", "!", ","))


def _augment(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random gain (-24..0 dB peak), first-order tilt and white noise at 20-50 dB SNR: [S] -> [S]."""
    a = rng.uniform(-0.6, 0.6)                         # y[n] = x[n] + a x[n-1]: brighter (a < 0) or darker
    x = wave.copy()
    x[1:] += a * wave[:-1]
    x *= 10 ** (rng.uniform(-24, 0) / 20) / max(float(np.abs(x).max()), 1e-6)
    power = float(np.mean(x ** 2)) + 1e-12
    x += rng.normal(0, np.sqrt(power / 10 ** (rng.uniform(20, 50) / 10)), x.shape).astype(np.float32)
    return np.clip(x, -1, 1).astype(np.float32)


def make_corpus(n_clips: int, seed: int = 0, progress: bool = True) -> list[dict]:
    """[{mel [T, 80], target [T, V], text, voice, rate, pitch}] for n_clips random clips (module docstring)."""
    rng, nrng = random.Random(seed), np.random.default_rng(seed)
    out = []
    for _ in tqdm(range(n_clips), desc="viseme corpus", unit="clip", disable=not progress):
        text = _sentence(rng)
        variant = rng.choice(VARIANTS)
        voice = rng.choice(LANGUAGES) + (f"+{variant}" if variant else "")
        rate, pitch = rng.randint(110, 230), rng.randint(20, 80)
        speech = synthesize(text, voice, rate, pitch)
        wave16 = Resampler(speech.sample_rate, SAMPLE_RATE)(torch.from_numpy(speech.wave)).numpy()
        mel, _ = audio_features(_augment(wave16, nrng), SAMPLE_RATE)
        target = marks_to_weights(speech.phonemes, mel.shape[0], "espeak")
        out.append({"mel": mel, "target": target, "text": text, "voice": voice, "rate": rate, "pitch": pitch})
    return out


class VisemeObjective(nn.Module):
    """Soft cross-entropy of the model's logits [B, T, V] against target weights [B, T, V]."""

    def __init__(self, model: AudioEncoder):
        super().__init__()
        self.model = model

    def forward(self, batch: dict) -> dict:
        logp = F.log_softmax(self.model(batch["mel"]), dim=-1)
        loss = -(batch["target"] * logp).sum(-1).mean()
        return {"loss": loss}


def _windows(clips: list[dict], batch: int, window: int, seed: int):
    def fn(step: int, rank: int, world: int) -> dict:
        g = step_generator(seed, step, rank)
        mels, targets = [], []
        for i in torch.randint(len(clips), (batch,), generator=g).tolist():
            mel, tgt = clips[i]["mel"], clips[i]["target"]
            pad = max(window - mel.shape[0], 0)
            if pad:
                mel = torch.cat([mel, mel[-1:].expand(pad, -1)])
                tgt = torch.cat([tgt, tgt[-1:].expand(pad, -1)])
            s = int(torch.randint(mel.shape[0] - window + 1, (1,), generator=g))
            mels.append(mel[s:s + window])
            targets.append(tgt[s:s + window])
        return {"mel": torch.stack(mels), "target": torch.stack(targets)}
    return fn


@torch.no_grad()
def evaluate(model: AudioEncoder, clips: list[dict]) -> dict:
    """Frame accuracy (argmax vs argmax) and closed recall/precision (frames whose target is mostly closed)."""
    hit = total = tp = fn = fp = 0
    for c in clips:
        pred = model(c["mel"]).argmax(-1)
        truth = c["target"].argmax(-1)
        hit += int((pred == truth).sum())
        total += int(truth.numel())
        tp += int(((pred == CLOSED) & (truth == CLOSED)).sum())
        fn += int(((pred != CLOSED) & (truth == CLOSED)).sum())
        fp += int(((pred == CLOSED) & (truth != CLOSED)).sum())
    return {"frame_accuracy": hit / max(total, 1), "closed_recall": tp / max(tp + fn, 1),
            "closed_precision": tp / max(tp + fp, 1), "clips": len(clips)}


def train(run_dir: Path, n_clips: int, steps: int, seed: int = 0, resume: bool = False,
          progress: bool = True, config: AudioEncoderConfig | None = None) -> tuple[AudioEncoder, dict]:
    run_dir.mkdir(parents=True, exist_ok=True)
    corpus_path = run_dir / "corpus.pt"
    if resume and corpus_path.is_file():
        corpus = torch.load(corpus_path, weights_only=False)
    else:
        corpus = make_corpus(n_clips, seed, progress)
        atomic_file_write(corpus_path, lambda f: torch.save(corpus, f))
    held = [c for i, c in enumerate(corpus) if i % HOLDOUT_EVERY == 0]
    train_clips = [c for i, c in enumerate(corpus) if i % HOLDOUT_EVERY != 0]
    torch.manual_seed(seed)
    model = AudioEncoder(config or AudioEncoderConfig(dim=len(VISEMES), hidden=192, layers=5, kernel=3))
    objective = VisemeObjective(model)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    stage = Stage("visemes", objective, {"model": opt}, steps, _windows(train_clips, 32, 64, seed))
    run_stage(stage, run_dir, DistContext(), checkpoint_every=500, log_every=20, resume=resume, progress=progress)
    model.eval()
    report = evaluate(model, held)
    model.save_pretrained(run_dir / "visemes")
    atomic_file_write(run_dir / "eval.json", lambda f: f.write(json.dumps(report, indent=1).encode()))
    return model, report


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Train the viseme model on espeak-ng speech (distill/visemes.py).")
    ap.add_argument("-o", "--out", required=True, help="run folder")
    ap.add_argument("--clips", type=int, default=900)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--export", default="", help="also save the model here (e.g. models/default/visemes)")
    ap.add_argument("--resume", action="store_true")
    a = ap.parse_args(argv)
    if a.clips < HOLDOUT_EVERY or a.steps < 1:
        ap.error(f"--clips must be >= {HOLDOUT_EVERY} and --steps >= 1")
    model, report = train(Path(a.out), a.clips, a.steps, a.seed, a.resume)
    if a.export:
        model.save_pretrained(a.export)
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1:])
