"""Photo loading: formats, EXIF rotation, transparency, and every bad input named clearly."""
import io

import numpy as np
import pytest
from PIL import Image

from engine.avatar.photo import load_photo


def save(tmp_path, name, image: Image.Image, **kw):
    p = tmp_path / name
    image.save(p, **kw)
    return p


def gradient(w, h):
    x = np.linspace(0, 255, w, dtype=np.uint8)[None, :, None].repeat(h, 0).repeat(3, 2)
    return Image.fromarray(x)


def test_png_loads_as_rgb_float(tmp_path):
    img, info = load_photo(save(tmp_path, "a.png", gradient(200, 150)))
    assert img.shape == (150, 200, 3) and img.dtype.is_floating_point
    assert float(img[0, 0, 0]) == 0.0 and float(img[0, -1, 0]) == 1.0
    assert info == {"size": (200, 150), "original_size": (200, 150), "downscaled": False}


def test_huge_photo_is_downscaled_and_says_so(tmp_path):
    img, info = load_photo(save(tmp_path, "big.jpg", gradient(3000, 1500)), max_side=1024)
    assert img.shape == (512, 1024, 3) and info["downscaled"] and info["original_size"] == (3000, 1500)


def test_exif_rotation_and_transparency(tmp_path):
    im = gradient(300, 200)
    exif = Image.Exif()
    exif[0x0112] = 6                                                     # rotate 90 degrees on display
    img, _ = load_photo(save(tmp_path, "r.jpg", im, exif=exif))
    assert img.shape == (300, 200, 3)
    rgba = Image.new("RGBA", (160, 160), (255, 0, 0, 0))                 # fully transparent red
    img, _ = load_photo(save(tmp_path, "t.png", rgba))
    assert np.allclose(img.numpy(), 1.0)                                 # flattened onto white


@pytest.mark.parametrize("mode, scale", [("I;16", 257), ("I", 257), ("F", 1 / 255)])
def test_16_bit_and_float_grey_keep_their_range(tmp_path, mode, scale):
    """A 16-bit grey PNG (Pillow: "I;16"), 32-bit integer grey ("I", 16-bit values) and float grey (TIFF), load as the grey they show, not
    clipped white: each value v of the 8-bit ramp stored as v * scale reads back as v / 255."""
    ramp = np.linspace(0, 255, 200).round()[None, :].repeat(150, 0)
    stored = ramp * scale
    im = Image.fromarray(stored.astype(np.float32), mode="F") if mode == "F" else \
        Image.fromarray(stored.astype(np.uint16 if mode == "I;16" else np.int32))
    name = "g.png" if mode == "I;16" else "g.tif"            # Pillow writes "I" and "F" as TIFF only
    p = save(tmp_path, name, im)
    with Image.open(p) as check:
        assert check.mode.startswith(mode[0])
    img, _ = load_photo(p)
    np.testing.assert_allclose(img.numpy(), (ramp / 255.0)[..., None].repeat(3, 2), atol=1 / 255 + 1e-6)


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_text("this is not an image"), "not an image"),
    (lambda p: p.write_bytes(_jpeg_bytes()[:400]), "truncated or corrupt"),
    (lambda p: gradient(100, 300).save(p, format="PNG"), "image is 100x300 px; need at least 128 px"),
])
def test_bad_photos_are_named(tmp_path, make, message):
    p = tmp_path / "photo.jpg"
    make(p)
    with pytest.raises(ValueError, match=message) as err:
        load_photo(p)
    assert str(p) in str(err.value)
    with pytest.raises(ValueError, match="no such file"):
        load_photo(tmp_path / "missing.png")


def _jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    gradient(256, 256).save(buf, format="JPEG")
    return buf.getvalue()


def test_a_folder_is_not_a_photo(tmp_path):
    with pytest.raises(ValueError, match="is a folder, not a photo"):
        load_photo(tmp_path)


def test_person_box_adds_the_margin_and_skips_a_photo_the_person_fills():
    import torch
    from engine.avatar.photo import crop, person_box
    mask = torch.zeros(100, 300)
    mask[20:80, 140:170] = 1.0                       # a person 60 px tall, 30 px wide, in a wide photo
    # margin 0.1 of the 60 px height = 6 px each side: x 134..176, y 14..86 (hand computation)
    assert person_box(mask, margin=0.1) == (134, 14, 176, 86)
    assert person_box(torch.ones(100, 300)) is None                     # fills the photo: nothing to cut
    assert person_box(torch.zeros(100, 300)) is None                    # no person: leave it to detect()
    image = torch.arange(100 * 300 * 3, dtype=torch.float32).reshape(100, 300, 3) % 256 / 255
    out = crop(image, (134, 14, 176, 86), max_side=512)
    assert torch.equal(out, image[14:86, 134:176])                      # small enough: cut, not resampled
    assert crop(image, (0, 0, 300, 100), max_side=150).shape == (50, 150, 3)
