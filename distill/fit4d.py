"""fit4d: the canonical avatar fitted to each teacher video, giving pseudo-ground-truth particle motions.

AudioAvatar's problem setting: a teacher video is explained as the canonical Gaussians G_0 deformed by per-frame
control-particle motions plus the decoder's ΔG_t. Three steps:

1. Per-frame particle motion from the tracks (`lift_tracks`). Each particle starts where the photo camera sees
   it (distill.view.TeacherView.particle_pixels); its 2-D track (distill/tracks.py) moves it by Δu pixels in
   frame t, which lifts to the world displacement in the plane through the particle parallel to the image
   (depth cannot be seen in one view, so it stays 0). Frames where a track is invalid are filled by linear
   interpolation in time between the valid ones (held at the ends); a particle valid in fewer than
   `min_valid` of the frames is left out of training (its slot mask is False). Result, per clip: canonical
   motion [T, K_c, 3] in face units and slot mask [K_c] (engine/avatar/particles), what the motion models learn.
2. Track calibration (`TrackGain`, `GainFit`): a tracker can follow a point by a consistent share of its true
   motion. On the procedural teacher, mediapipe's mesh follows the dropping chin by about half, and some lip
   points barely move. So each particle's pixel displacement gets a gain per image axis [K, 2], shared by all
   frames of all clips. The gains are fitted photometrically: the avatar, deformed by the lifted
   gain * displacement and with the decoder still at rest (ΔG = 0), is rendered on the face box at full
   resolution against the teacher's frames, by L1 + SSIM inside the person's mask. A gain starts at 1; a
   particle whose Gaussians the face box does not show gets no gradient and keeps 1. Tracks and pseudo-ground
   truth are then both calibrated, so the trajectory loss and the motion models see the same motion.
3. The decoder (`DecoderFit`): with those motions fixed, the per-avatar GaussianDecoder learns the ΔG_t
   (colour, scale, rotation, opacity, and a mean correction) that make the rendered avatar match the teacher's
   frames, by L1 + SSIM inside the person's mask, on the face box at full resolution (or the whole frame:
   `region`). It is trained like every
   stage (distill/train.py: checkpoints, resume, logs), over frames drawn from all training clips.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from distill.losses import photometric_loss
from distill.view import TeacherView
from engine.pretrained import Pretrained

REGIONS = ("face", "full")


@dataclass
class Fit4DConfig:
    min_valid: float = 0.5      # a particle tracked in fewer than this share of a clip's frames is masked out
    steps: int = 300            # decoder fit steps
    batch: int = 4              # frames per step
    region: str = "full"        # photometric loss on "full" (the whole frame) or "face" (the face box, full resolution)
    lr: float = 2e-3
    w_ssim: float = 0.2
    gain_steps: int = 400       # track calibration steps (0: no calibration, gains stay 1)
    gain_lr: float = 0.03
    gain_low: float = 0.25      # the gains are clamped to [gain_low, gain_high]
    gain_high: float = 4.0

    def __post_init__(self):
        if not 0.0 <= self.min_valid <= 1.0:
            raise ValueError(f"Fit4DConfig.min_valid: expected a share in [0, 1], got {self.min_valid}")
        if self.region not in REGIONS:
            raise ValueError(f"Fit4DConfig.region: expected one of {REGIONS}, got {self.region!r}")
        for name in ("batch",):
            if getattr(self, name) < 1:
                raise ValueError(f"Fit4DConfig.{name}: expected >= 1, got {getattr(self, name)}")
        for name in ("steps", "gain_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"Fit4DConfig.{name}: expected >= 0, got {getattr(self, name)}")
        if not 0 < self.gain_low <= 1 <= self.gain_high:
            raise ValueError(f"Fit4DConfig.gain_low/gain_high: expected 0 < low <= 1 <= high, got "
                             f"{self.gain_low}, {self.gain_high}")


def fill_gaps(values: Tensor, valid: Tensor) -> Tensor:
    """values [T, P, D], valid [T, P] bool -> values with invalid frames linearly interpolated in time between
    the nearest valid frames of the same point (held constant before the first and after the last; 0 where a
    point is never valid)."""
    T = values.shape[0]
    out = torch.zeros_like(values)
    t = torch.arange(T, dtype=values.dtype)
    for p in range(values.shape[1]):
        ok = valid[:, p].nonzero().squeeze(1)
        if ok.numel() == 0:
            continue
        known_t, known_v = ok.to(values.dtype), values[ok, p]                      # [n], [n, D]
        j = torch.searchsorted(known_t, t).clamp(1, max(ok.numel() - 1, 1))
        if ok.numel() == 1:
            out[:, p] = known_v[0]
            continue
        t0, t1 = known_t[j - 1], known_t[j]
        w = ((t - t0) / (t1 - t0)).clamp(0, 1)[:, None]
        out[:, p] = (1 - w) * known_v[j - 1] + w * known_v[j]
    return out


def track_displacement(view: TeacherView, points: Tensor, valid: Tensor, min_valid: float) -> tuple[Tensor, Tensor]:
    """Tracks of the avatar's particles (points [T, K, 2] pixels, valid [T, K]) -> (pixel displacement from
    the rest particles [T, K, 2], gaps filled, 0 for particles left out; keep [K] bool, the particles kept)."""
    K = view.avatar.particles.shape[0]
    if points.dim() != 3 or points.shape[1:] != (K, 2) or valid.shape != points.shape[:2]:
        raise ValueError(f"points/valid: expected [T, K={K}, 2] and [T, K], got {list(points.shape)} "
                         f"and {list(valid.shape)}")
    displacement = fill_gaps(points.float() - view.particle_pixels()[None], valid)            # [T, K, 2]
    keep = valid.float().mean(0) >= max(min_valid, 1e-9)                                     # [K]
    return displacement * keep[None, :, None], keep


def lift_displacement(view: TeacherView, displacement: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
    """track_displacement's output (pixels [T, K, 2], keep [K]) -> (canonical motion [T, K_c, 3] face units,
    slot mask [K_c] bool)."""
    world = view.lift(displacement)                                                          # [T, K, 3]
    mask = torch.zeros(view.to_canonical(world[:1]).shape[1], dtype=torch.bool)
    mask[view.slots[keep]] = True
    return view.to_canonical(world), mask


def lift_tracks(view: TeacherView, points: Tensor, valid: Tensor, min_valid: float) -> tuple[Tensor, Tensor]:
    """Tracks of the avatar's particles (points [T, K, 2] pixels, valid [T, K]) -> (canonical motion
    [T, K_c, 3] face units, slot mask [K_c] bool), uncalibrated."""
    return lift_displacement(view, *track_displacement(view, points, valid, min_valid))


def calibrate_tracks(view: TeacherView, points: Tensor, gain: Tensor) -> Tensor:
    """points [T, K, 2] pixels -> the rest particles + gain [K, 2] * (points - rest): the tracks as step 2
    calibrated them (what the finetune's trajectory loss compares with)."""
    rest = view.particle_pixels()
    return rest + gain.to(points) * (points - rest)


@dataclass
class TrackGainConfig:
    n_particles: int = 1
    low: float = 0.25
    high: float = 4.0


class TrackGain(Pretrained, nn.Module):
    """Per-particle gains [K, 2] (x, y) on tracked pixel displacements, clamped to [low, high]; 1 at init."""
    config_class = TrackGainConfig

    def __init__(self, config: TrackGainConfig | None = None):
        super().__init__()
        self.config = config or TrackGainConfig()
        self.gain = nn.Parameter(torch.ones(self.config.n_particles, 2))

    def forward(self) -> Tensor:
        return self.gain.clamp(self.config.low, self.config.high)


class GainFit(nn.Module):
    """Objective of step 2: batch {"displacement" [B, K, 2] px, "target" [B, h, w, 3], "mask" [B, h, w]}, target
    and mask cut to `crop` -> {"loss", "loss_l1", "loss_ssim", "psnr"}. The decoder is not trained here."""

    def __init__(self, view: TeacherView, decoder: nn.Module, gain: TrackGain, cfg: Fit4DConfig, crop):
        super().__init__()
        self.view, self.decoder, self.gain, self.cfg, self.crop = view, decoder, gain, cfg, crop

    def forward(self, batch: dict) -> dict[str, Tensor]:
        world = self.view.lift(batch["displacement"] * self.gain())
        rgb = self.view.render(self.decoder, world, self.crop)["rgb"]
        losses = photometric_loss(rgb, batch["target"], batch["mask"])
        losses["loss"] = losses["loss_l1"] + self.cfg.w_ssim * losses["loss_ssim"]
        return losses


class DecoderFit(nn.Module):
    """Objective of step 3: batch {"motion" [B, K, 3] world, "target" [B, h, w, 3], "mask" [B, h, w]}, target
    and mask cut to `crop` -> {"loss", "loss_l1", "loss_ssim", "psnr"}."""

    def __init__(self, view: TeacherView, decoder: nn.Module, cfg: Fit4DConfig, crop):
        super().__init__()
        self.view, self.decoder, self.cfg, self.crop = view, decoder, cfg, crop

    def forward(self, batch: dict) -> dict[str, Tensor]:
        rgb = self.view.render(self.decoder, batch["motion"], self.crop)["rgb"]
        losses = photometric_loss(rgb, batch["target"], batch["mask"])
        losses["loss"] = losses["loss_l1"] + self.cfg.w_ssim * losses["loss_ssim"]
        return losses
