"""MotionTokenModel: motion tokens from audio and from a text command, after VersaAnimator (ACM MM'25).

Two branches of the same Transformer architecture: the audio branch sees log-mel frames through a conv
temporal block (stride l: one audio token per motion token), and the text branch sees the command's text
features (commands.text_features). Both take the motion-token embeddings (MASK where unknown) plus
positions. They are fused by summing layer by layer: after each layer, the text branch's hidden state is
added to the audio branch's. A head predicts the codes. The text branch alone (its own head) is pretrained
first with masked-token prediction; then both are trained together, with audio or text dropped at random.

Shapes: mel [B, T, n_mels] (25 fps, T = N * l), text [B, V], tokens [B, N] in 0..n_codes-1 (MASK = n_codes).
Sampling is MaskGIT-style: all masked, then the most confident predictions are kept over a few steps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.pretrained import Pretrained

from .commands import VOCAB


@dataclass
class MotionTokenConfig:
    n_codes: int = 512
    frames_per_token: int = 4       # l, as the VQ-VAE's
    n_mels: int = 80
    text_dim: int = len(VOCAB)
    width: int = 128
    layers: int = 8                 # VersaAnimator: 8-layer Transformers
    heads: int = 4
    max_tokens: int = 64            # longest window: 64 tokens = 256 frames (10.2 s)
    dropout: float = 0.1

    def __post_init__(self):
        for k in ("n_codes", "frames_per_token", "n_mels", "text_dim", "width", "layers", "heads", "max_tokens"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k}: expected >= 1, got {getattr(self, k)}")
        if self.width % self.heads:
            raise ValueError(f"width: {self.width} is not a multiple of heads={self.heads}")


def _layer(c: MotionTokenConfig) -> nn.TransformerEncoderLayer:
    return nn.TransformerEncoderLayer(c.width, c.heads, 4 * c.width, c.dropout, batch_first=True, norm_first=True)


class MotionTokenModel(nn.Module, Pretrained):
    config_class = MotionTokenConfig

    def __init__(self, config: MotionTokenConfig = MotionTokenConfig()):
        super().__init__()
        self.config = c = config
        self.mask_id = c.n_codes
        self.token_emb = nn.Embedding(c.n_codes + 1, c.width)
        self.pos_emb = nn.Parameter(torch.randn(c.max_tokens, c.width) * 0.02)
        l = c.frames_per_token
        self.audio_in = nn.Sequential(nn.Conv1d(c.n_mels, c.width, 3, 1, 1), nn.SiLU(),
                                      nn.Conv1d(c.width, c.width, l, l), nn.SiLU(), nn.Conv1d(c.width, c.width, 3, 1, 1))
        self.text_in = nn.Sequential(nn.Linear(c.text_dim, c.width), nn.SiLU(), nn.Linear(c.width, c.width))
        self.audio_layers = nn.ModuleList(_layer(c) for _ in range(c.layers))
        self.text_layers = nn.ModuleList(_layer(c) for _ in range(c.layers))
        self.head = nn.Sequential(nn.LayerNorm(c.width), nn.Linear(c.width, c.n_codes))
        self.text_head = nn.Sequential(nn.LayerNorm(c.width), nn.Linear(c.width, c.n_codes))

    def _inputs(self, tokens: Tensor, mel: Tensor | None, text: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        c = self.config
        B, N = tokens.shape
        if N > c.max_tokens:
            raise ValueError(f"tokens: at most {c.max_tokens} per window, got {N}")
        base = self.token_emb(tokens) + self.pos_emb[:N]
        if mel is None:
            audio = torch.zeros_like(base)
        else:
            if mel.shape != (B, N * c.frames_per_token, c.n_mels):
                raise ValueError(f"mel: expected [{B}, {N * c.frames_per_token}, {c.n_mels}], got {list(mel.shape)}")
            audio = self.audio_in(mel.transpose(1, 2)).transpose(1, 2)
        if text is None:
            text = torch.zeros(B, c.text_dim, device=tokens.device)
        if text.shape != (B, c.text_dim):
            raise ValueError(f"text: expected [{B}, {c.text_dim}], got {list(text.shape)}")
        return base, audio, self.text_in(text)[:, None]

    def forward(self, tokens: Tensor, mel: Tensor | None = None, text: Tensor | None = None,
                text_only: bool = False) -> Tensor:
        """tokens [B, N] (MASK where unknown) -> logits [B, N, n_codes]. mel None: no audio (zeros);
        text None: no command. text_only: the text branch and its head alone (its pretraining)."""
        base, audio, text_feat = self._inputs(tokens, mel, text)
        h_t = base + text_feat
        if text_only:
            for layer in self.text_layers:
                h_t = layer(h_t)
            return self.text_head(h_t)
        h_a = base + audio
        for la, lt in zip(self.audio_layers, self.text_layers):
            h_t = lt(h_t)
            h_a = la(h_a) + h_t                                       # fused by summing, layer by layer
        return self.head(h_a)

    def masked_loss(self, tokens: Tensor, mel: Tensor | None, text: Tensor | None, text_only: bool = False,
                    generator: torch.Generator | None = None) -> Tensor:
        """Masked-token prediction: a cosine-scheduled share of each window (at least one token) is masked;
        cross-entropy on the masked positions."""
        B, N = tokens.shape
        r = torch.rand(B, 1, generator=generator).to(tokens.device)
        ratio = torch.cos(r * math.pi / 2)                                       # in (0, 1]
        scores = torch.rand(B, N, generator=generator).to(tokens.device)
        k = (ratio * N).ceil().clamp(min=1)
        masked = scores.argsort(-1).argsort(-1) < k                              # the k lowest scores
        logits = self(torch.where(masked, torch.full_like(tokens, self.mask_id), tokens), mel, text, text_only)
        return F.cross_entropy(logits[masked], tokens[masked])

    @torch.no_grad()
    def sample(self, n_tokens: int, mel: Tensor | None = None, text: Tensor | None = None, steps: int = 4,
               batch: int = 1) -> Tensor:
        """Greedy MaskGIT decoding -> tokens [B, n_tokens]: each step keeps the most confident predictions
        (a cosine schedule of how many stay masked), deterministic for the same inputs."""
        device = self.pos_emb.device
        B = mel.shape[0] if mel is not None else (text.shape[0] if text is not None else batch)
        tokens = torch.full((B, n_tokens), self.mask_id, dtype=torch.long, device=device)
        for s in range(steps):
            logits = self(tokens, mel, text)
            conf, pred = logits.softmax(-1).max(-1)
            unknown = tokens == self.mask_id
            still = int(math.floor(n_tokens * math.cos(math.pi / 2 * (s + 1) / steps)))
            conf = torch.where(unknown, conf, torch.full_like(conf, float("inf")))
            keep = conf.argsort(-1, descending=True).argsort(-1) < n_tokens - still
            tokens = torch.where(unknown & keep, pred, tokens)
        return tokens
