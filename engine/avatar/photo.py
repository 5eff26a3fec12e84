"""Loading the user's photo for personalize: any format Pillow reads, EXIF rotation applied, alpha flattened
onto white, 16-bit and float greyscale scaled to its full range (Pillow's own conversion to RGB clips them at
255: a 16-bit grey scan came out white), RGB float [H, W, 3] in [0, 1]. Bad input is a ValueError that says
what is wrong with which file; a photo larger than `max_side` is downscaled (and says so in the returned
info). A photo much wider or taller than the person in it (a group shot's neighbour left out, a landscape with
someone in the middle) is cropped to the person, with a margin, before it is downscaled (`person_box`,
`crop`), so the person keeps the pixels."""
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
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, not a photo (give an image file: jpg, png, ...)")
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
    if im.mode.startswith("I") or im.mode == "F":
        im = _grey_to_8bit(im)
    if im.mode in ("RGBA", "LA", "P", "PA", "La", "RGBa"):
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im)
    im = im.convert("RGB")
    downscaled = max(original) > max_side
    im = _fit(im, max_side)
    image = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0)
    return image, {"size": im.size, "original_size": original, "downscaled": downscaled}


def _grey_to_8bit(im: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit integer or float greyscale image -> mode "L": 16-bit modes (and "I" holding values over
    255, as Pillow opens a 16-bit PNG) from 0..65535, "I" within 0..255 as it is, float from 0..1 (or from 0..255
    when its values go past 1)."""
    a = np.asarray(im).astype(np.float64)
    if im.mode.startswith("I;16") or (im.mode == "I" and a.max(initial=0) > 255):
        a = a / 65535.0
    elif im.mode == "F" and a.max(initial=0) <= 1.0:
        pass
    else:
        a = a / 255.0
    return Image.fromarray((np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), mode="L")


def _fit(im: Image.Image, max_side: int) -> Image.Image:
    """Downscaled (Lanczos) so that its longer side is at most max_side; unchanged when it already is."""
    if max(im.size) <= max_side:
        return im
    scale = max_side / max(im.size)
    return im.resize((max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale))), Image.LANCZOS)


def person_box(mask: Tensor, margin: float = 0.15, min_gain: float = 0.9,
               threshold: float = 0.25) -> tuple[int, int, int, int] | None:
    """mask [H, W] person probability -> the crop (x0, y0, x1, y1) holding the person (mask > threshold: a low
    one, as a cut-off hand or hat costs more than some background) with `margin`
    of the person's height added on every side, clipped to the image; None when the crop would keep more than
    `min_gain` of the image's area (nothing worth cutting) or the mask is empty."""
    ys, xs = torch.nonzero(mask > threshold, as_tuple=True)
    if len(xs) == 0:
        return None
    H, W = mask.shape
    pad = margin * float(ys.max() - ys.min() + 1)
    x0, x1 = max(0, int(float(xs.min()) - pad)), min(W, int(float(xs.max()) + 1 + pad + 0.999))
    y0, y1 = max(0, int(float(ys.min()) - pad)), min(H, int(float(ys.max()) + 1 + pad + 0.999))
    if (x1 - x0) * (y1 - y0) > min_gain * W * H:
        return None
    return x0, y0, x1, y1


def crop(image: Tensor, box: tuple[int, int, int, int], max_side: int) -> Tensor:
    """image [H, W, 3] float in [0, 1] (from load_photo: exact multiples of 1/255), cut to box (x0, y0, x1, y1)
    and downscaled like load_photo (Lanczos) to at most max_side -> [h, w, 3]."""
    x0, y0, x1, y1 = box
    u8 = (image[y0:y1, x0:x1] * 255.0 + 0.5).to(torch.uint8).numpy()
    im = _fit(Image.fromarray(np.ascontiguousarray(u8)), max_side)
    return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0)
