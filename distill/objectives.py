"""The objectives of the three learning stages after fit4d, as modules: forward(batch) -> loss dict.

Wrapping each in one module is what lets the same code run under DDP (distill/dist.py): every trained
parameter sits in the module DDP wraps, and forward is the only entry point.

    EmbeddingObjective  (AudioAvatar §3.1)  audio encoder + E_X: frame- and patch-level InfoNCE between the
                        encoder's features and the pseudo-GT particle motion of the same window
    MotionObjective     (§3.2)  MotionDiT L_simple (x0 prediction, classifier-free audio dropout), and the
                        face/hand refiner learning to correct the DiT's own DDIM samples toward the pseudo-GT
                        (conditioned on the frame index t); the audio encoder is frozen after the embedding
                        stage, or trained here from scratch without it (the "without embedding" ablation)
    FinetuneObjective   (§3.3)  end to end: the DiT's DDIM sample (with gradients) -> refiner -> decoder ->
                        rendered frames, against the teacher: L1 + SSIM, the trajectory loss on the projected
                        anchor Gaussians vs the 2-D tracks, ARAP between k-nearest Gaussians across adjacent
                        frames, the audio-motion sync of the embedding, L_simple to keep the DiT a denoiser,
                        and SDS through the teacher's score when it is a diffusion model
Batches come from distill/pipeline.py's batch functions: {"index": window indices, "generator": ...}.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from distill.dataset import Windows, encode_windows
from distill.losses import arap_loss, knn_graph, photometric_loss, trajectory_loss
from distill.view import TeacherView, crop_frames
from engine.motion.dit import ddim_loop


def _seed(generator: torch.Generator) -> int:
    return int(torch.randint(0, 2 ** 31 - 1, (1,), generator=generator))


class EmbeddingObjective(nn.Module):
    def __init__(self, encoder: nn.Module, embedding: nn.Module, windows: Windows):
        super().__init__()
        self.encoder, self.embedding, self.windows = encoder, embedding, windows

    def forward(self, batch: dict) -> dict[str, Tensor]:
        feats = encode_windows(self.encoder, self.windows, batch["index"])
        motion, mask = self.windows.motion(batch["index"])
        return self.embedding.losses(feats, motion, mask)


class MotionObjective(nn.Module):
    def __init__(self, encoder: nn.Module, dit: nn.Module, refiner: nn.Module, windows: Windows,
                 train_encoder: bool, sample_steps: int, refiner_batch: int):
        super().__init__()
        self.encoder, self.dit, self.refiner, self.windows = encoder, dit, refiner, windows
        self.train_encoder, self.sample_steps, self.refiner_batch = train_encoder, sample_steps, refiner_batch
        encoder.requires_grad_(train_encoder)

    def forward(self, batch: dict) -> dict[str, Tensor]:
        index, g = batch["index"], batch["generator"]
        with torch.set_grad_enabled(self.train_encoder and torch.is_grad_enabled()):
            feats = encode_windows(self.encoder, self.windows, index)                  # [B, L, D]
        x0, mask = self.windows.motion(index)                                          # [B, L, K_c, 3], [B, K_c]
        out = self.dit.loss(x0, feats, mask, generator=g)
        n = min(self.refiner_batch, len(index))
        with torch.no_grad():
            sample = ddim_loop(self.dit, feats[:n].detach(), self.sample_steps, seed=_seed(g))
        t = self.windows.starts(index[:n])[:, None] + torch.arange(self.windows.length)[None]
        ref = self.refiner.loss(sample, x0[:n], feats[:n].detach(), t, mask[:n])
        return {"loss": out["loss"] + ref["loss"], "loss_simple": out["loss_simple"],
                "loss_refine": ref["loss_refine"]}


class FinetuneObjective(nn.Module):
    def __init__(self, encoder, dit, refiner, decoder, embedding, view: TeacherView, windows: Windows, cfg,
                 sample_steps: int, person: Tensor, crop, teacher=None):
        """cfg: distill.config.FinetuneConfig. person [H, W] bool: the person's mask in the teacher's reference
        (where the photometric loss counts); crop (x0, y0, w, h) or None: the window rendered for it.
        teacher: a diffusion Teacher for SDS, or None."""
        super().__init__()
        self.encoder, self.dit, self.refiner, self.decoder = encoder, dit, refiner, decoder
        self.embedding = embedding
        self.view, self.windows, self.cfg, self.sample_steps = view, windows, cfg, sample_steps
        self.crop, self.teacher = crop, teacher
        self.mask = crop_frames(person[None, :, :, None], crop)[0, ..., 0]               # [h, w]
        encoder.requires_grad_(False)
        if embedding is not None:
            embedding.requires_grad_(False)
        g0 = view.g0.means
        pick = torch.randperm(g0.shape[0], generator=torch.Generator().manual_seed(0))[:cfg.arap_points]
        self.arap_index = pick
        self.arap_neighbours = knn_graph(g0[pick].float(), min(cfg.arap_k, pick.numel() - 1))
        self.track_px = max(view.H, view.W) / 64.0               # trajectory loss unit (config: w_traj)
        # a particle's anchor Gaussian sits near it, not on it: compare motions, i.e. shift the tracks (which
        # start at the particles) by each anchor's rest offset [K, 2]
        self.anchor_offset = view.project(view.g0.means[view.anchors]) - view.particle_pixels()

    def forward(self, batch: dict) -> dict[str, Tensor]:
        cfg, w = self.cfg, self.windows
        index, g = batch["index"], batch["generator"]
        with torch.no_grad():
            feats = encode_windows(self.encoder, w, index)                             # [B, L, D]
        x0, mask = w.motion(index)
        B, L = x0.shape[:2]
        # 1. motion as the engine makes it: DDIM from the DiT, then the refiner (time index t), with gradients
        motion = ddim_loop(self.dit, feats, self.sample_steps, seed=_seed(g))
        starts = w.starts(index)
        t = starts[:, None] + torch.arange(L)[None]
        motion = self.refiner(motion, feats, t)                                        # [B, L, K_c, 3]
        out: dict[str, Tensor] = {}
        total = torch.zeros(())
        if cfg.w_simple:
            simple = self.dit.loss(x0, feats, mask, generator=g)["loss"]
            out["loss_simple"], total = simple.detach(), total + cfg.w_simple * simple
        if cfg.w_sync and self.embedding is not None:
            sync = 1.0 - self.embedding.sync_score(feats, motion, mask).mean()
            out["loss_sync"], total = sync.detach(), total + cfg.w_sync * sync
        # 2. render F consecutive frames of each window
        F = min(cfg.frames, L)
        offset = torch.randint(0, L - F + 1, (B,), generator=g)
        frames = torch.stack([motion[b, offset[b]:offset[b] + F] for b in range(B)])    # [B, F, K_c, 3]
        world = self.view.to_world(frames).flatten(0, 1)                               # [B F, K, 3]
        r = self.view.render(self.decoder, world, self.crop, self.arap_index)
        clip_frames, tracks, valid = [], [], []
        for b, i in enumerate(index):
            c, s = w.items[i]
            clip = w.clips[c]
            lo = s + int(offset[b])
            clip_frames.append(torch.from_numpy(np.array(clip.frames[lo:lo + F])))
            tracks.append(clip.tracks[lo:lo + F])
            valid.append(clip.valid[lo:lo + F] & clip.slot_mask[self.view.slots][None])
        target = crop_frames(torch.cat(clip_frames), self.crop).float() / 255.0          # [B F, h, w, 3]
        photo = photometric_loss(r["rgb"], target, self.mask[None].expand(B * F, -1, -1))
        total = total + cfg.w_l1 * photo["loss_l1"] + cfg.w_ssim * photo["loss_ssim"]
        out.update(loss_l1=photo["loss_l1"].detach(), loss_ssim=photo["loss_ssim"].detach(), psnr=photo["psnr"])
        traj = trajectory_loss(r["anchors"], torch.cat(tracks) + self.anchor_offset, torch.cat(valid), self.track_px)
        out.update(loss_traj=traj["loss_traj"].detach(), traj_px=traj["traj_px"])
        if cfg.w_traj:
            total = total + cfg.w_traj * traj["loss_traj"]
        arap = arap_loss(r["points"].view(B, F, -1, 3), self.arap_neighbours,
                         self.view.g0.means[self.arap_index])["loss_arap"]
        out["loss_arap"] = arap.detach()
        if cfg.w_arap:
            total = total + cfg.w_arap * arap
        if cfg.w_vsd and self.teacher is not None:
            first = [w.items[i][1] + int(offset[b]) for b, i in enumerate(index)]
            sds = self._sds(r["rgb"], batch, first, F)
            out["loss_sds"], total = sds.detach(), total + cfg.w_vsd * sds
        out["loss"] = total
        return out

    def _sds(self, rgb: Tensor, batch: dict, first: list[int], F: int) -> Tensor:
        """SDS through the diffusion teacher's score on the rendered frames (distill/vsd.py: MSE to a detached
        target whose gradient is w(t) (eps_hat - eps)). batch["teacher_conditions"]: the whole clip's
        conditions per window (teacher.make_conditions), cut here to the F frames from `first` on. This is
        VSD's SDS form: the LoRA score of the renders' own distribution (distill.vsd.lora_denoise_loss) is not
        trained here, so eps stands in for it."""
        B = len(first)
        from distill.vsd import sds_weight, vsd_loss
        teacher, g = self.teacher, batch["generator"]
        cfg = teacher.config
        images = torch.nn.functional.interpolate(rgb.permute(0, 3, 1, 2), size=(cfg.height, cfg.width),
                                                 mode="bilinear", align_corners=False) * 2 - 1  # [B F, 3, H, W]
        latents = teacher.encode(images.to(teacher.dtype))                                  # [B F, 4, h, w]
        latents = latents.view(B, F, *latents.shape[1:]).transpose(1, 2)                   # [B, 4, F, h, w]
        alphas = teacher.components.scheduler().alphas_cumprod.to(latents.device)
        t = torch.randint(20, int(0.98 * alphas.numel()), (B,), generator=g)
        noise = torch.randn(latents.shape, generator=g).to(latents)
        total = torch.zeros(())
        for b, full in enumerate(batch["teacher_conditions"]):
            lo = first[b]
            cond = {"reference_latents": full["reference_latents"], "audio": full["audio"][:, lo:lo + F],
                    "pose": full["pose"][:, :, lo:lo + F]}

            def score(x_t, tt, cond=cond):
                return teacher.score(x_t, tt, cond)
            total = total + vsd_loss(score, latents[b:b + 1], t[b:b + 1], noise[b:b + 1],
                                     sds_weight(alphas, t[b:b + 1]), alphas_cumprod=alphas)["loss_sds"]
        return total / B
