"""Training of the VersaAnimator-style gesture prior (engine/motion/versa), offline, from the procedural teacher.

    python -m distill.versa -o models/versa [--config configs/versa.yaml] [--avatar DIR]

Data: the bundled training speech (assets/speech, split "train"), read as log-mel; the procedural rig's body
motion for it (breathing, beat gestures; engine.motion.procedural on the avatar's rest slots), in windows of
`window` frames; plus, with probability `command_prob`, one command's gesture template (engine.motion.versa.commands,
amplitude, speed and timing varied). This is the offline stand-in for text-labelled gesture video.
Stages: 1 the VQ-VAE (smooth L1 + beta * commitment, EMA codebook with reset); 2 the text branch alone, masked-token
prediction; 3 both branches, fused, masked-token prediction with audio and text each dropped at random; then
the token->pose bank. Progress bars; the result is written atomically as one folder.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from engine.audio.features import audio_features
from engine.config import from_dict, read_yaml
from engine.motion.procedural import ProceduralMotion
from engine.motion.versa.commands import BODY_SLOTS, COMMANDS, gesture_motion, text_features
from engine.motion.versa.prior import GesturePrior, build_pose_bank
from engine.motion.versa.tokens import MotionTokenConfig, MotionTokenModel
from engine.motion.versa.vqvae import MotionVQVAE, MotionVQVAEConfig
from engine.pretrained import atomic_dir_write, check_replaceable

REPO = Path(__file__).resolve().parents[1]


@dataclass
class VersaTrainConfig:
    """configs/versa.yaml"""
    vqvae: MotionVQVAEConfig = field(default_factory=lambda: MotionVQVAEConfig())
    tokens: MotionTokenConfig = field(default_factory=lambda: MotionTokenConfig(width=96))
    window: int = 48                 # frames per training window (1.92 s; 12 tokens)
    command_prob: float = 0.8        # share of windows with a gesture command
    batch: int = 32
    vqvae_steps: int = 1500
    text_steps: int = 600
    joint_steps: int = 1500
    lr: float = 3e-4
    drop_audio: float = 0.2          # stage 3: a window's audio is dropped with this probability ...
    drop_text: float = 0.1           # ... and its command (the text features) with this one
    seed: int = 0

    def __post_init__(self):
        if self.window % self.vqvae.frames_per_token:
            raise ValueError(f"window: expected a multiple of {self.vqvae.frames_per_token}, got {self.window}")
        if self.vqvae.n_codes != self.tokens.n_codes or self.vqvae.frames_per_token != self.tokens.frames_per_token:
            raise ValueError("vqvae/tokens: n_codes and frames_per_token must agree")
        for k in ("command_prob", "drop_audio", "drop_text"):
            if not 0 <= getattr(self, k) <= 1:
                raise ValueError(f"{k}: expected a probability in [0, 1], got {getattr(self, k)}")


class GestureData:
    """Random training windows: (mel [B, W, n_mels], text features [B, V], body motion [B, W, 192])."""

    def __init__(self, rest: torch.Tensor, present: torch.Tensor, waves: list[torch.Tensor], cfg: VersaTrainConfig):
        self.cfg = cfg
        self.rng = np.random.default_rng(cfg.seed)
        self.clips = []
        for k, wave in enumerate(waves):
            mel, rms = audio_features(wave)
            body = ProceduralMotion(rest, present, seed=k)(mel, rms)[:, BODY_SLOTS]       # [T, 64, 3]
            if mel.shape[0] >= cfg.window:
                self.clips.append((mel, body.reshape(body.shape[0], -1)))
        if not self.clips:
            raise ValueError(f"speech: no clip is {cfg.window} frames ({cfg.window / 25:.2f} s) long")

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
        W = self.cfg.window
        mels, texts, motions, commands = [], [], [], []
        for _ in range(n):
            mel, body = self.clips[int(self.rng.integers(len(self.clips)))]
            s = int(self.rng.integers(0, mel.shape[0] - W + 1))
            command = "" if self.rng.random() >= self.cfg.command_prob else \
                str(self.rng.choice([c for c in COMMANDS if c]))
            motion = body[s:s + W] + gesture_motion(command, W, self.rng).reshape(W, -1)
            mels.append(mel[s:s + W])
            texts.append(text_features(command))
            motions.append(motion)
            commands.append(command)
        return torch.stack(mels), torch.stack(texts), torch.stack(motions), commands


def _rest_slots(avatar) -> tuple[torch.Tensor, torch.Tensor]:
    p = ProceduralMotion.for_avatar(avatar)
    return p.rest, p.present


def train(cfg: VersaTrainConfig, rest: torch.Tensor, present: torch.Tensor, waves: list[torch.Tensor],
          progress: bool = True, log: list | None = None) -> GesturePrior:
    """The three stages and the pose bank -> a GesturePrior. `log` (a list) receives one dict per stage with
    the first and last 50-step mean losses."""
    torch.manual_seed(cfg.seed)
    data = GestureData(rest, present, waves, cfg)
    gen = torch.Generator().manual_seed(cfg.seed)

    def run(name: str, steps: int, params, loss_fn):
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
        losses = []
        for _ in tqdm(range(steps), desc=f"versa: {name}", unit="step", disable=not progress):
            loss = loss_fn()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        if log is not None and losses:
            log.append({"stage": name, "steps": steps, "loss_first": float(np.mean(losses[:50])),
                        "loss_last": float(np.mean(losses[-50:]))})

    vq = MotionVQVAE(cfg.vqvae).train()
    run("vqvae", cfg.vqvae_steps, vq.parameters(), lambda: vq(data.batch(cfg.batch)[2])["loss"])
    vq.eval().requires_grad_(False)

    model = MotionTokenModel(cfg.tokens).train()

    def text_loss():
        _, text, motion, _ = data.batch(cfg.batch)
        return model.masked_loss(vq.tokenize(motion), None, text, text_only=True, generator=gen)
    run("text branch", cfg.text_steps, model.parameters(), text_loss)

    def joint_loss():
        mel, text, motion, _ = data.batch(cfg.batch)
        keep_text = (torch.rand(cfg.batch, 1, generator=gen) >= cfg.drop_text).float()
        audio = None if float(torch.rand((), generator=gen)) < cfg.drop_audio else mel
        return model.masked_loss(vq.tokenize(motion), audio, text * keep_text, generator=gen)
    run("audio + text", cfg.joint_steps, model.parameters(), joint_loss)
    model.eval()

    bank = build_pose_bank(vq, torch.cat([data.batch(256)[2] for _ in range(4)]))
    return GesturePrior(vq, model, bank)


def load_train_config(path: str | Path | None) -> VersaTrainConfig:
    if path is None:
        return VersaTrainConfig()
    raw = read_yaml(path)
    nested = {"vqvae": MotionVQVAEConfig, "tokens": MotionTokenConfig}
    parts = {k: from_dict(cls, raw.pop(k, {}) or {}, f"{path}: {k}") for k, cls in nested.items()}
    return from_dict(VersaTrainConfig, {**raw, **parts}, str(path))


def main(argv: list[str] | None = None) -> int:
    from distill.data import speech_corpus
    from engine.avatar.bundle import Avatar
    from engine.avatar.personalize import PersonalizeConfig, personalize

    ap = argparse.ArgumentParser(description="train the gesture prior (engine/motion/versa) from the procedural teacher")
    ap.add_argument("-o", "--output", required=True, help="folder to write (vqvae/, tokens/, pose_bank/)")
    ap.add_argument("--config", help="VersaTrainConfig YAML (default: built-in, same as configs/versa.yaml)")
    ap.add_argument("--avatar", help="avatar folder for the rest pose (default: the bundled photo, personalized)")
    args = ap.parse_args(argv)
    try:
        cfg = load_train_config(args.config)
        out = Path(args.output)
        check_replaceable(out, "vqvae")
        avatar = Avatar.from_pretrained(args.avatar) if args.avatar else personalize(
            REPO / "assets" / "astronaut.png", PersonalizeConfig(fit_steps=0), progress=True)
    except (ValueError, FileNotFoundError) as e:
        print(f"distill.versa: error: {e}", file=sys.stderr)
        return 2
    waves = [c.audio() for c in speech_corpus() if c.split == "train"]
    log: list = []
    prior = train(cfg, *_rest_slots(avatar), waves, log=log)

    def write(tmp: Path) -> None:
        prior.save_pretrained(tmp)
        (tmp / "training.json").write_text(json.dumps({"config": asdict(cfg), "stages": log}, indent=1))
    atomic_dir_write(out, write, marker="vqvae")
    print(json.dumps({"output": str(out), "stages": log}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
