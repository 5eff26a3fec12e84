"""The sampling scaffolding the SD-1.x video teachers share (the released EchoMimicV2 pipeline's, antgroup/echomimic_v2
src/pipelines/context.py and pipeline_echomimicv2.py):
- `check_clip`: batch-1 sampling inputs agree on the number of frames F.
- `start_sampling`: the DDIM scheduler at `steps`, and the initial noise [1, C, F, h, w] drawn on the CPU from the
  seed's generator (the same on every device), optionally clamped, times init_noise_sigma.
- `context_windows`: temporal windows of `size` frames overlapping by `overlap` ("uniform" schedule, wrapping
  around the clip), all shifted by `shift` frames (a teacher shifts them a little more at every step).
- `window_average`: a per-window result put back in place along the frames and averaged where windows overlap.
- `denoise_step`: one DDIM step (eta 0) of the whole clip from the window-averaged model output.
Each teacher's `sample` (its pipeline.py) puts these together with its own denoiser call and guidance.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def check_clip(audio: Tensor, condition: Tensor, name: str, frame_dim: int) -> int:
    """audio [1, F, L, D_a] and a per-frame condition (`name`) with F frames along frame_dim -> F; ValueError
    naming both shapes otherwise."""
    b, f = audio.shape[:2]
    if b != 1 or condition.shape[0] != 1 or condition.shape[frame_dim] != f:
        raise ValueError(f"inputs: expected batch 1 and {f} frames of {name}, got audio {list(audio.shape)}, "
                         f"{name} {list(condition.shape)}")
    return f


def start_sampling(comp, steps: int, num_frames: int, ref_latents: Tensor, generator: torch.Generator,
                   clamp: float | None = None):
    """-> (comp's DDIM scheduler set to `steps`, initial latents [1, C, num_frames, h, w] on the grid, device and
    dtype of ref_latents [1, C, h, w]): noise drawn on the CPU from `generator`, clamped to +-clamp when given,
    scaled by the scheduler's init_noise_sigma."""
    device = ref_latents.device
    scheduler = comp.scheduler()
    scheduler.set_timesteps(steps, device=device)
    size = (1, comp.cfg.latent_channels, num_frames, *ref_latents.shape[-2:])
    noise = torch.randn(size, generator=generator, device="cpu", dtype=torch.float32)
    if clamp is not None:
        noise = noise.clamp(-clamp, clamp)
    return scheduler, noise.to(device, ref_latents.dtype) * scheduler.init_noise_sigma


def context_windows(num_frames: int, size: int = 12, overlap: int = 3, shift: int = 0) -> list[list[int]]:
    """Frame windows covering [0, num_frames): starts 0, size-overlap, ... (wrapping), all shifted by `shift`."""
    if num_frames <= size:
        return [list(range(num_frames))]
    return [[(j + k + shift) % num_frames for k in range(size)] for j in range(0, num_frames, size - overlap)]


def window_average(latents: Tensor, windows: list[list[int]],
                   per_window: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """latents [1, C, F, h, w]; per_window(latents[:, :, idx] [1, C, W, h, w], idx [W] frame indices) ->
    [1, C, W, h, w] for each window. -> the results summed into their frames and divided by the number of windows
    covering each frame [1, C, F, h, w]."""
    f, device, dtype = latents.shape[2], latents.device, latents.dtype
    total = torch.zeros_like(latents)
    count = torch.zeros(f, device=device, dtype=dtype)
    for window in windows:
        idx = torch.tensor(window, device=device)
        total.index_add_(2, idx, per_window(latents[:, :, idx], idx))
        count.index_add_(0, idx, torch.ones(len(window), device=device, dtype=dtype))
    return total / count.view(1, 1, f, 1, 1)


def denoise_step(scheduler, latents: Tensor, t: Tensor, windows: list[list[int]],
                 predict: Callable[[Tensor, Tensor, Tensor], Tensor],
                 generator: torch.Generator | None = None) -> Tensor:
    """latents [1, C, F, h, w] at timestep t -> the latents one DDIM step (eta 0) later. predict(x [1, C, W, h, w]
    (the window's latents, scaled for t), idx [W], t) -> the model output for the window; outputs are averaged
    where windows overlap (window_average)."""
    pred = window_average(latents, windows, lambda x, idx: predict(scheduler.scale_model_input(x, t), idx, t))
    return scheduler.step(pred, t, latents, eta=0.0, generator=generator).prev_sample
