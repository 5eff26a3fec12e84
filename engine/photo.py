"""Loading the user's photo for personalize: any format Pillow reads, EXIF rotation applied, alpha flattened
onto white, RGB float [H, W, 3] in [0, 1]. Bad input is a ValueError that says what is wrong with which file;
a photo larger than `max_side` is downscaled (and says so in the returned info)."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

MIN_SIDE = 128


def load_photo(path: str | Path, max_side: int = 1024, min_side: int = MIN_SIDE) -> tuple[Tensor, dict]:
    """-> image [H, W, 3] float32 in [0, 1], info {"size": (W, H), "original_size": ..., "downscaled": bool}."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                im = ImageOps.exif_transpose(im)
    except UnidentifiedImageError:
        raise ValueError(f"{path}: not an image (no format Pillow knows)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ValueError(f"{path}: image is too large to decode safely ({e})") from None
    except (OSError, SyntaxError) as e:
        raise ValueError(f"{path}: truncated or corrupt image ({e})") from None
    original = im.size
    if min(original) < min_side:
        raise ValueError(f"{path}: image is {original[0]}x{original[1]} px; need at least {min_side} px on each side")
    if im.mode in ("RGBA", "LA", "P"):
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im)
    im = im.convert("RGB")
    downscaled = max(original) > max_side
    if downscaled:
        scale = max_side / max(original)
        im = im.resize((max(1, round(original[0] * scale)), max(1, round(original[1] * scale))), Image.LANCZOS)
    image = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0)
    return image, {"size": im.size, "original_size": original, "downscaled": downscaled}
