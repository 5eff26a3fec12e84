"""The unseen side (engine.avatar.backside): made from the photo's own surfaces, without the front's layout."""
import torch

from engine.avatar.backside import DETAIL_LIMIT, back_colours
from engine.avatar.regions import BODY, FACE, HAIR


def jacket_with_a_tie(size: int = 96):
    """A blue textured jacket filling a rectangle, with a narrow red tie down the middle and a round badge."""
    gen = torch.Generator().manual_seed(3)
    image = torch.ones(size, size, 3)
    person = torch.zeros(size, size, dtype=torch.bool)
    person[20:, 10:86] = True
    jacket = torch.tensor([0.2, 0.3, 0.6])
    image[person] = (jacket + 0.03 * torch.randn(int(person.sum()), 3, generator=gen)).clamp(0, 1)
    image[20:, 46:50] = torch.tensor([0.8, 0.1, 0.1])                          # the tie
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    badge = (yy - 50) ** 2 + (xx - 25) ** 2 < 36
    image[badge] = torch.tensor([0.9, 0.9, 0.2])
    regions = torch.where(person, BODY, 0)
    return image, person, regions, jacket, badge


def test_the_back_of_a_jacket_has_no_tie_and_no_badge():
    image, person, regions, jacket, badge = jacket_with_a_tie()
    ys, xs = torch.nonzero(person, as_tuple=True)
    rgb = back_colours(image, person, regions, torch.stack([xs, ys], 1))
    back = torch.ones_like(image)
    back[ys, xs] = rgb
    tie = back[30:, 46:50].reshape(-1, 3)
    assert float((tie - jacket).abs().amax(-1).max()) < 0.1 + DETAIL_LIMIT   # the tie's place is jacket
    assert float((back[badge] - jacket).abs().amax(-1).max()) < 0.1 + DETAIL_LIMIT
    assert float((back[person] - jacket).norm(dim=-1).mean()) < 0.08
    again = back_colours(image, person, regions, torch.stack([xs, ys], 1))
    assert torch.equal(again, rgb)                                            # the same seed: the same colours
    other = back_colours(image, person, regions, torch.stack([xs, ys], 1), seed=1)
    assert not torch.equal(other, rgb)


def test_behind_the_face_is_hair():
    image = torch.ones(64, 64, 3)
    regions = torch.zeros(64, 64, dtype=torch.long)
    regions[8:24, 16:48] = HAIR
    regions[24:50, 20:44] = FACE
    person = regions > 0
    hair, skin = torch.tensor([0.35, 0.2, 0.1]), torch.tensor([0.9, 0.7, 0.6])
    image[regions == HAIR] = hair
    image[regions == FACE] = skin
    ys, xs = torch.nonzero(regions == FACE, as_tuple=True)
    rgb = back_colours(image, person, regions, torch.stack([xs, ys], 1))
    assert float((rgb - hair).abs().max()) < 1e-5                             # a plain hair colour, no face


def test_rim_walls_blend_the_colour_inside_the_rim_into_the_back_and_skip_the_halo():
    from engine.avatar.backside import rim_colours
    person = torch.zeros(40, 40, dtype=torch.bool)
    person[5:35, 5:35] = True
    image = torch.ones(40, 40, 3)                                             # white around the person
    image[person] = 0.2                                                       # dark hair ...
    ring = person.clone()
    ring[6:34, 6:34] = False
    image[ring] = 0.8                                                         # ... with a light halo at its edge
    px = torch.tensor([[20, 5], [20, 5], [20, 5], [5, 20]])                   # on the top and the left edge
    inward = torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    t = torch.tensor([0.0, 0.5, 1.0, 0.0])
    back = torch.full((4, 3), 0.6)
    rgb = rim_colours(image, person, px, inward, t, back)
    # at the front edge the hair's colour, 3 px in (its blur reaches the halo a little), not the halo's 0.8
    assert float((rgb[0] - 0.2).abs().max()) < 0.06 and float((rgb[3] - rgb[0]).abs().max()) < 1e-6
    torch.testing.assert_close(rgb[2], back[2])                               # the back edge: the back's colour
    torch.testing.assert_close(rgb[1], (rgb[0] + back[1]) / 2)                # linear between
    unsure = torch.zeros(40, 40, dtype=torch.bool)
    unsure[10:30, 0:5] = True                                                 # left out beside the left edge
    cut = rim_colours(image, person, px, inward, t, back, unsure=unsure)
    torch.testing.assert_close(cut[3], back[3])                               # that wall: the back's colour
    torch.testing.assert_close(cut[:3], rgb[:3])                              # the top edge's as before


def knit(size: int = 160, seed: int = 5):
    """A grey-green surface with blotches a few pixels across (contrast ~0.05), the kind of detail a jumper or
    a head of hair has at the scale a viewer reads."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, 1, size, size, generator=gen)
    blobs = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(noise, (2, 2, 2, 2), mode="reflect"), 5, 1)[0, 0]
    image = (torch.tensor([0.4, 0.5, 0.4]) + 0.25 * blobs[..., None]).clamp(0, 1)
    person = torch.ones(size, size, dtype=torch.bool)
    return image, person, torch.full((size, size), BODY)


def test_a_pixel_gets_one_colour_whoever_else_is_asked_for():
    image, person, regions = knit()
    ys, xs = torch.nonzero(person, as_tuple=True)
    every = back_colours(image, person, regions, torch.stack([xs, ys], 1))
    some = (ys >= 100).nonzero()[:, 0][::7]                                   # the lower part alone
    torch.testing.assert_close(back_colours(image, person, regions, torch.stack([xs[some], ys[some]], 1)), every[some])


def test_the_back_keeps_the_surfaces_contrast_without_seams():
    from engine.avatar.backside import texture_tile
    image, person, regions = knit()
    TILE = texture_tile(person)
    H, W = person.shape
    ys, xs = torch.nonzero(person, as_tuple=True)
    back = back_colours(image, person, regions, torch.stack([xs, ys], 1)).reshape(H, W, 3)
    grey_in, grey_out = image.mean(-1), back.mean(-1)
    # fine contrast: the standard deviation of the grey level about its 9x9 mean, away from the frame
    def contrast(g):
        local = torch.nn.functional.avg_pool2d(g[None, None], 9, 1)[0, 0]
        return float((g[4:-4, 4:-4] - local)[16:-16, 16:-16].std())
    assert contrast(grey_out) > 0.6 * contrast(grey_in)
    assert contrast(grey_out) < 1.3 * contrast(grey_in)
    # no seams: steps across the grid lines are no larger than steps elsewhere
    step = (grey_out[:, 1:] - grey_out[:, :-1]).abs()                          # [H, W - 1], between x and x + 1
    on_grid = torch.zeros(W - 1, dtype=torch.bool)
    on_grid[TILE - 1::TILE] = True
    assert float(step[:, on_grid].mean()) < 1.3 * float(step[:, ~on_grid].mean())
    # and the back is not the front: the borrowed texture is laid out anew
    a, b = grey_in - grey_in.mean(), grey_out - grey_out.mean()
    assert abs(float((a * b).mean() / (a.std() * b.std()))) < 0.1


def test_printed_text_lends_nothing_to_the_back():
    """A knit surface with yellow lettering on it: the back borrows the knit's detail from everywhere but the
    letters, so no pixel of the back turns yellower than the knit alone does."""
    image, person, regions = knit()
    plain = image.clone()
    image[60:72, 50:110:3] = torch.tensor([1.0, 0.95, 0.1])                   # strokes of letters
    image[60:62, 50:110] = torch.tensor([1.0, 0.95, 0.1])
    ys, xs = torch.nonzero(person, as_tuple=True)
    px = torch.stack([xs, ys], 1)
    away = (ys < 52) | (ys >= 80)           # rows whose base colour (a median of +-6 rows) never sees the lettering

    def yellowness(rgb):
        return (rgb[:, :2].mean(-1) - rgb[:, 2])[away]
    lettered = yellowness(back_colours(image, person, regions, px))
    knit_alone = yellowness(back_colours(plain, person, regions, px))
    assert float(lettered.max()) < float(knit_alone.max()) + 0.03


def test_a_shoulder_beside_a_lowered_head_is_not_hair():
    """The HAIR column beside the face takes in red shoulders at jaw height: the back of the head stays the
    crown's brown at those rows, and the shoulders' back is the shirt's red."""
    image = torch.ones(80, 64, 3)
    regions = torch.full((80, 64), -1, dtype=torch.long)
    regions[4:20, 16:48] = HAIR                                               # the crown, above the face
    regions[20:40, 16:48] = HAIR                                              # the column beside the face
    regions[20:40, 22:42] = FACE
    regions[40:, 4:60] = BODY                                                 # the shirt below
    person = regions >= 0
    hair, skin, shirt = torch.tensor([0.3, 0.2, 0.1]), torch.tensor([0.9, 0.7, 0.6]), torch.tensor([0.8, 0.1, 0.2])
    gen = torch.Generator().manual_seed(0)
    image[person] = 0.02 * torch.randn(int(person.sum()), 3, generator=gen)
    image[regions == HAIR] += hair
    image[regions == FACE] += skin
    image[regions == BODY] += shirt
    image[30:40, 16:22] += shirt - hair                                       # the shoulders, labelled HAIR
    image[30:40, 42:48] += shirt - hair
    image = image.clamp(0, 1)
    ys, xs = torch.nonzero(regions == FACE, as_tuple=True)
    behind_face = back_colours(image, person, regions, torch.stack([xs, ys], 1))
    jaw = ys >= 30
    assert float((behind_face[jaw] - hair).norm(dim=-1).max()) < 0.1 + DETAIL_LIMIT   # brown, no red band
    assert float((behind_face[jaw] - hair).norm(dim=-1).mean()) < 0.08
    sy, sx = torch.meshgrid(torch.arange(30, 40), torch.arange(42, 48), indexing="ij")
    shoulder = back_colours(image, person, regions, torch.stack([sx.flatten(), sy.flatten()], 1))
    assert float((shoulder - shirt).norm(dim=-1).mean()) < 0.08               # the shirt continues behind them


def test_a_few_pale_hair_pixels_low_on_the_head_do_not_paint_a_band_across_the_nape():
    """Beside the jaw the HAIR column holds shoulders (clothes) and, at two rows, a few pale hair-like pixels
    (the fringe of the hair against the neck): behind the jaw the hair's colour carries down from the rows
    above, not the median of those few."""
    image = torch.ones(80, 64, 3)
    regions = torch.full((80, 64), -1, dtype=torch.long)
    regions[4:40, 16:48] = HAIR                                               # crown, and the column beside the face
    regions[20:40, 22:42] = FACE
    regions[40:, 4:60] = BODY
    person = regions >= 0
    hair, skin, shirt = torch.tensor([0.3, 0.2, 0.1]), torch.tensor([0.95, 0.75, 0.65]), torch.tensor([0.1, 0.1, 0.5])
    image[regions == HAIR] = hair
    image[regions == FACE] = skin
    image[regions == BODY] = shirt
    image[30:40, 16:22] = shirt                                               # shoulders beside the jaw
    image[30:40, 42:48] = shirt
    pale = torch.tensor([0.5, 0.4, 0.3])                                      # nearer the crown than shirt or skin
    image[35, 16:18] = pale
    image[38, 16:18] = pale
    ys, xs = torch.nonzero(regions == FACE, as_tuple=True)
    behind = back_colours(image, person, regions, torch.stack([xs, ys], 1))
    jaw = ys >= 33
    assert float((behind[jaw] - hair).norm(dim=-1).max()) < 1e-5              # the crown's brown, no pale band


def test_a_short_haired_heads_back_is_the_crowns_hair_not_the_ear_beside_the_face():
    """A short-haired head: a crown of dark hair across the head, and beside the face only a strip 6 px wide
    of the HAIR column that passes as hair (the shadow round an ear, in the crown's colour family). The rows at
    the ear hold more than ROW_SOURCE samples of it but under ROW_SHARE of a row across the hair: behind the
    face is the crown's colour, not the ear's; a hat band as wide as the head keeps its own rows."""
    from engine.avatar.backside import ROW_SHARE, ROW_SOURCE
    image = torch.ones(80, 72, 3)
    regions = torch.full((80, 72), -1, dtype=torch.long)
    regions[4:24, 6:66] = HAIR                                                # the crown: 60 px across
    regions[24:60, 6:66] = HAIR                                               # the column beside the face ...
    regions[24:60, 18:54] = FACE                                              # ... and the face
    regions[60:, 2:70] = BODY                                                 # a shirt below
    person = regions >= 0
    hair, skin, ear = torch.tensor([0.15, 0.12, 0.1]), torch.tensor([0.9, 0.7, 0.6]), torch.tensor([0.4, 0.25, 0.18])
    image[regions == HAIR] = hair
    image[regions == FACE] = skin
    image[regions == BODY] = torch.tensor([0.2, 0.3, 0.7])
    image[24:60, 6:18] = skin                                                 # beside the face: skin (cheek, neck) ...
    image[24:60, 54:66] = skin
    image[24:50, 12:18] = ear                                                 # ... and the shadowed ear, 6 px wide
    samples = 5 * 3                                                           # 5 rows of the window, every other column
    assert ROW_SOURCE <= samples < ROW_SHARE * 5 * 30                         # enough for the old rule, not this one
    ys, xs = torch.nonzero(regions == FACE, as_tuple=True)
    behind = back_colours(image, person, regions, torch.stack([xs, ys], 1))
    assert float((behind - hair).norm(dim=-1).max()) < 1e-5                   # the crown's colour, all the way down
    band = torch.tensor([0.6, 0.1, 0.1])                                      # a red hat band across the whole head
    image[6:20, 6:66] = band
    top = torch.stack(torch.meshgrid(torch.arange(6, 66), torch.tensor([13]), indexing="xy"), -1).reshape(-1, 2)
    painted = back_colours(image, person, regions, top)
    assert float((painted - band).norm(dim=-1).median()) < 0.15               # its own row's colour


def receding_hairline(bald: bool = False):
    """A head whose crown (HAIR, rows 4-23) is 6 rows of dark hair over 14 rows of forehead above the face
    mesh's top (row 24): the forehead's colour is the face's top rows', lighter than the rest of the face, so
    the forehead band is most of the crown. bald: the whole crown forehead-coloured."""
    image = torch.ones(80, 64, 3)
    regions = torch.full((80, 64), -1, dtype=torch.long)
    regions[4:24, 12:52] = HAIR
    regions[24:60, 16:48] = FACE
    regions[60:, 4:60] = BODY
    hair, forehead = torch.tensor([0.2, 0.15, 0.12]), torch.tensor([0.8, 0.6, 0.5])
    image[regions == FACE] = torch.tensor([0.6, 0.4, 0.3])
    image[24:29, 16:48] = forehead                                            # the face's top rows
    image[regions == BODY] = torch.tensor([0.1, 0.2, 0.6])
    image[4:24, 12:52] = forehead
    if not bald:
        image[4:10, 12:52] = hair
    return image, regions >= 0, regions, hair, forehead


def test_a_band_of_forehead_under_a_receding_hairline_is_not_the_back_of_the_head():
    image, person, regions, hair, forehead = receding_hairline()
    ys, xs = torch.nonzero(regions == FACE, as_tuple=True)
    behind = back_colours(image, person, regions, torch.stack([xs, ys], 1))
    assert float((behind - hair).norm(dim=-1).max()) < 1e-5                   # the hair's colour, all of it
    image, person, regions, hair, forehead = receding_hairline(bald=True)
    behind = back_colours(image, person, regions, torch.stack([xs, ys], 1))
    assert float((behind - forehead).norm(dim=-1).max()) < 1e-5               # a bald crown is the crown


def test_a_pale_piece_of_the_hair_column_cut_off_from_the_crown_lends_nothing():
    """A neighbour's bare arm at the photo's edge falls in the HAIR column beside the face: nearer the crown's
    pale highlights than the face's darker skin, it looked like hair and, wider than the strip of hair beside the
    face, painted a pale band across the back of the head at its rows. Cut off from the crown (by skin-like
    pixels), it lends nothing."""
    image = torch.ones(80, 64, 3)
    regions = torch.full((80, 64), -1, dtype=torch.long)
    regions[4:40, 4:48] = HAIR                                                # crown, and the column beside the face
    regions[20:40, 16:44] = FACE
    regions[40:, 4:60] = BODY
    person = regions >= 0
    hair, skin, shirt = torch.tensor([0.3, 0.2, 0.1]), torch.tensor([0.6, 0.35, 0.25]), torch.tensor([0.1, 0.1, 0.5])
    image[regions == HAIR] = hair
    image[4:10, 20:30] = torch.tensor([0.75, 0.65, 0.5])                      # highlights on the crown
    image[20:40, 4:16] = skin                                                 # skin-like beside the face
    image[regions == FACE] = skin
    image[regions == BODY] = shirt
    arm = torch.tensor([0.8, 0.7, 0.55])                                      # nearer the highlights than the skin
    image[26:36, 4:14] = arm
    ys, xs = torch.nonzero(regions == FACE, as_tuple=True)
    behind = back_colours(image, person, regions, torch.stack([xs, ys], 1))
    rows = (ys >= 26) & (ys < 36)
    assert float((behind[rows] - hair).norm(dim=-1).max()) < 1e-5             # the hair's brown, no pale band


def test_the_back_continues_what_wraps_round_the_body_not_a_patch_across_it():
    """An orange jacket with a purple patch as wide as half the body in rows 40-60: a median over those rows
    mixes the two into a colour of neither (a streak across the back). The jacket shows at the silhouette's
    edge and the patch does not, so the back there is jacket. A collar that reaches the edge (rows 22-26) is
    a ring round the body and stays; the bottom rows the photo's frame cuts are no edge."""
    size = 96
    image, person = torch.ones(size, size, 3), torch.zeros(size, size, dtype=torch.bool)
    person[20:, 10:86] = True                                                   # cut by the frame at the bottom
    jacket, patch, collar = torch.tensor([0.9, 0.4, 0.1]), torch.tensor([0.4, 0.3, 0.8]), torch.tensor([0.1] * 3)
    image[person] = jacket
    image[40:60, 22:74] = patch
    image[20:26, 10:86] = collar
    regions = torch.where(person, BODY, 0)
    ys, xs = torch.nonzero(person, as_tuple=True)
    back = torch.ones_like(image)
    back[ys, xs] = back_colours(image, person, regions, torch.stack([xs, ys], 1))
    flat = back - jacket                                                        # the borrowed texture is 0 here
    assert float(flat[40:60, 10:86].abs().max()) < 1e-5                         # no patch, no mix
    assert float((back[21:25, 10:86] - collar).abs().max()) < 1e-5              # the collar goes round
    assert float(flat[80:, 10:86].abs().max()) < 1e-5


def test_a_body_whose_sides_differ_shades_across_the_back_without_a_seam():
    """The left half red, the right half blue (a helmet held at one side): near each edge the back takes that
    side's colour, and across the middle it shades from one to the other, nearer side weighing more."""
    size = 96
    image, person = torch.ones(size, size, 3), torch.zeros(size, size, dtype=torch.bool)
    person[20:90, 10:86] = True
    red, blue = torch.tensor([0.8, 0.1, 0.1]), torch.tensor([0.1, 0.1, 0.8])
    image[20:90, 10:48], image[20:90, 48:86] = red, blue
    regions = torch.where(person, BODY, 0)
    row = torch.stack([torch.arange(10, 86), torch.full((76,), 55)], 1)
    rgb = back_colours(image, person, regions, row)                            # [76, 3] along row 55
    assert float((rgb[0] - red).abs().max()) < 0.02 and float((rgb[-1] - blue).abs().max()) < 0.02   # (the far
    # edge weighs in by nearness: 1 / 76 at the other edge)
    steps = (rgb[1:, 0] - rgb[:-1, 0])
    assert float(steps.max()) <= 1e-6 and float(steps.min()) > -0.1           # red falls steadily, no jump
    mid = rgb[38 - 1:38 + 1].mean(0)                                            # x 47-48: half way
    torch.testing.assert_close(mid, (red + blue) / 2, atol=0.03, rtol=0)


def test_a_narrow_limbs_rim_is_narrow_and_the_frame_is_no_edge():
    """The rim reaches d px into a wide torso but only RIM_PART of a narrow arm's half-width: an arm 20 px
    across has a rim 3 px deep on each side, not all of it. Where the photo's frame cuts the body, no rim."""
    from engine.avatar.backside import RIM_PART, near_the_rim
    person = torch.zeros(200, 200, dtype=torch.bool)
    person[60:, 40:160] = True                                                 # a torso 120 px wide, cut below
    person[70:80, 0:40] = True                                                 # an arm 10 px thick ...
    person[100:120, 160:200] = True                                            # ... and one 20 px thick
    rim = near_the_rim(person, 8)
    torso_row = rim[150, 40:160]
    assert torso_row[:8].all() and not torso_row[8:-8].any() and torso_row[-8:].all()   # d deep: 8 px each side
    arm = rim[100:120, 195]                                                    # across the thick arm, 20 px (the
    # torso's depth lies over 4 d px away)
    depth = torch.minimum(torch.arange(1, 21), torch.arange(20, 0, -1)).float()    # 1 .. 10 .. 1 from its edges
    assert torch.equal(arm, depth <= RIM_PART * 10 + 0.5)                      # RIM_PART x its half-width of 10
    assert not rim[199, 60:140].any()                                          # the frame's bottom edge: no rim


def test_the_edge_against_what_the_silhouette_left_out_lends_no_rim_colour():
    """A jacket whose left part the pose model missed (the silhouette's edge cuts through to the white shirt and
    the red tie beside it; the piece left out is `unsure`): the back is the jacket of the sure right edge, all
    across. Without `unsure` the cut edge paints the shirt and tie across the back's left half."""
    from engine.avatar.backside import BackPainter, near_the_rim
    size = 96
    image, person = torch.ones(size, size, 3), torch.zeros(size, size, dtype=torch.bool)
    person[20:90, 30:86] = True
    unsure = torch.zeros_like(person)
    unsure[20:90, 4:30] = True                                                 # the jacket the silhouette left out
    jacket, shirt, tie = torch.tensor([0.1, 0.1, 0.25]), torch.tensor([0.95, 0.95, 0.95]), torch.tensor([0.8, 0.1, 0.1])
    image[20:90, 4:86] = jacket
    image[20:90, 30:36], image[20:90, 36:40] = shirt, tie                      # the cut: shirt, then tie
    regions = torch.where(person, BODY, 0)
    rim = near_the_rim(person, 4, unsure)
    assert not rim[30:80, 30:40].any() and rim[40:70, 82:86].all()             # no rim at the cut; the right edge's
    assert near_the_rim(person, 4)[40:70, 30:34].all()                         # (a cut like any edge without it)
    row = torch.stack([torch.arange(30, 86), torch.full((56,), 55)], 1)
    sure = BackPainter(image, person, regions, unsure=unsure)(row)
    assert float((sure - jacket).abs().max()) < 0.02
    plain = BackPainter(image, person, regions)(row)
    assert float((plain[:10] - jacket).abs().amax(-1).min()) > 0.2             # the shirt and tie on the back


def test_rows_cut_by_the_frame_and_a_left_out_piece_take_their_whole_rows_colour():
    """The same jacket, now running into the photo's right frame as well: its rows have no rim on either side
    (cut_rows). Their back is what most of the row shows (the jacket), not the window round each pixel (the
    shirt and tie near the cut). A row that only lacks rim (hair over both shoulders) keeps its window."""
    from engine.avatar.backside import BackPainter, cut_rows
    size = 96
    image, person = torch.ones(size, size, 3), torch.zeros(size, size, dtype=torch.bool)
    person[20:90, 30:] = True
    unsure = torch.zeros_like(person)
    unsure[20:90, 4:30] = True
    jacket, shirt, tie = torch.tensor([0.1, 0.1, 0.25]), torch.tensor([0.95, 0.95, 0.95]), torch.tensor([0.8, 0.1, 0.1])
    image[20:90, 4:] = jacket
    image[20:90, 30:36], image[20:90, 36:40] = shirt, tie
    regions = torch.where(person, BODY, 0)
    cut = cut_rows(person, unsure)
    assert cut[20:90].all() and not cut[:20].any() and not cut[90:].any()
    assert torch.equal(cut_rows(person), cut)                                  # (the frame alone cuts them too)
    inner = person.clone()
    inner[:, -1] = False                                                       # off the frame, no unsure: not cut
    assert not cut_rows(inner).any()
    row = torch.stack([torch.arange(30, 96), torch.full((66,), 55)], 1)
    back = BackPainter(image, person, regions, unsure=unsure)(row)
    assert float((back - jacket).abs().max()) < 0.02


SKIN, SHIRT = torch.tensor([0.9, 0.7, 0.6]), torch.tensor([0.1, 0.2, 0.6])


def shirt_photo(arms_beside: bool):
    """A head (brown hair, rows 4-15; face, rows 16-33) over a blue shirt (rows 40-139, columns 30-69), with
    bare arms hanging at its sides (columns 20-29 and 70-79, rows 40-129) when arms_beside; noise 0.02.
    -> image [140, 100, 3] (not yet clamped: a caller may paint more), person, regions."""
    H, W = 140, 100
    regions = torch.full((H, W), -1, dtype=torch.long)
    regions[4:16, 38:62] = HAIR
    regions[16:34, 40:60] = FACE
    regions[40:, 30:70] = BODY
    if arms_beside:
        regions[40:130, 20:30] = BODY
        regions[40:130, 70:80] = BODY
    person = regions >= 0
    gen = torch.Generator().manual_seed(0)
    image = torch.ones(H, W, 3)
    image[person] = 0.02 * torch.randn(int(person.sum()), 3, generator=gen)
    image[regions == HAIR] += torch.tensor([0.3, 0.2, 0.1])
    image[regions == FACE] += SKIN
    image[40:, 30:70] += SHIRT
    if arms_beside:
        image[40:130, 20:30] += SKIN
        image[40:130, 70:80] += SKIN
    return image, person, regions


def pose_with_arms(arms: dict):
    """A pose [33, 4] for shirt_photo: shoulders at row 42, hips at 139, legs below the photo, and the arms'
    joints (elbows 13/14, wrists 15/16) at the given (x, y)."""
    pose = torch.zeros(33, 4)
    joints = {12: (32, 42), 11: (68, 42), 24: (35, 139), 23: (65, 139), 26: (35, 200), 28: (35, 260),
              32: (35, 270), 25: (65, 200), 27: (65, 260), 31: (65, 270)} | arms
    for j, (x, y) in joints.items():
        pose[j] = torch.tensor([x, y, 0.0, 1.0])
    return pose


def test_bare_arms_beside_the_torso_are_not_the_back_of_the_shirt():
    """Bare arms hang at the sides of a blue shirt, touching it: the photo's edge in those rows is skin. With the
    pose, the shirt's back stays blue there and the arms' back is skin; without it, the rows take the arms'
    skin across the back (what the pose is for)."""
    image, person, regions = shirt_photo(arms_beside=True)
    image = image.clamp(0, 1)
    pose = pose_with_arms({14: (25, 85), 13: (75, 85), 16: (25, 125), 15: (75, 125)})
    ys, xs = torch.meshgrid(torch.arange(60, 120), torch.arange(36, 64), indexing="ij")
    back = torch.stack([xs.flatten(), ys.flatten()], 1)
    with_pose = back_colours(image, person, regions, back, pose=pose)
    assert float((with_pose - SHIRT).norm(dim=-1).mean()) < 0.06
    without = back_colours(image, person, regions, back)
    assert float((without - SKIN).norm(dim=-1).mean()) < float((without - SHIRT).norm(dim=-1).mean())
    ys, xs = torch.meshgrid(torch.arange(60, 120), torch.arange(21, 29), indexing="ij")
    arm = back_colours(image, person, regions, torch.stack([xs.flatten(), ys.flatten()], 1), pose=pose)
    assert float((arm - SKIN).norm(dim=-1).mean()) < 0.06                    # the arm's own back is skin


def test_one_painter_paints_each_set_of_pixels_as_a_call_of_its_own_would():
    """personalize paints the back shell, the rim walls and the crack walls with one BackPainter: each set must
    come out as back_colours alone gives it (no state carried from one call to the next), bare arms included."""
    from engine.avatar.backside import BackPainter
    image, person, regions = shirt_photo(arms_beside=True)
    image = image.clamp(0, 1)
    pose = pose_with_arms({14: (25, 85), 13: (75, 85), 16: (25, 125), 15: (75, 125)})
    paint = BackPainter(image, person, regions, pose=pose)
    ys, xs = torch.nonzero(person, as_tuple=True)
    sets = [torch.stack([xs, ys], 1)[(ys >= 60) & (ys < 120) & (xs >= 21) & (xs < 29)],      # an arm
            torch.stack([xs, ys], 1)[(ys >= 60) & (ys < 120) & (xs >= 36) & (xs < 64)],      # the torso
            torch.stack([xs, ys], 1)]                                                       # everyone
    for pixels in sets:
        torch.testing.assert_close(paint(pixels), back_colours(image, person, regions, pixels, pose=pose),
                                   rtol=0, atol=0)
    # given every pixel's body part (personalize has it from the limbs' depth), the painter paints the same
    from engine.avatar.limbs import body_parts
    H, W = person.shape
    gy, gx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    parts = body_parts(torch.stack([gx, gy], -1).reshape(-1, 2) + 0.5, pose).reshape(H, W)
    given = BackPainter(image, person, regions, pose=pose, parts=parts)
    assert bool(given.bare.any())                                              # the bare arms are there
    torch.testing.assert_close(given(sets[2]), paint(sets[2]), rtol=0, atol=0)


def test_a_strip_of_forehead_above_the_face_mesh_is_not_hair_but_a_bald_crown_is_the_crown():
    """The face mesh stops 8 rows under the hairline: that strip of forehead lies in the crown. Behind the head
    its rows are the hair's brown, not a band of skin. A bald head (a crown of skin) keeps its skin behind."""
    image = torch.ones(96, 64, 3)
    regions = torch.full((96, 64), -1, dtype=torch.long)
    regions[4:24, 16:48] = HAIR
    regions[24:50, 20:44] = FACE
    regions[50:, 8:56] = BODY
    person = regions >= 0
    hair, skin, shirt = torch.tensor([0.35, 0.2, 0.1]), torch.tensor([0.9, 0.7, 0.6]), torch.tensor([0.1, 0.2, 0.6])
    gen = torch.Generator().manual_seed(0)
    image[person] = 0.02 * torch.randn(int(person.sum()), 3, generator=gen)
    image[regions == HAIR] += hair
    image[regions == FACE] += skin
    image[regions == BODY] += shirt
    image[16:24, 16:48] += skin - hair                                         # the forehead strip
    image = image.clamp(0, 1)
    ys, xs = torch.meshgrid(torch.arange(16, 24), torch.arange(20, 44), indexing="ij")
    behind = back_colours(image, person, regions, torch.stack([xs.flatten(), ys.flatten()], 1))
    assert float((behind - hair).norm(dim=-1).mean()) < 0.06
    bald = image.clone()
    n = int((regions == HAIR).sum())
    bald[regions == HAIR] = (skin + 0.02 * torch.randn(n, 3, generator=gen)).clamp(0, 1)
    behind = back_colours(bald, person, regions, torch.stack([xs.flatten(), ys.flatten()], 1))
    assert float((behind - skin).norm(dim=-1).mean()) < 0.06


def test_a_bare_forearm_across_the_body_shows_the_shirt_behind_it():
    """A bare forearm lies across a blue shirt, from one side to the other (inside the torso's quadrilateral):
    from behind, the torso is what shows there, so its back is the shirt's blue, not the arm's skin."""
    image, person, regions = shirt_photo(arms_beside=False)
    image[86:96, 30:70] += SKIN - SHIRT                                        # the forearm, across the shirt
    image = image.clamp(0, 1)
    pose = pose_with_arms({14: (31, 90), 13: (69, 90), 16: (60, 91), 15: (69, 120)})
    ys, xs = torch.meshgrid(torch.arange(87, 95), torch.arange(36, 64), indexing="ij")
    back = back_colours(image, person, regions, torch.stack([xs.flatten(), ys.flatten()], 1), pose=pose)
    assert float((back - SHIRT).norm(dim=-1).mean()) < 0.06
