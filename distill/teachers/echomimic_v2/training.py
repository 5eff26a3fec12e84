"""EchoMimicV2 training pieces (paper: arXiv 2411.10061, "EchoMimicV2", sections on APDH, HPA and PhD loss).

The released repository ships inference code only, so these are written from the paper's description; where the
paper leaves a choice open, the choice made here is stated in the docstring.

- APDH (Audio-Pose Dynamic Harmonization): "pose sampling" removes the pose conditions lip -> head -> body over
  training (hand poses stay: they are the inference condition), while "audio diffusion" widens the region the
  audio cross-attention may change, lip -> head -> body. `APDHSchedule` maps the iteration to a stage; inside a
  stage each sample already takes the next stage's pose set with a probability that ramps from 0 to 1 (sampling,
  so the removal is gradual). The audio region is applied as a mask on the audio cross-attention output.
- HPA (Head Partial Attention): headshot clips are padded to the half-body canvas; the head mask restricts the audio
  cross-attention and the loss to the real (head) pixels, so the padding teaches nothing.
- PhD (Phase-specific Denoising) loss: the denoising trajectory is cut by timestep into the first 10% of the steps
  (t >= 0.9 T: pose-dominant: motion and contours), the middle 60% (detail-dominant: high frequencies, weighted to
  a detail mask, e.g. face and hands) and the last 30% (t < 0.3 T: quality-dominant: low-level statistics). The
  paper's low-level term is a perceptual (LPIPS) loss on decoded frames; LPIPS weights are not available offline
  here, so the default is a latent colour-statistics + L1 term and `low_level_fn` takes a perceptual loss instead.
Each loss returns the loss-dict contract {"loss_x": tensor, ...diagnostics}. Every denoising forward below runs the
ReferenceNet with autograd (it is trained with the denoiser in the released two-stage recipe).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from distill.teachers.sd_video.reference import capture_reference_tokens

POSE_PARTS = ("lip", "head", "body")           # removed in this order; "hand" is always kept
AUDIO_REGIONS = ("lip", "lip", "head", "body")  # audio region per stage


@dataclass
class TrainBatch:
    latents: Tensor        # [B, 4, F, h, w]  the video's VAE latents (x0)
    ref_latents: Tensor    # [B, 4, h, w]     the reference frame's latent
    audio: Tensor          # [B, F, L, D_a]   whisper tokens per frame
    pose: Tensor           # [B, 3, F, H, W]  rendered pose maps in [0, 1]


@dataclass
class DenoiseOut:
    pred: Tensor           # model output (v)
    target: Tensor         # v target
    x0_hat: Tensor         # predicted clean latents
    timesteps: Tensor      # [B]


def denoise(comp, batch: TrainBatch, timesteps: Tensor, noise: Tensor, audio_mask: Tensor | None = None,
            pose: Tensor | None = None) -> DenoiseOut:
    """One training forward: noise x0 at `timesteps` [B], predict v, recover x0_hat (v-prediction algebra)."""
    sched = comp.scheduler()
    x0 = batch.latents
    noisy = sched.add_noise(x0, noise, timesteps)
    target = sched.get_velocity(x0, noise, timesteps)
    reference = capture_reference_tokens(comp.reference_unet, batch.ref_latents)
    pose_feat = comp.pose_encoder(batch.pose if pose is None else pose)
    pred = comp.denoiser(noisy, timesteps, audio=batch.audio, pose_features=pose_feat, reference=reference,
                         audio_mask=audio_mask)
    ab = sched.alphas_cumprod.to(x0.device, x0.dtype)[timesteps].view(-1, 1, 1, 1, 1)
    x0_hat = ab.sqrt() * noisy - (1 - ab).sqrt() * pred           # x0 = sqrt(ab) x_t - sqrt(1 - ab) v
    return DenoiseOut(pred, target, x0_hat, timesteps)


# --- APDH ----------------------------------------------------------------------------------------------------------
@dataclass
class APDHSchedule:
    total_iterations: int
    boundaries: tuple[float, ...] = (0.25, 0.5, 0.75)   # training fractions where stages 1, 2, 3 begin

    def __post_init__(self):
        b = tuple(self.boundaries)
        if self.total_iterations < 1 or len(b) != len(POSE_PARTS) or list(b) != sorted(b) or not 0 < b[0] <= b[-1] < 1:
            raise ValueError(f"APDHSchedule: expected total_iterations >= 1 and {len(POSE_PARTS)} increasing "
                             f"boundaries in (0, 1), got {self.total_iterations}, {b}")

    def stage(self, iteration: int) -> tuple[int, float]:
        """-> (stage 0..3, progress inside the stage in [0, 1))."""
        p = min(max(iteration / self.total_iterations, 0.0), 1.0 - 1e-9)
        edges = (0.0, *self.boundaries, 1.0)
        s = sum(p >= e for e in self.boundaries)
        return s, (p - edges[s]) / (edges[s + 1] - edges[s])

    @staticmethod
    def pose_parts(stage: int) -> tuple[str, ...]:
        return POSE_PARTS[stage:] + ("hand",)

    @staticmethod
    def audio_region(stage: int) -> str:
        return AUDIO_REGIONS[stage]

    def sample(self, iteration: int, batch_size: int, generator: torch.Generator | None = None) -> list[int]:
        """Per-sample stage: the current one, or (with probability = progress) the next one."""
        s, progress = self.stage(iteration)
        if s == len(POSE_PARTS):
            return [s] * batch_size
        u = torch.rand(batch_size, generator=generator)
        return [s + int(v < progress) for v in u.tolist()]


def apdh_conditions(stages: list[int], parts: dict[str, Tensor], regions: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """parts: {lip, head, body, hand: [B, 3, F, H, W]} rendered pose maps; regions: {lip, head[, body]: [B, F, h, w]}
    -> (pose maps [B, 3, F, H, W], audio mask [B, F, h, w]) for each sample's stage."""
    missing = [k for k in (*POSE_PARTS, "hand") if k not in parts] + [k for k in ("lip", "head") if k not in regions]
    if missing:
        raise ValueError(f"apdh: missing pose parts / regions {missing}")
    poses, masks = [], []
    for i, s in enumerate(stages):
        kept = APDHSchedule.pose_parts(s)
        poses.append(torch.stack([parts[k][i] for k in kept]).amax(0))       # draw the kept parts together
        name = APDHSchedule.audio_region(s)
        masks.append(regions[name][i] if name in regions else torch.ones_like(regions["lip"][i]))
    return torch.stack(poses), torch.stack(masks)


def apdh_loss(comp, batch: TrainBatch, parts: dict[str, Tensor], regions: dict[str, Tensor], schedule: APDHSchedule,
              iteration: int, timesteps: Tensor, noise: Tensor, generator: torch.Generator | None = None) -> dict:
    stages = schedule.sample(iteration, batch.latents.shape[0], generator)
    pose, mask = apdh_conditions(stages, parts, regions)
    out = denoise(comp, batch, timesteps, noise, audio_mask=mask, pose=pose)
    return {"loss_apdh": F.mse_loss(out.pred.float(), out.target.float()),
            "apdh_stage": torch.tensor(stages, dtype=torch.float32).mean(),
            "apdh_audio_area": mask.detach().float().mean()}


# --- HPA -----------------------------------------------------------------------------------------------------------
def hpa_pad(frames: Tensor, canvas_hw: tuple[int, int], top: int = 0, pad_value: float = -1.0) -> tuple[Tensor, Tensor]:
    """Headshot frames [B, 3, F, Hh, Wh] in [-1, 1] -> (half-body canvas [B, 3, F, H, W], head mask [B, F, H, W]).

    The crop is centred horizontally at row `top` (the head sits at the top of a half-body frame); the rest of the
    canvas is `pad_value` (black) and mask 0."""
    b, c, f, hh, wh = frames.shape
    h, w = canvas_hw
    if hh + top > h or wh > w:
        raise ValueError(f"hpa_pad: a {hh}x{wh} crop at row {top} does not fit a {h}x{w} canvas")
    left = (w - wh) // 2
    canvas = frames.new_full((b, c, f, h, w), pad_value)
    canvas[..., top:top + hh, left:left + wh] = frames
    mask = frames.new_zeros((b, f, h, w))
    mask[..., top:top + hh, left:left + wh] = 1.0
    return canvas, mask


def latent_mask(mask: Tensor, factor: int) -> Tensor:
    """A pixel mask [B, F, H, W] -> the latent grid [B, F, H/f, W/f] (area fraction covered)."""
    b, f, h, w = mask.shape
    return F.avg_pool2d(mask.reshape(b * f, 1, h, w), factor).reshape(b, f, h // factor, w // factor)


def hpa_loss(comp, batch: TrainBatch, head_mask: Tensor, timesteps: Tensor, noise: Tensor) -> dict:
    """batch.latents encode the padded canvas; head_mask [B, F, h, w] (latent grid). Audio and loss: head only."""
    out = denoise(comp, batch, timesteps, noise, audio_mask=head_mask)
    m = head_mask[:, None].to(out.pred.dtype)                       # [B, 1, F, h, w]
    err = (out.pred.float() - out.target.float()) ** 2 * m
    loss = err.sum() / (m.sum() * out.pred.shape[1]).clamp_min(1.0)
    return {"loss_hpa": loss, "hpa_head_fraction": head_mask.detach().float().mean()}


# --- PhD -----------------------------------------------------------------------------------------------------------
@dataclass
class PhDPhases:
    """Where the phases lie on the trajectory, as fractions of T (paper: the first 10% and the last 30%)."""
    pose: float = 0.1      # the first fraction of the denoising steps: pose-dominant
    low: float = 0.3       # the last fraction: quality-dominant (low-level)


@dataclass
class PhDWeights:
    """The weights of the three phase terms, and the phases."""
    pose: float = 1.0
    detail: float = 1.0
    low: float = 1.0
    phases: PhDPhases = field(default_factory=PhDPhases)


def phd_phase(timesteps: Tensor, num_train_timesteps: int, phases: PhDPhases) -> Tensor:
    """timesteps [B] -> phase [B]: 0 = pose (t >= (1 - phases.pose) T), 2 = low-level (t < phases.low T),
    1 = detail (between)."""
    t = timesteps.float() / num_train_timesteps
    return torch.where(t >= 1 - phases.pose, 0, torch.where(t < phases.low, 2, 1))


def _per_sample(x: Tensor) -> Tensor:
    return x.float().flatten(1).mean(1)


def _sobel(x: Tensor) -> Tensor:
    """x [N, C, h, w] -> gradient magnitude per channel."""
    k = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]], device=x.device, dtype=x.dtype)
    kx = k.expand(x.shape[1], 1, 3, 3)
    gx = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kx, groups=x.shape[1])
    gy = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kx.transpose(-1, -2), groups=x.shape[1])
    return (gx ** 2 + gy ** 2 + 1e-12).sqrt()


def _laplacian(x: Tensor) -> Tensor:
    k = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], device=x.device, dtype=x.dtype)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k.expand(x.shape[1], 1, 3, 3), groups=x.shape[1])


def _frames(x: Tensor) -> Tensor:
    b, c, f, h, w = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)


def latent_low_level(x0_hat: Tensor, x0: Tensor) -> Tensor:
    """Per-sample low-level term on latents: L1 + per-frame channel mean/std match. -> [B]."""
    dims = (3, 4)
    stats = (x0_hat.mean(dims) - x0.mean(dims)).abs() + (x0_hat.std(dims) - x0.std(dims)).abs()
    return _per_sample((x0_hat - x0).abs()) + _per_sample(stats)


def phd_loss(out: DenoiseOut, x0: Tensor, num_train_timesteps: int, weights: PhDWeights | None = None,
             detail_mask: Tensor | None = None,
             low_level_fn: Callable[[Tensor, Tensor], Tensor] | None = None) -> dict:
    """Phase-specific loss on a denoising forward. x0, out.x0_hat [B, C, F, h, w]; detail_mask [B, F, h, w] or None.

    Every sample pays the v-prediction MSE; by the phase of its timestep it also pays
    pose: temporal-difference (motion) MSE + contour MSE (Sobel magnitude at half resolution),
    detail: Laplacian (high-frequency) L1, weighted by 1 + detail_mask,
    low: low_level_fn(x0_hat, x0) -> [B] (default latent_low_level)."""
    w = weights or PhDWeights()
    b, c, f = x0.shape[:3]
    phase = phd_phase(out.timesteps, num_train_timesteps, w.phases)
    base = _per_sample((out.pred.float() - out.target.float()) ** 2)
    xh, x = out.x0_hat.float(), x0.float()
    zero = torch.zeros(b, device=x.device)
    motion = _per_sample((xh.diff(dim=2) - x.diff(dim=2)) ** 2) if f > 1 else zero
    contour = _per_sample((_sobel(F.avg_pool2d(_frames(xh), 2)) - _sobel(F.avg_pool2d(_frames(x), 2))) ** 2
                          ).reshape(b, f).mean(1)
    dm = 1.0 if detail_mask is None else 1.0 + _frames(detail_mask[:, None].float())
    detail = _per_sample((dm * (_laplacian(_frames(xh)) - _laplacian(_frames(x))).abs())).reshape(b, f).mean(1)
    low = (low_level_fn or latent_low_level)(xh, x)
    extra = torch.where(phase == 0, w.pose * (motion + contour),
                        torch.where(phase == 1, w.detail * detail, w.low * low))
    total = (base + extra).mean()
    return {"loss_phd": total, "phd_base": base.detach().mean(),
            "phd_pose": (motion + contour).detach().mean(), "phd_detail": detail.detach().mean(),
            "phd_low": low.detach().mean(),
            "phd_phase_counts": torch.stack([(phase == k).sum() for k in range(3)]).detach()}
