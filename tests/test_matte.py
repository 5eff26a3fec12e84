"""engine.avatar.matte: the photo's soft edge pulled apart into the person's share and colour, checked against a
disc drawn with a known coverage over a known background."""
import torch

from engine.avatar.matte import BAND, edge_band, edge_matte

FG = torch.tensor([0.25, 0.18, 0.10])          # dark hair
BG = torch.tensor([0.86, 0.84, 0.90])          # a pale studio backdrop


def _disc(size: int = 64, radius: float = 20.0, loose: float = 2.5):
    """A disc of FG over BG with an anti-aliased edge: coverage [H, W] (the reference), the photo [H, W, 3], and a
    person mask that, like a segmenter's, reaches `loose` pixels past the disc."""
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    r = ((xx - size / 2) ** 2 + (yy - size / 2) ** 2).sqrt()
    cover = (radius - r + 0.5).clamp(0, 1)                           # one pixel's share of the disc, to first order
    image = cover[..., None] * FG + (1 - cover[..., None]) * BG
    return cover, image, r <= radius + loose


def test_the_edge_gives_back_the_coverage_and_the_colour_it_was_drawn_with():
    cover, image, person = _disc()
    alpha, colour = edge_matte(image, person)
    band = edge_band(person)
    assert band.sum() > 100
    # the share of the disc, where the mask took in background and where the edge is half and half
    err = (alpha - cover)[band].abs()
    assert float(err.max()) < 0.05, float(err.max())
    mixed = band & (cover < 1)
    assert mixed.sum() > 50
    assert float((colour[mixed] - FG).abs().max()) < 0.03                  # the hair's colour, not the backdrop's
    # the pixels behind the band are untouched
    assert torch.equal(alpha[person & ~band], torch.ones(int((person & ~band).sum())))
    assert torch.equal(colour[~band], image[~band])


def test_a_person_the_colour_of_the_backdrop_is_left_whole():
    cover, _, person = _disc()
    image = cover[..., None] * (BG - 0.05) + (1 - cover[..., None]) * BG     # a pale shirt on a pale wall
    alpha, colour = edge_matte(image, person)
    assert torch.equal(alpha, torch.ones_like(alpha))
    assert torch.equal(colour, image)


def test_the_photo_frame_is_not_an_edge():
    cover, image, person = _disc()
    cover, image, person = cover[:40], image[:40], person[:40]         # the frame cuts the disc at row 40
    alpha, _ = edge_matte(image, person)
    # along the cut, away from the disc's own sides (|x - 32| <= 18.5 at the last row), nothing is unmixed
    assert torch.equal(alpha[40 - BAND:, 22:42], torch.ones(BAND, 20))
    assert (alpha[:40 - BAND] < 1).any()                               # the disc's own edge still is


def test_bad_shapes_are_named():
    import pytest
    with pytest.raises(ValueError, match="image/person"):
        edge_matte(torch.zeros(8, 8, 3), torch.zeros(8, 9, dtype=torch.bool))


def test_a_strip_of_backdrop_inside_the_mask_shows_the_person_from_away():
    """A segmenter's mask that takes in a 10 px strip of the wall beside the person (the bundled photo's shoulder),
    with a dark stand right beside the strip, so that the backdrop next to it is not the strip's colour: the strip
    is backdrop (alpha 0) and has the person's colour; the person is untouched."""
    from engine.avatar.matte import reach_px
    wall, stand = torch.tensor([0.55, 0.55, 0.58]), torch.tensor([0.05, 0.05, 0.05])
    n, cx, cy, radius = 480, 230, 240, 205                            # a 410 px person: reach 11 px
    yy, xx = torch.meshgrid(torch.arange(n) + 0.5, torch.arange(n) + 0.5, indexing="ij")
    body = ((xx - cx) ** 2 + (yy - cy) ** 2).sqrt() <= radius
    x0 = cx + radius - 2                                               # the strip: 10 px past the body
    strip = (xx >= x0) & (xx < x0 + 12) & (yy >= cy - 30) & (yy < cy + 30) & ~body
    image = torch.where(body[..., None], FG.expand(n, n, 3), wall.expand(n, n, 3)).clone()
    image[(xx >= x0 + 12) & (yy >= cy - 40) & (yy < cy + 40)] = stand     # the stand, beside the strip only
    person = body | strip
    assert reach_px(person) >= 10
    alpha, colour = edge_matte(image, person)
    deep = strip & ~edge_band(person)                                 # beyond the unmixed ring
    assert int(deep.sum()) > 20
    assert torch.equal(alpha[deep], torch.zeros(int(deep.sum())))      # before: 1, and the wall's colour
    assert float(alpha[strip].max()) < 0.05
    assert float((colour[strip] - FG).abs().max()) < 0.05
    assert float(alpha[body].min()) > 0.99                            # the body: all of it, its own colour
    assert float((colour[body] - FG).abs().max()) < 1e-3
