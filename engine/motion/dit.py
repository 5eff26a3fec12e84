"""Audio -> control-particle motion: the motion diffusion Transformer, its DDIM sampler and windowed streaming.

Data path (docs/architecture.md): audio features a [T, D_a] (engine/audio) -> `generate` / `MotionStream.push` -> particle
motions x [T, K, C] in face units over the canonical slots (engine.avatar.particles) -> engine/motion/refiner (face/hand
detail, conditioned on the time index) -> engine/deform/decoder (ΔG per Gaussian).

Pieces, top to bottom:
    noise schedule    alpha_bar [n] (cosine or linear), q_sample and the x0 -> eps inversion
    building blocks   sinusoidal embedding, adaLN-Zero Transformer block, zero-initialised final layer, masked MSE
                      (the refiner reuses them)
    MotionDiT         one token per frame, predicts the clean motion x0; output head zero-initialised (rest pose)
    ddim_sample       deterministic DDIM (eta = 0) with prefix inpainting and frame-indexed noise
    generate          offline, overlapping windows whose prefix is the previous window's tail
    MotionStream      the same windows fed live: a motion frame as soon as its audio frame exists

Noise is a function of (seed, batch row, absolute frame index) only, so streaming and offline draw the same
noise for the same frame, and with the same windows they give the same motion.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.motion.batch import run_alone
from engine.pretrained import Pretrained

SCHEDULES = ("cosine", "linear")


@dataclass
class MotionDiTConfig:
    n_slots: int = 204            # K: canonical control-particle slots (len(engine.avatar.particles.canonical_slots()))
    channels: int = 3             # C: motion channels per particle (xyz offset in face units)
    audio_dim: int = 128          # D_a: audio feature size per frame
    dim: int = 192                # sized for the live CPU budget (bench/avatar_engine.py: RTF >= 2 at 512x512)
    depth: int = 4
    heads: int = 4
    max_len: int = 64             # longest window in frames (learned positional embedding over window positions)
    window: int = 32              # offline window length in frames
    overlap: int = 8              # known prefix carried from one window into the next
    diffusion_steps: int = 1000
    schedule: str = "cosine"
    audio_dropout: float = 0.1    # training: probability of replacing the audio by the null vector (CFG)

    def __post_init__(self):
        for name in ("n_slots", "channels", "audio_dim", "dim", "depth", "heads", "max_len", "window",
                     "diffusion_steps", "overlap"):
            value, low = getattr(self, name), 0 if name == "overlap" else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"MotionDiTConfig.{name}: must be an int >= {low}, got {value!r}")
        if self.dim % self.heads:
            raise ValueError(f"MotionDiTConfig.dim: must be divisible by heads={self.heads}, got {self.dim}")
        if self.window > self.max_len:
            raise ValueError(f"MotionDiTConfig.window: must be <= max_len={self.max_len}, got {self.window}")
        if self.overlap >= self.window:
            raise ValueError(f"MotionDiTConfig.overlap: must be < window={self.window}, got {self.overlap}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"MotionDiTConfig.schedule: must be one of {SCHEDULES}, got {self.schedule!r}")
        if not isinstance(self.audio_dropout, (int, float)) or not 0.0 <= self.audio_dropout < 1.0:
            raise ValueError(f"MotionDiTConfig.audio_dropout: must be in [0, 1), got {self.audio_dropout!r}")


# ---------------------------------------------------------------------------------------------- noise schedule
@lru_cache(maxsize=8)
def alpha_bar_schedule(n: int, schedule: str = "cosine") -> Tensor:
    """alpha_bar [n] float64, decreasing from ~1 (t = 0) to ~0 (t = n - 1). Shared and cached: do not modify.
    cosine: Nichol & Dhariwal 2021 (s = 0.008, betas clipped at 0.999); linear: Ho et al. 2020, scaled to n."""
    if schedule == "cosine":
        s = 0.008
        f = torch.cos((torch.arange(n + 1, dtype=torch.float64) / n + s) / (1 + s) * math.pi / 2) ** 2
        betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    elif schedule == "linear":
        scale = 1000.0 / n
        betas = torch.linspace(scale * 1e-4, min(scale * 0.02, 0.999), n, dtype=torch.float64)
    else:
        raise ValueError(f"schedule: must be one of {SCHEDULES}, got {schedule!r}")
    return torch.cumprod(1 - betas, 0)


def _coefs(alpha_bar: Tensor, t: Tensor | int, like: Tensor) -> tuple[Tensor, Tensor]:
    """(sqrt(ab_t), sqrt(1 - ab_t)), computed in float64 (1 - ab near t = 0 loses digits in float32) and shaped
    to broadcast against `like` [B, ...] (t [B]) or as scalars (t an int)."""
    if isinstance(t, int):
        ab = alpha_bar[t].to(torch.float64)
    else:
        ab = alpha_bar.to(like.device, torch.float64)[t.to(like.device).long()].view(-1, *([1] * (like.dim() - 1)))
    return ab.sqrt().to(like.device, like.dtype), (1 - ab).sqrt().to(like.device, like.dtype)


def q_sample(x0: Tensor, t: Tensor | int, noise: Tensor, alpha_bar: Tensor) -> Tensor:
    """Forward diffusion: x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps. x0, noise [B, ...]; t [B] int or an int."""
    a, s = _coefs(alpha_bar, t, x0)
    return a * x0 + s * noise


def x0_to_eps(x_t: Tensor, t: Tensor | int, x0: Tensor, alpha_bar: Tensor) -> Tensor:
    """Invert q_sample for the noise: eps = (x_t - sqrt(ab_t) x0) / sqrt(1 - ab_t)."""
    a, s = _coefs(alpha_bar, t, x_t)
    return (x_t - a * x0) / s


def sampling_timesteps(n: int, steps: int) -> list[int]:
    """`steps` evenly spaced, strictly decreasing diffusion steps in [0, n): floor(n (steps - i) / steps) - 1."""
    return [n * (steps - i) // steps - 1 for i in range(steps)]


# ---------------------------------------------------------------------------------------------- building blocks
def sinusoidal_embedding(x: Tensor, dim: int, period: float = 10000.0) -> Tensor:
    """x [...] (diffusion steps or frame indices) -> [..., dim] float32: [cos(x f_i), sin(x f_i)],
    f_i = period^(-i / half) (a zero column pads odd dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(period) * torch.arange(half, dtype=torch.float32, device=x.device) / half)
    arg = x.float()[..., None] * freqs
    emb = torch.cat([torch.cos(arg), torch.sin(arg)], -1)
    return F.pad(emb, (0, dim % 2))


def _modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """FiLM: x [N, L, dim], shift/scale [N, dim]."""
    return x * (1 + scale[:, None]) + shift[:, None]


class AdaLNBlock(nn.Module):
    """Pre-norm Transformer block with adaLN-Zero (DiT): shift, scale and gate of both sub-layers come from a
    conditioning vector c [N, dim]; the modulation is zero-initialised, so the block starts as the identity.
    x [N, L, dim] -> [N, L, dim]."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(approximate="tanh"),
                                 nn.Linear(mlp_ratio * dim, dim))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        N, L, D = x.shape
        sh1, sc1, g1, sh2, sc2, g2 = self.ada(c).chunk(6, -1)
        q, k, v = self.qkv(_modulate(self.norm1(x), sh1, sc1)).view(N, L, 3, self.heads, D // self.heads) \
            .permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(N, L, D)
        x = x + g1[:, None] * self.proj(att)
        return x + g2[:, None] * self.mlp(_modulate(self.norm2(x), sh2, sc2))


class FinalLayer(nn.Module):
    """LayerNorm + FiLM from c, then a ZERO-INITIALISED linear head: [N, L, dim] -> [N, L, out], exactly 0 untrained."""

    def __init__(self, dim: int, out: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.head = nn.Linear(dim, out)
        for layer in (self.ada[1], self.head):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.ada(c).chunk(2, -1)
        return self.head(_modulate(self.norm(x), shift, scale))


def masked_mse(pred: Tensor, target: Tensor, slot_mask: Tensor | None = None) -> Tensor:
    """Mean squared error over [B, T, K, C], counting only slots where slot_mask ([K], [B, K] or [B, T, K];
    bool or float weights) is set. An all-zero mask gives 0."""
    if slot_mask is None:
        return F.mse_loss(pred, target)
    B, T, K, C = pred.shape
    m = slot_mask.to(pred.device, pred.dtype)
    if m.dim() == 2:
        m = m[:, None]
    if m.shape[-1] != K or m.dim() > 3 or (m.dim() == 3 and m.shape[0] not in (1, B)) or \
            (m.dim() == 3 and m.shape[1] not in (1, T)):
        raise ValueError(f"slot_mask: must be [K], [B, K] or [B, T, K] with K={K}, B={B}, T={T}, "
                         f"got {tuple(slot_mask.shape)}")
    w = m.expand(B, T, K)[..., None]
    return ((pred - target) ** 2 * w).sum() / (w.sum() * C).clamp_min(1e-12)


def check_tensor(name: str, x, layout: str) -> None:
    """ValueError naming `name` unless x is a tensor with as many dims as `layout` (e.g. "[B, T, K, C]") has."""
    dims = layout.count(",") + 1
    if not isinstance(x, Tensor) or x.dim() != dims:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name}: must be a {dims}-d tensor {layout}, got {got}")


# ---------------------------------------------------------------------------------------------- the model
class MotionDiT(Pretrained, nn.Module):
    """Predicts clean particle motion x0 [B, T, K, C] from noised motion x_t, the diffusion step and audio.
    One token per frame: Linear(concat(x_t as K*C, audio)) + positional embedding; adaLN-Zero blocks driven
    by the diffusion-step embedding; zero-initialised output head (untrained -> exactly 0, the rest pose)."""
    config_class = MotionDiTConfig

    def __init__(self, config: MotionDiTConfig | None = None):
        super().__init__()
        self.config = cfg = config if config is not None else MotionDiTConfig()
        kc = cfg.n_slots * cfg.channels
        self.in_proj = nn.Linear(kc + cfg.audio_dim, cfg.dim)
        self.pos_emb = nn.Parameter(torch.randn(cfg.max_len, cfg.dim) * 0.02)
        self.null_audio = nn.Parameter(torch.zeros(cfg.audio_dim))      # replaces dropped audio (CFG)
        self.t_mlp = nn.Sequential(nn.Linear(cfg.dim, cfg.dim), nn.SiLU(), nn.Linear(cfg.dim, cfg.dim))
        self.blocks = nn.ModuleList(AdaLNBlock(cfg.dim, cfg.heads) for _ in range(cfg.depth))
        self.final = FinalLayer(cfg.dim, kc)
        self.register_buffer("alpha_bar", alpha_bar_schedule(cfg.diffusion_steps, cfg.schedule).clone(),
                             persistent=False)

    def _check_inputs(self, x: Tensor, audio: Tensor) -> tuple[int, int]:
        cfg = self.config
        check_tensor("x", x, "[B, T, K, C]")
        B, T, K, C = x.shape
        if (K, C) != (cfg.n_slots, cfg.channels):
            raise ValueError(f"x: must be [B, T, K={cfg.n_slots}, C={cfg.channels}], got {tuple(x.shape)}")
        if not 1 <= T <= cfg.max_len:
            raise ValueError(f"x: T must be in [1, max_len={cfg.max_len}], got {T}")
        check_tensor("audio", audio, "[B, T, D]")
        if tuple(audio.shape) != (B, T, cfg.audio_dim):
            raise ValueError(f"audio: must be [B={B}, T={T}, audio_dim={cfg.audio_dim}], got {tuple(audio.shape)}")
        return B, T

    def forward(self, x_t: Tensor, t: Tensor, audio: Tensor, audio_mask: Tensor | None = None) -> Tensor:
        """x_t [B, T, K, C], t [B] int diffusion steps, audio [B, T, audio_dim], audio_mask [B] bool
        (True: use the learned null audio) -> x0_hat [B, T, K, C]."""
        B, T = self._check_inputs(x_t, audio)
        if not isinstance(t, Tensor) or t.shape != (B,) or t.is_floating_point():
            raise ValueError(f"t: must be an integer tensor [B={B}], got "
                             f"{tuple(t.shape) if isinstance(t, Tensor) else t!r}")
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.config.diffusion_steps):
            raise ValueError(f"t: must be in [0, {self.config.diffusion_steps}), got {t.tolist()}")
        audio = audio.to(x_t.dtype)
        if audio_mask is not None:
            if not isinstance(audio_mask, Tensor) or audio_mask.shape != (B,) or audio_mask.dtype != torch.bool:
                raise ValueError(f"audio_mask: must be a bool tensor [B={B}], got "
                                 f"{tuple(audio_mask.shape) if isinstance(audio_mask, Tensor) else audio_mask!r}")
            audio = torch.where(audio_mask.to(audio.device)[:, None, None], self.null_audio.to(audio.dtype), audio)
        h = self.in_proj(torch.cat([x_t.reshape(B, T, -1), audio], -1)) + self.pos_emb[:T]
        c = self.t_mlp(sinusoidal_embedding(t, self.config.dim))
        for block in self.blocks:
            h = block(h, c)
        return self.final(h, c).view(B, T, self.config.n_slots, self.config.channels)

    def loss(self, x0: Tensor, audio: Tensor, slot_mask: Tensor | None = None,
             generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """L_simple: x0 [B, T, K, C], audio [B, T, audio_dim] -> {"loss", "loss_simple"}: masked MSE between
        x0_hat(q_sample(x0, t, eps), t, audio) and x0 with t ~ U[0, n) and audio dropped with audio_dropout."""
        B, T = self._check_inputs(x0, audio)
        dev = generator.device if generator is not None else x0.device
        t = torch.randint(0, self.config.diffusion_steps, (B,), generator=generator, device=dev).to(x0.device)
        noise = torch.randn(x0.shape, generator=generator, device=dev).to(x0)
        drop = (torch.rand(B, generator=generator, device=dev) < self.config.audio_dropout).to(x0.device)
        x0_hat = self(q_sample(x0, t, noise, self.alpha_bar), t, audio, drop)
        loss = masked_mse(x0_hat, x0, slot_mask)
        return {"loss": loss, "loss_simple": loss.detach()}


# ---------------------------------------------------------------------------------------------- sampling
_M64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def frame_seed(seed: int, row: int, frame: int) -> int:
    """A 63-bit generator seed from (seed, batch row, absolute frame index); platform and run independent."""
    h = 0
    for v in (seed, row, frame):
        h = _splitmix64(h ^ (v & _M64))
    return h >> 1


def frame_noise(seed: int, frame_offset: int, B: int, T: int, K: int, C: int) -> Tensor:
    """Noise [B, T, K, C] float32 (CPU) whose frame i depends only on (seed, row, frame_offset + i)."""
    out = torch.empty(B, T, K, C)
    for b in range(B):
        for i in range(T):
            out[b, i] = _one_frame_noise(seed, b, frame_offset + i, K, C)
    return out


@lru_cache(maxsize=8192)
def _one_frame_noise(seed: int, row: int, frame: int, K: int, C: int) -> Tensor:
    """One frame's noise [K, C] (read-only: frame_noise copies it). Cached: a live stream's windows overlap, so
    each frame's noise is drawn again for every window it is in (9 times with the shipped overlap of 8)."""
    g = torch.Generator()
    g.manual_seed(frame_seed(seed, row, frame))
    return torch.randn(K, C, generator=g)


def predict_x0(model, x: Tensor, t: int, audio: Tensor, guidance: float) -> Tensor:
    """x0_hat at diffusion step t; classifier-free guidance null + g (cond - null) when guidance != 1."""
    B = x.shape[0]
    if guidance == 1.0:
        return model(x, torch.full((B,), t, dtype=torch.long, device=x.device), audio)
    mask = torch.cat([torch.zeros(B, dtype=torch.bool), torch.ones(B, dtype=torch.bool)]).to(x.device)
    both = model(torch.cat([x, x]), torch.full((2 * B,), t, dtype=torch.long, device=x.device),
                 torch.cat([audio, audio]), mask)
    cond, null = both[:B], both[B:]
    return null + guidance * (cond - null)


@torch.no_grad()
def ddim_sample(model, audio: Tensor, steps: int = 4, prefix: Tensor | None = None, seed: int = 0,
                frame_offset: int = 0, guidance: float = 1.0, noise: Tensor | None = None) -> Tensor:
    """ddim_loop without gradients: what the engine runs."""
    return ddim_loop(model, audio, steps, prefix, seed, frame_offset, guidance, noise)


def ddim_loop(model, audio: Tensor, steps: int = 4, prefix: Tensor | None = None, seed: int = 0,
              frame_offset: int = 0, guidance: float = 1.0, noise: Tensor | None = None) -> Tensor:
    """Deterministic DDIM (eta = 0, x0-parameterisation): audio [B, T, audio_dim] -> x0 [B, T, K, C].
    Differentiable in the model and the audio (distill/finetune.py trains through it).

    `model` is any module with `.config` (a MotionDiTConfig) and model(x_t, t, audio, audio_mask) -> x0_hat.
    prefix [B, P, K, C]: the known first P frames. Before every model call the first P frames of x_t are
    replaced by q_sample(prefix, t, eps_frame) (inpainting); the output's first P frames equal prefix exactly.
    The starting noise of frame i, also the eps of its inpainting, depends only on (seed, row, frame_offset + i);
    or it is given: noise [B, T, K, C] (sample_windows stacks the noise of windows from different streams).
    """
    cfg = model.config
    check_tensor("audio", audio, "[B, T, D]")
    B, T, D = audio.shape
    if D != cfg.audio_dim or not 1 <= T <= cfg.max_len:
        raise ValueError(f"audio: must be [B, T in [1, {cfg.max_len}], audio_dim={cfg.audio_dim}], "
                         f"got {tuple(audio.shape)}")
    if not isinstance(steps, int) or not 1 <= steps <= cfg.diffusion_steps:
        raise ValueError(f"steps: must be an int in [1, {cfg.diffusion_steps}], got {steps!r}")
    if not isinstance(frame_offset, int) or frame_offset < 0:
        raise ValueError(f"frame_offset: must be an int >= 0, got {frame_offset!r}")
    if not isinstance(seed, int):
        raise ValueError(f"seed: must be an int, got {seed!r}")
    if not math.isfinite(float(guidance)):
        raise ValueError(f"guidance: must be finite, got {guidance!r}")
    K, C = cfg.n_slots, cfg.channels
    P = 0
    if prefix is not None:
        check_tensor("prefix", prefix, "[B, P, K, C]")
        P = prefix.shape[1]
        if prefix.shape[0] != B or tuple(prefix.shape[2:]) != (K, C) or P > T:
            raise ValueError(f"prefix: must be [B={B}, P <= {T}, K={K}, C={C}], got {tuple(prefix.shape)}")
        prefix = prefix.to(audio.device, torch.float32)

    alpha_bar = alpha_bar_schedule(cfg.diffusion_steps, cfg.schedule)
    if noise is None:
        noise = frame_noise(seed, frame_offset, B, T, K, C)
    elif tuple(noise.shape) != (B, T, K, C):
        raise ValueError(f"noise: must be [B={B}, T={T}, K={K}, C={C}], got {tuple(noise.shape)}")
    noise = noise.to(audio.device, torch.float32)
    ts = sampling_timesteps(cfg.diffusion_steps, steps)
    x = noise.clone()
    for i, t in enumerate(ts):
        a = float(alpha_bar[t])
        if P:
            x[:, :P] = math.sqrt(a) * prefix + math.sqrt(1 - a) * noise[:, :P]
        x0_hat = predict_x0(model, x, t, audio, float(guidance))
        if i == len(ts) - 1:
            x = x0_hat.float().clone()
            break
        a_prev = float(alpha_bar[ts[i + 1]])
        eps = (x - math.sqrt(a) * x0_hat) / math.sqrt(1 - a)
        x = math.sqrt(a_prev) * x0_hat + math.sqrt(1 - a_prev) * eps
    if P:
        x[:, :P] = prefix
    return x


def _model_device(model, fallback: torch.device) -> torch.device:
    p = next(iter(model.parameters()), None) if isinstance(model, nn.Module) else None
    return p.device if p is not None else fallback


def generate(model, audio: Tensor, steps: int = 4, seed: int = 0, guidance: float = 1.0) -> Tensor:
    """Offline: audio [T, audio_dim] -> motion [T, K, C]. Windows of config.window frames, window k starting at
    k (window - overlap), each with the previous window's last `overlap` frames as its inpainted prefix."""
    cfg = model.config
    check_tensor("audio", audio, "[T, D]")
    if audio.shape[1] != cfg.audio_dim:
        raise ValueError(f"audio: must be [T, audio_dim={cfg.audio_dim}], got {tuple(audio.shape)}")
    audio = audio.to(_model_device(model, audio.device), torch.float32)
    T, W, O = audio.shape[0], cfg.window, cfg.overlap
    out = torch.zeros(T, cfg.n_slots, cfg.channels, device=audio.device)
    produced = 0
    while produced < T:
        start = max(0, produced - O)
        end = min(start + W, T)
        prefix = out[start:produced][None] if produced > start else None
        win = ddim_sample(model, audio[start:end][None], steps, prefix, seed, start, guidance)[0]
        out[produced:end] = win[produced - start:]
        produced = end
    return out


@dataclass
class Window:
    """One DiT window a MotionStream asks for: audio [T, audio_dim], the known first frames prefix [P, K, C]
    (None: P = 0), and what fixes its noise (seed, frame offset) and its sampling (steps, guidance)."""
    model: nn.Module
    audio: Tensor
    prefix: Tensor | None
    seed: int
    offset: int
    steps: int
    guidance: float

    def prefix_batch(self) -> Tensor | None:
        return None if self.prefix is None else self.prefix[None]

    def key(self) -> tuple:
        """Windows with equal keys can be sampled as one batch."""
        P = 0 if self.prefix is None else self.prefix.shape[0]
        return id(self.model), self.audio.shape[0], P, self.steps, float(self.guidance)

    @staticmethod
    def run(windows: list["Window"]) -> list[Tensor]:
        """The request protocol of engine/motion/batch.py: sample_windows."""
        return sample_windows(windows)


def sample_windows(windows: list[Window]) -> list[Tensor]:
    """Sample many streams' windows, one ddim_sample per group of equal keys (same model, length, prefix length
    and sampling): -> each window's motion [T, K, C], in order. Each row keeps its own stream's noise (seed, frame
    offset, row 0), so a window comes out as it would alone, up to the float rounding of a bigger matmul."""
    out: list[Tensor | None] = [None] * len(windows)
    groups: dict[tuple, list[int]] = {}
    for i, w in enumerate(windows):
        groups.setdefault(w.key(), []).append(i)
    for rows in groups.values():
        first = windows[rows[0]]
        if len(rows) == 1:                                   # alone: the stream's own noise, as push always did
            out[rows[0]] = ddim_sample(first.model, first.audio[None], first.steps, first.prefix_batch(), first.seed,
                                       first.offset, first.guidance)[0]
            continue
        cfg = first.model.config
        T = first.audio.shape[0]
        noise = torch.cat([frame_noise(windows[i].seed, windows[i].offset, 1, T, cfg.n_slots, cfg.channels)
                           for i in rows])
        audio = torch.stack([windows[i].audio for i in rows])
        prefix = None if first.prefix is None else torch.stack([windows[i].prefix for i in rows])
        x = ddim_sample(first.model, audio, first.steps, prefix, 0, 0, first.guidance, noise)
        for j, i in enumerate(rows):
            out[i] = x[j]
    return out


class MotionStream:
    """Live motion: push audio frames as they arrive, get their motion frames at once (zero frames of latency).

    Each window is the last `context` frames already produced (the model's overlap unless given; fewer at the
    start; their audio is kept) as an inpainted prefix, plus at most max_new new frames, and never more than
    config.window frames in all. With max_new None the new part is window - prefix (window - overlap once
    running), so pushing the audio in chunks of window, then window - overlap, ... reproduces `generate` exactly
    (with the default context). A shorter context makes each window cheaper (engine.runtime.EngineConfig.context).
    """

    def __init__(self, model, steps: int = 4, seed: int = 0, max_new: int | None = None, guidance: float = 1.0,
                 context: int | None = None):
        cfg = model.config
        if max_new is not None and (not isinstance(max_new, int) or max_new < 1):
            raise ValueError(f"max_new: must be None or an int >= 1, got {max_new!r}")
        if context is not None and (not isinstance(context, int) or not 0 <= context <= cfg.overlap):
            raise ValueError(f"context: must be None or an int in [0, overlap={cfg.overlap}], got {context!r}")
        self.context = cfg.overlap if context is None else context
        if not isinstance(steps, int) or not 1 <= steps <= cfg.diffusion_steps:
            raise ValueError(f"steps: must be an int in [1, {cfg.diffusion_steps}], got {steps!r}")
        self.model, self.steps, self.seed, self.max_new, self.guidance = model, steps, seed, max_new, guidance
        self.reset()

    def reset(self) -> None:
        """Forget all history: the next push starts a new clip at frame 0."""
        cfg = self.model.config
        self.produced = 0
        self._audio = torch.zeros(0, cfg.audio_dim)                   # [<= overlap, audio_dim]
        self._motion = torch.zeros(0, cfg.n_slots, cfg.channels)      # [<= overlap, K, C]

    def push(self, audio_frames: Tensor) -> Tensor:
        """audio_frames [t, audio_dim] (t >= 0) -> the motion of exactly those frames [t, K, C]."""
        return run_alone(self.push_steps(audio_frames))

    def push_steps(self, audio_frames: Tensor):
        """push as a generator: it yields each DiT window to sample (a Window), is sent the sampled window
        [T, K, C] back, and returns the motion [t, K, C]. Whoever drives it may sample the windows of many
        streams in one batch (sample_windows); push samples each alone."""
        cfg = self.model.config
        check_tensor("audio_frames", audio_frames, "[t, D]")
        if audio_frames.shape[1] != cfg.audio_dim:
            raise ValueError(f"audio_frames: must be [t, audio_dim={cfg.audio_dim}], got {tuple(audio_frames.shape)}")
        dev = _model_device(self.model, audio_frames.device)
        audio_frames = audio_frames.to(dev, torch.float32)
        self._audio, self._motion = self._audio.to(dev), self._motion.to(dev)
        W, O, n_in = cfg.window, cfg.overlap, audio_frames.shape[0]
        outs, pos = [], 0
        while pos < n_in:
            P = min(self.context, self._motion.shape[0])
            n = min(n_in - pos, W - P, self.max_new or W)
            chunk = audio_frames[pos:pos + n]
            window_audio = torch.cat([self._audio[self._audio.shape[0] - P:], chunk])
            prefix = self._motion[self._motion.shape[0] - P:] if P else None
            win = yield Window(self.model, window_audio, prefix, self.seed, self.produced - P, self.steps,
                               self.guidance)
            new = win[P:]
            outs.append(new)
            self._audio = torch.cat([self._audio, chunk])[-O:] if O else self._audio[:0]
            self._motion = torch.cat([self._motion, new])[-O:] if O else self._motion[:0]
            self.produced += n
            pos += n
        return torch.cat(outs) if outs else torch.zeros(0, cfg.n_slots, cfg.channels, device=dev)
