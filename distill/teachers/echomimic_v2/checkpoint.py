"""Loading the released EchoMimicV2 weights from a local folder (no hub access).

Layout (antgroup/echomimic_v2 README "pretrained_weights", configs/prompts/infer.yaml, infer_acc.yaml; the weights
are at huggingface.co/BadToBest/EchoMimicV2 plus the two SD folders and whisper tiny):
    denoising_unet.pth | denoising_unet_acc.pth     spatial denoiser keys (no motion modules: issue #102 prints
                                                      them as missing when loading this file alone)
    motion_module.pth  | motion_module_acc.pth      the denoiser's motion_modules.* keys
    reference_unet.pth                              ReferenceNet (loaded strictly, as app.py does)
    pose_encoder.pth                                PoseEncoder
    audio_processor/tiny.pt                         OpenAI whisper tiny ("whisper_tiny.pt" accepted too: EchoMimic
                                                      v1 and an older app.py used that name)
    sd-image-variations-diffusers/unet/             config.json + weights: the SD-1.x layout and the denoiser's base
    sd-vae-ft-mse/                                  diffusers AutoencoderKL folder
Loading order of the denoiser as released (EMOUNet3DConditionModel.from_pretrained_2d + load_state_dict(strict=False)):
SD unet weights where name and shape match (the 768-wide cross-attention k/v do not: they are audio-width 384 here),
then the motion module file, then the denoising file. Differently from the released code, a shape mismatch in the
EchoMimicV2 files, or a parameter that no file provides, is an error here rather than a silently random weight.

Names: the denoiser, ReferenceNet and PoseEncoder here use the released parameter names, so their keys load as
they are. The whisper encoder is transformers' WhisperEncoder, whose names differ from OpenAI's: OPENAI_TO_HF_WHISPER
renames them (the mapping of transformers' models/whisper/convert_openai_to_hf.py, WHISPER_MAPPING).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor, nn

WHISPER_NAMES = ("audio_processor/tiny.pt", "audio_processor/whisper_tiny.pt")
SD_UNET_DIR, VAE_DIR = "sd-image-variations-diffusers/unet", "sd-vae-ft-mse"
WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")

# OpenAI whisper -> transformers WhisperEncoder (encoder part of convert_openai_to_hf.py's WHISPER_MAPPING)
OPENAI_TO_HF_WHISPER = (
    ("encoder.positional_embedding", "encoder.embed_positions.weight"),
    ("encoder.ln_post.", "encoder.layer_norm."),
    (".blocks.", ".layers."),
    (".attn.query.", ".self_attn.q_proj."),
    (".attn.key.", ".self_attn.k_proj."),
    (".attn.value.", ".self_attn.v_proj."),
    (".attn.out.", ".self_attn.out_proj."),
    (".attn_ln.", ".self_attn_layer_norm."),
    (".mlp.0.", ".fc1."),
    (".mlp.2.", ".fc2."),
    (".mlp_ln.", ".final_layer_norm."),
)


def checkpoint_files(accelerated: bool) -> dict[str, str]:
    suffix = "_acc" if accelerated else ""
    return {"denoising_unet": f"denoising_unet{suffix}.pth", "motion_module": f"motion_module{suffix}.pth",
            "reference_unet": "reference_unet.pth", "pose_encoder": "pose_encoder.pth"}


def _weights_in(folder: Path) -> Path | None:
    return next((folder / n for n in WEIGHT_NAMES if (folder / n).is_file()), None)


def check_weights_dir(weights_dir: str | Path, accelerated: bool = False) -> dict[str, Path]:
    """Resolve every file of the released layout; ValueError naming each missing file and where it was looked for."""
    root = Path(weights_dir)
    if not root.is_dir():
        raise ValueError(f"weights_dir: {str(root)!r} is not a directory (expected the EchoMimicV2 pretrained_weights "
                         f"layout: {', '.join(checkpoint_files(accelerated).values())}, {WHISPER_NAMES[0]}, "
                         f"{SD_UNET_DIR}/, {VAE_DIR}/)")
    found, missing = {}, []
    for key, name in checkpoint_files(accelerated).items():
        found[key] = root / name
        if not found[key].is_file():
            missing.append(str(root / name))
    whisper = next((root / n for n in WHISPER_NAMES if (root / n).is_file()), None)
    if whisper is None:
        missing.append(f"{root / WHISPER_NAMES[0]} (or {root / WHISPER_NAMES[1]})")
    found["whisper"] = whisper
    for key, sub in (("sd_unet", SD_UNET_DIR), ("vae", VAE_DIR)):
        folder = root / sub
        if not (folder / "config.json").is_file():
            missing.append(str(folder / "config.json"))
        weights = _weights_in(folder)
        if weights is None:
            missing.append(f"{folder / WEIGHT_NAMES[0]} (or {folder / WEIGHT_NAMES[1]})")
        found[key] = folder
        found[key + "_weights"] = weights
    if missing:
        raise ValueError("EchoMimicV2 weights: missing file(s): " + "; ".join(missing) +
                         f" (weights_dir={str(root)!r}, accelerated={accelerated})")
    return found


def load_file_state(path: Path) -> dict[str, Tensor]:
    """A .pth/.pt/.bin (torch) or .safetensors state dict, on the CPU, memory-mapped where possible."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path), device="cpu")
    state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state


def rename_openai_whisper_encoder(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """OpenAI whisper model_state_dict -> transformers WhisperEncoder state dict (encoder keys only, prefix dropped)."""
    out = {}
    for key, value in state.items():
        if not key.startswith("encoder."):
            continue                                    # the text decoder is not used
        new = key
        for old, rep in OPENAI_TO_HF_WHISPER:
            new = new.replace(old, rep)
        out[new[len("encoder."):]] = value
    return out


def load_whisper(features: nn.Module, path: Path, cfg) -> None:
    """Load an OpenAI whisper checkpoint ({"dims", "model_state_dict"}) into WhisperAudioFeatures.encoder."""
    ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or "model_state_dict" not in ckpt or "dims" not in ckpt:
        raise ValueError(f"{path}: not an OpenAI whisper checkpoint (expected keys 'dims' and 'model_state_dict')")
    dims = ckpt["dims"]
    want = {"n_mels": cfg.whisper_mels, "n_audio_state": cfg.audio_dim, "n_audio_head": cfg.whisper_heads,
            "n_audio_layer": cfg.whisper_layers, "n_audio_ctx": cfg.whisper_window_seconds * 50}
    wrong = {k: (dims.get(k), v) for k, v in want.items() if dims.get(k) != v}
    if wrong:
        raise ValueError(f"{path}: whisper dims do not match the config (file, config): {wrong}")
    features.encoder.load_state_dict(rename_openai_whisper_encoder(ckpt["model_state_dict"]), strict=True)


def load_denoiser(unet: nn.Module, base: dict[str, Tensor], motion: dict[str, Tensor],
                  denoising: dict[str, Tensor]) -> dict[str, int]:
    """Merge SD base (name+shape match), motion module and denoising states as the released loader does; checked."""
    own = unet.state_dict()
    merged, source = {}, {}
    for key, value in base.items():
        if key in own and own[key].shape == value.shape:
            merged[key], source[key] = value, "base"
    for name, state in (("motion_module", motion), ("denoising_unet", denoising)):
        bad = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
        if bad:
            shapes = [(k, list(state[k].shape), list(own[k].shape)) for k in bad[:4]]
            raise ValueError(f"{name}: shape mismatch (key, file, model) at {shapes} ({len(bad)} keys)")
        if name == "motion_module":
            stray = [k for k in state if k not in own]
            if stray:
                raise ValueError(f"motion_module: keys the denoiser does not have: {stray[:8]} ({len(stray)})")
        for key, value in state.items():
            if key in own:
                merged[key], source[key] = value, name
    # the temporal position encodings are fixed sinusoids (buffers): keep the built ones if a file lacks them
    absent = [k for k in own if k not in merged and not k.endswith("pos_encoder.pe")]
    if absent:
        raise ValueError(f"denoiser: no file provides {absent[:8]} ({len(absent)} keys)")
    unet.load_state_dict(merged, strict=False)
    counts = {}
    for s in source.values():
        counts[s] = counts.get(s, 0) + 1
    counts["ignored_denoising_keys"] = sum(k not in own for k in denoising)
    return counts


def read_unet_config(folder: Path) -> dict:
    data = json.loads((folder / "config.json").read_text())
    return {k: v for k, v in data.items() if not k.startswith("_")}


def check_unet_config(unet_cfg: dict, cfg) -> None:
    """The denoiser is built from cfg: the SD unet config on disk must describe the same layout."""
    pairs = {"block_out_channels": tuple(cfg.block_out_channels), "layers_per_block": cfg.layers_per_block,
             "attention_head_dim": cfg.attention_heads, "norm_num_groups": cfg.norm_num_groups,
             "in_channels": cfg.latent_channels}
    wrong = {k: (unet_cfg.get(k), v) for k, v in pairs.items()
             if (tuple(unet_cfg[k]) if isinstance(unet_cfg.get(k), list) else unet_cfg.get(k)) != v}
    if wrong:
        raise ValueError(f"{SD_UNET_DIR}/config.json does not match EchoMimicV2Config (file, config): {wrong}")
