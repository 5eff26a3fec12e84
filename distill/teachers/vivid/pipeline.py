"""VividAnimator components, their folder format, condition building and sampling (WACV 2026).

Components: the SD VAE, the ReferenceNet and whisper features of the shared toolkit (sd_video/), the VividUNet3D
denoiser (unet.py), the light conv hand encoder (hands.py) and the HCC VQ-VAE (hcc.py, frozen).
Folder (`save_components` / `build_components(cfg with weights_dir)`; no weights were released, so this is the
format of our own saves):
    config.json                    the VividAnimatorConfig it was saved with (architecture keys must match)
    {vae, reference_unet, denoiser, hand_encoder, audio}.safetensors
    hcc/                           engine.pretrained folder of the HCC VQ-VAE
Sampling (`sample`, numbered steps):
1. DDIM (cfg.prediction_type; 30 steps full size), eta 0.
2. initial noise N(0, 1) * init_noise_sigma.
3. the ReferenceNet runs once on the reference latent; the hand heatmaps go through the hand encoder once; F_h
   (HCC codes of the reference's hand crops) is computed once by the caller (`prepare_conditions`).
4. temporal windows of 24 frames (paper) overlapping by cfg.context_overlap, shifted by overlap * step
   (sd_video `context_windows`); predictions averaged over the windows covering a frame.
5. two-scale classifier-free guidance (paper: audio 2.5, image 2.5):
       e = e(0, 0) + s_img (e(img, 0) - e(0, 0)) + s_aud (e(img, aud) - e(img, 0))
   "img" = reference attention + HCC codebook attention; "aud" = both DSAA streams (zeros: no audio). The hand-pose
   features are a structural control and are kept in every branch (our choice).
6. DDIM step on the whole video; the VAE decodes frame by frame (sd_video latents_to_frames).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from distill.teachers.sd_video.audio import WhisperAudioFeatures
from distill.teachers.sd_video.components import VideoComponents, load_strict
from distill.teachers.sd_video.images import (decode_latents, encode_images, encode_images_grad, image_to_tensor,
                                              latents_to_frames)
from distill.teachers.sd_video.pose import PoseEncoder
from distill.teachers.sd_video.reference import build_reference_unet, check_pairing, reference_tokens
from distill.teachers.sd_video.sampling import check_clip, context_windows, denoise_step, start_sampling
from engine.pretrained import atomic_dir_write

from .hands import box_mask, check_hand_keypoints, crop_boxes, hand_boxes, hand_heatmaps, make_hand_encoder
from .hcc import HandCodebookVAE
from .unet import VividUNet3D

# with the TeacherPipeline functions (distill/teachers/base.py); the image/latent ones are sd_video/images.py's
__all__ = ["Components", "SampleInputs", "build_components", "decode_latents", "encode_images", "encode_images_grad",
           "guided_prediction", "image_to_tensor", "latents_to_frames", "prepare_conditions", "reference_tokens",
           "sample", "save_components", "to_epsilon"]

MODULE_FILES = ("vae", "reference_unet", "denoiser", "hand_encoder", "audio")
# keys that change no weight: a folder saved with other values of these still loads
RUNTIME_KEYS = {"weights_dir", "random_init", "device", "dtype", "num_inference_steps", "audio_guidance_scale",
                "image_guidance_scale", "context_frames", "context_overlap", "head_box", "hand_sigma",
                "hand_box_margin"}


@dataclass
class Components(VideoComponents):
    reference_unet: nn.Module
    denoiser: VividUNet3D
    hand_encoder: PoseEncoder
    audio: WhisperAudioFeatures
    hcc: HandCodebookVAE


def _architecture(cfg) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()
            if k not in RUNTIME_KEYS}


def save_components(comp: Components, path: str | Path) -> Path:
    """Write the folder described in the module docstring (atomically: a crash leaves no half folder)."""
    states = {name: {k: v.detach().contiguous().cpu() for k, v in comp.modules()[name].state_dict().items()}
              for name in MODULE_FILES}

    def write(tmp: Path) -> None:
        (tmp / "config.json").write_text(json.dumps(dataclasses.asdict(comp.cfg), indent=1))
        for name, state in states.items():
            save_file(state, str(tmp / f"{name}.safetensors"))
        comp.hcc.save_pretrained(tmp / "hcc")
    return atomic_dir_write(path, write, marker="config.json")


def _check_folder(cfg) -> Path:
    root = Path(cfg.weights_dir)
    if not root.is_dir():
        raise ValueError(f"weights_dir: {str(root)!r} is not a directory (expected a folder written by "
                         f"distill.teachers.vivid.pipeline.save_components)")
    missing = [str(root / f) for f in ("config.json", *(f"{n}.safetensors" for n in MODULE_FILES),
                                       "hcc/config.json", "hcc/model.safetensors") if not (root / f).is_file()]
    if missing:
        raise ValueError(f"weights_dir: missing file(s): {'; '.join(missing)}")
    saved = json.loads((root / "config.json").read_text())
    want = _architecture(cfg)
    wrong = {k: (saved.get(k), v) for k, v in want.items() if saved.get(k) != v}
    if wrong:
        raise ValueError(f"weights_dir: {root / 'config.json'} describes another architecture (saved, asked): {wrong}")
    return root


def build_components(cfg) -> Components:
    """All modules for cfg: from cfg.weights_dir (a save_components folder), or random when cfg.random_init."""
    # 1. where the weights come from
    if cfg.weights_dir:
        root = _check_folder(cfg)
    elif cfg.random_init:
        root = None
    else:
        raise ValueError("weights_dir: required (a folder written by save_components; VividAnimator released no "
                         "weights); set random_init=True for a randomly initialised model")
    # 2. modules
    vae = AutoencoderKL(**cfg.vae_kwargs())
    reference_unet = build_reference_unet(cfg)
    denoiser = VividUNet3D(cfg)
    check_pairing(reference_unet, denoiser)
    comp = Components(cfg, vae, reference_unet, denoiser, make_hand_encoder(cfg), WhisperAudioFeatures(cfg),
                      HandCodebookVAE(cfg.hcc_config()))
    # 3. weights
    if root is not None:
        for name in MODULE_FILES:
            load_strict(comp.modules()[name], load_file(str(root / f"{name}.safetensors")), f"{name}.safetensors")
        comp.hcc = HandCodebookVAE.from_pretrained(root / "hcc")
        if comp.hcc.config != cfg.hcc_config():
            raise ValueError(f"weights_dir: hcc/config.json {comp.hcc.config} differs from the config's "
                             f"{cfg.hcc_config()}")
    comp.hcc.eval().requires_grad_(False)                # pretrained offline, frozen (paper)
    comp.place()
    return comp


# --- conditions --------------------------------------------------------------------------------------------------
@dataclass
class SampleInputs:
    ref_latents: Tensor                 # [1, 4, h, w]
    audio: Tensor                       # [1, F, T, D_a] W_a
    hand_heatmaps: Tensor               # [1, 2, F, H, W]
    head_mask: Tensor                   # [1, F, h, w]
    hand_tokens: Tensor | None = None   # [1, 2 g^2, D_code] F_h
    hand_mask: Tensor | None = None     # [1, F, h, w]

    def as_dict(self) -> dict:
        return {"reference_latents": self.ref_latents, "audio": self.audio, "hand_heatmaps": self.hand_heatmaps,
                "head_mask": self.head_mask, "hand_tokens": self.hand_tokens, "hand_mask": self.hand_mask}


@torch.no_grad()
def prepare_conditions(comp: Components, ref_image: Tensor, audio_tokens: Tensor, hand_poses=None,
                       reference_hands=None, head_box=None) -> SampleInputs:
    """ref_image [1, 3, H, W] in [-1, 1]; audio_tokens [1, F, T, D_a]; hand_poses keypoints [>= F, 2, 21, 2] or
    None; reference_hands [2, 21, 2] (the reference photo's hands; default: the first driving frame's, which PCT
    has put on the reference's body); head_box (x0, y0, x1, y1) frame fractions (default cfg.head_box)."""
    cfg = comp.cfg
    f = audio_tokens.shape[1]
    dtype, device = ref_image.dtype, ref_image.device
    h, w = cfg.latent_hw
    box = torch.tensor(head_box if head_box is not None else cfg.head_box, dtype=torch.float32)
    if box.shape != (4,):
        raise ValueError(f"head_box: expected (x0, y0, x1, y1), got {box.tolist()}")
    head = box_mask(box.view(1, 1, 4).expand(f, 1, 4), h, w)[None]
    inputs = SampleInputs(encode_images(comp, ref_image), audio_tokens,
                          torch.zeros(1, 2, f, cfg.height, cfg.width), head)
    if hand_poses is not None:
        kp = check_hand_keypoints(hand_poses, f)
        inputs.hand_heatmaps = hand_heatmaps(kp, cfg.height, cfg.width, cfg.hand_sigma)[None]
        inputs.hand_mask = box_mask(hand_boxes(kp, cfg.hand_box_margin), h, w)[None]
        ref_kp = kp[0] if reference_hands is None else check_hand_keypoints(
            torch.as_tensor(reference_hands)[None], 1)[0]
        crops = crop_boxes(ref_image, hand_boxes(ref_kp, cfg.hand_box_margin)[None], cfg.hcc_crop)
        inputs.hand_tokens = comp.hcc.hand_tokens(crops.to(next(comp.hcc.parameters()).dtype))
    for name in ("hand_heatmaps", "head_mask", "hand_tokens", "hand_mask"):
        value = getattr(inputs, name)
        if value is not None:
            setattr(inputs, name, value.to(device, dtype))
    return inputs


# --- denoising ---------------------------------------------------------------------------------------------------
def guided_prediction(den: VividUNet3D, x: Tensor, t, cond: dict, audio_scale: float, image_scale: float) -> Tensor:
    """Two-scale classifier-free guidance (module docstring, step 5). cond: VividUNet3D.forward keyword arguments."""
    full = den(x, t, **cond)
    if audio_scale == 1.0 and image_scale == 1.0:
        return full
    no_audio = {**cond, "audio": torch.zeros_like(cond["audio"])}
    img = den(x, t, **no_audio)
    if image_scale == 1.0:
        return img + audio_scale * (full - img)
    unc = den(x, t, **{**no_audio, "reference": None, "hand_tokens": None})
    return unc + image_scale * (img - unc) + audio_scale * (full - img)


def to_epsilon(pred: Tensor, x: Tensor, t: Tensor, alphas_cumprod: Tensor, prediction_type: str) -> Tensor:
    """The model output -> predicted noise; v: eps = sqrt(a_t) v + sqrt(1 - a_t) x_t. t [B]; x [B, C, F, h, w]."""
    if prediction_type == "epsilon":
        return pred
    ab = alphas_cumprod.to(x.device)[t.long()].view(-1, 1, 1, 1, 1).to(x.dtype)
    return ab.sqrt() * pred + (1 - ab).sqrt() * x


def window_conditions(inputs: SampleInputs, hand_features: Tensor, reference: dict, idx: Tensor) -> dict:
    """The denoiser's keyword arguments for the frames idx."""
    return {"audio": inputs.audio[:, idx], "hand_features": hand_features[:, :, idx], "reference": reference,
            "hand_tokens": inputs.hand_tokens, "head_mask": inputs.head_mask[:, idx],
            "hand_mask": None if inputs.hand_mask is None else inputs.hand_mask[:, idx]}


@torch.no_grad()
def sample(comp: Components, inputs: SampleInputs, steps: int, audio_scale: float, image_scale: float,
           generator: torch.Generator, context_frames: int = 24, context_overlap: int = 4) -> Tensor:
    """-> latents [1, 4, F, h, w] (steps as in the module docstring)."""
    f = check_clip(inputs.audio, inputs.hand_heatmaps, "hand_heatmaps", frame_dim=2)
    # 1-2. scheduler, initial noise
    scheduler, latents = start_sampling(comp, steps, f, inputs.ref_latents, generator)
    # 3. reference tokens, hand features
    reference = reference_tokens(comp.reference_unet, inputs.ref_latents)
    hand_features = comp.hand_encoder(inputs.hand_heatmaps.to(latents.dtype))

    def predict(x: Tensor, idx: Tensor, t: Tensor) -> Tensor:
        cond = window_conditions(inputs, hand_features, reference, idx)
        return guided_prediction(comp.denoiser, x, t, cond, audio_scale, image_scale)
    # 4-6. denoise
    for i, t in enumerate(scheduler.timesteps):
        windows = context_windows(f, context_frames, context_overlap, shift=context_overlap * i)
        latents = denoise_step(scheduler, latents, t, windows, predict, generator)
    return latents

