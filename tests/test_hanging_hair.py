"""Long hair behind the back (engine.avatar.backside._hanging_hair): hair that hangs from the crown over the
shoulders to below the chin covers the upper back; short hair, or clothes of the hair's colour, cover nothing."""
import torch

from engine.avatar.backside import DETAIL_LIMIT, _hair_alike, _hanging_hair, _Head, back_colours
from engine.avatar.regions import BODY, FACE, HAIR

HAIR_RGB, SKIN, SHIRT = torch.tensor([0.35, 0.2, 0.1]), torch.tensor([0.9, 0.7, 0.6]), torch.tensor([0.1, 0.2, 0.6])


def portrait(hair_to: int, shirt=SHIRT):
    """A 20 px tall face (rows 20-39, columns 22-41) under a crown (rows 4-19) in a HAIR column (columns 16-47,
    down to the chin) and a shirt below (rows 40-119, columns 4-59); the hair beside the face goes on down over
    the shoulders (columns 16-21 and 42-47) to row hair_to - 1. -> image, person, regions."""
    image = torch.ones(120, 64, 3)
    regions = torch.full((120, 64), -1, dtype=torch.long)
    regions[4:40, 16:48] = HAIR
    regions[20:40, 22:42] = FACE
    regions[40:, 4:60] = BODY
    person = regions >= 0
    gen = torch.Generator().manual_seed(0)
    image[person] = 0.02 * torch.randn(int(person.sum()), 3, generator=gen)
    image[regions == HAIR] += HAIR_RGB
    image[regions == FACE] += SKIN
    image[regions == BODY] += shirt
    for c0, c1 in ((16, 22), (42, 48)):
        image[40:hair_to, c0:c1] += HAIR_RGB - shirt
    return image.clamp(0, 1), person, regions


def hanging(image, person, regions):
    head = _Head(image, regions, person)
    hair, _ = _hair_alike(head, regions, person)
    return _hanging_hair(head, regions, person, hair)


def test_long_hair_over_the_shoulders_covers_the_upper_back_down_to_its_length():
    image, person, regions = portrait(hair_to=70)                  # 1.5 face heights below the chin
    strands, covered = hanging(image, person, regions)
    assert torch.equal(strands, regions.eq(BODY) & (image - HAIR_RGB).norm(dim=-1).lt(0.1))   # the strands
    assert bool(covered[50, 16:48].all()) and not bool(covered[50, :10].any())   # the head's width, no wider
    assert bool(covered[21:40, 16:22].all())                        # beside the jaw too
    assert not bool(covered[75:].any())                             # no longer than the hair
    assert int(covered[69].sum()) < int(covered[50].sum())          # narrower, rounded, toward its end
    ys, xs = torch.meshgrid(torch.arange(45, 60), torch.arange(24, 40), indexing="ij")
    back = back_colours(image, person, regions, torch.stack([xs.flatten(), ys.flatten()], 1))
    assert float((back - HAIR_RGB).norm(dim=-1).mean()) < 0.05       # behind the chest: hair, not shirt
    assert float((back - HAIR_RGB).norm(dim=-1).max()) < 0.05 + 2 * DETAIL_LIMIT
    ys, xs = torch.meshgrid(torch.arange(90, 110), torch.arange(24, 40), indexing="ij")
    back = back_colours(image, person, regions, torch.stack([xs.flatten(), ys.flatten()], 1))
    assert float((back - SHIRT).norm(dim=-1).mean()) < 0.05          # below its end: the shirt


def test_short_hair_covers_nothing():
    image, person, regions = portrait(hair_to=42)                   # 0.1 face heights below the chin
    _, covered = hanging(image, person, regions)
    assert not bool(covered.any())
    ys, xs = torch.meshgrid(torch.arange(45, 60), torch.arange(24, 40), indexing="ij")
    back = back_colours(image, person, regions, torch.stack([xs.flatten(), ys.flatten()], 1))
    assert float((back - SHIRT).norm(dim=-1).mean()) < 0.05


def test_clothes_the_colour_of_the_hair_are_not_hair():
    """A coat as dark as the hair touches it everywhere below the chin: far more of it than a head's worth, so
    it is the coat, and nothing is hair behind the back."""
    image, person, regions = portrait(hair_to=40, shirt=HAIR_RGB)
    strands, covered = hanging(image, person, regions)
    assert not bool(strands.any()) and not bool(covered.any())
