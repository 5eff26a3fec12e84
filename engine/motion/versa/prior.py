"""GesturePrior: the trained VQ-VAE, token model and token->pose bank in one folder, and what the engine asks
of them: a text command -> canonical body motion for the next window.

Folder layout (distill/versa.py writes it; each part by save_pretrained): vqvae/, tokens/, pose_bank/.
The gesture of a command is the decoded motion sampled with that command minus the decoded motion sampled
with no command (both without audio): what the text adds, with the speech motion left to the speech models.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from engine.avatar.particles import canonical_names
from engine.pretrained import Pretrained

from .commands import BODY_NAMES, BODY_SLOTS, text_features
from .tokens import MotionTokenModel
from .vqvae import MotionVQVAE

REPO = Path(__file__).resolve().parents[3]
DEFAULT_DIR = REPO / "models" / "versa"


@dataclass
class PoseBankConfig:
    n_codes: int = 512
    frames_per_token: int = 4
    n_points: int = len(BODY_NAMES)


class TokenPoseBank(nn.Module, Pretrained):
    """token2pose: a relation bank from each code to the 2D body pose [l, 64, 2] (x, y displacement in face
    units) of the frames it stands for, averaged over the training motion that the VQ-VAE gave that code
    (codes never used there keep the VQ decoder's own reading of the code)."""
    config_class = PoseBankConfig

    def __init__(self, config: PoseBankConfig = PoseBankConfig()):
        super().__init__()
        self.config = c = config
        self.register_buffer("bank", torch.zeros(c.n_codes, c.frames_per_token, c.n_points, 2))

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens [B, N] -> 2D poses [B, N * l, 64, 2]."""
        B, N = tokens.shape
        return self.bank[tokens].reshape(B, N * self.config.frames_per_token, self.config.n_points, 2)


@torch.no_grad()
def build_pose_bank(vqvae: MotionVQVAE, motion: Tensor) -> TokenPoseBank:
    """motion [B, T, 192] (training windows) -> the bank: per code, the mean (x, y) of its frames."""
    c = vqvae.config
    l, n = c.frames_per_token, len(BODY_NAMES)
    bank = TokenPoseBank(PoseBankConfig(c.n_codes, l, n))
    every = torch.arange(c.n_codes)[:, None]
    bank.bank.copy_(vqvae.decode(every).reshape(c.n_codes, l, n, 3)[..., :2])
    tokens = vqvae.tokenize(motion)                                            # [B, N]
    spans = motion.reshape(motion.shape[0], -1, l, n, 3)[..., :2]              # [B, N, l, n, 2]
    flat_t, flat_s = tokens.reshape(-1), spans.reshape(-1, l, n, 2)
    count = torch.bincount(flat_t, minlength=c.n_codes).float()
    total = torch.zeros_like(bank.bank).index_add_(0, flat_t, flat_s)
    seen = count > 0
    bank.bank[seen] = total[seen] / count[seen, None, None, None]
    return bank


class GesturePrior:
    def __init__(self, vqvae: MotionVQVAE, tokens: MotionTokenModel, pose_bank: TokenPoseBank | None = None,
                 steps: int = 4):
        if vqvae.config.n_codes != tokens.config.n_codes or \
                vqvae.config.frames_per_token != tokens.config.frames_per_token:
            raise ValueError("vqvae/tokens: codebook size or frames per token differ "
                             f"({vqvae.config.n_codes}/{vqvae.config.frames_per_token} vs "
                             f"{tokens.config.n_codes}/{tokens.config.frames_per_token})")
        self.vqvae, self.tokens, self.pose_bank, self.steps = vqvae.eval(), tokens.eval(), pose_bank, steps
        self.n_slots = len(canonical_names())
        self._neutral: dict[tuple[int, int], Tensor] = {}     # (frames, steps) -> body_motion("", frames)

    @classmethod
    def from_pretrained(cls, path: str | Path = DEFAULT_DIR) -> "GesturePrior":
        path = Path(path)
        if not path.is_dir():
            raise ValueError(f"{path}: no gesture prior here (make one with `python -m distill.versa -o DIR`)")
        bank = TokenPoseBank.from_pretrained(path / "pose_bank") if (path / "pose_bank").is_dir() else None
        return cls(MotionVQVAE.from_pretrained(path / "vqvae"), MotionTokenModel.from_pretrained(path / "tokens"), bank)

    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        self.vqvae.save_pretrained(path / "vqvae")
        self.tokens.save_pretrained(path / "tokens")
        if self.pose_bank is not None:
            self.pose_bank.save_pretrained(path / "pose_bank")

    @property
    def window(self) -> int:
        """Frames of one gesture window (the token model's longest, capped at 2 s)."""
        l = self.vqvae.config.frames_per_token
        return l * min(self.tokens.config.max_tokens, max(1, 48 // l))

    @torch.no_grad()
    def body_motion(self, text: str, frames: int, mel: Tensor | None = None) -> Tensor:
        """Sampled and decoded body motion for a command -> [frames, 64, 3] (frames a multiple of l)."""
        l = self.vqvae.config.frames_per_token
        if frames % l:
            raise ValueError(f"frames: expected a multiple of {l}, got {frames}")
        tokens = self.tokens.sample(frames // l, None if mel is None else mel[None], text_features(text)[None],
                                    self.steps)
        return self.vqvae.decode(tokens)[0].reshape(frames, len(BODY_NAMES), 3)

    @torch.no_grad()
    def gesture(self, text: str, frames: int | None = None) -> Tensor:
        """What `text` adds to the body over the next window -> canonical motion [frames, K_c, 3] (face units;
        zero outside the body slots)."""
        frames = frames or self.window
        key = (frames, self.steps)
        if key not in self._neutral:                             # deterministic: sampled once per length
            self._neutral[key] = self.body_motion("", frames)
        delta = self.body_motion(text, frames) - self._neutral[key]
        out = torch.zeros(frames, self.n_slots, 3)
        out[:, BODY_SLOTS] = delta
        return out
