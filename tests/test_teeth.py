"""Teeth and tongue (engine.avatar.teeth): rows on the right jaw, behind the lips, arching back; colours from
the photo, with no chroma for a greyscale photo."""
import pytest
import torch

from engine.avatar.mouth import UPPER_INNER, split_line_y
from engine.avatar.teeth import (IVORY, LOWER_ROW, LOWER_SHOW, TONGUE_BOTTOM, TONGUE_TOP, UPPER_ROW, UPPER_SHOW,
                                 is_greyscale, mouth_colours, mouth_insides)
from engine.render.gaussians import sh_dc_to_rgb
from tests.test_mouth import synthetic_face


def test_colours_come_from_the_photo_and_a_grey_photo_gets_a_grey_mouth():
    image = torch.zeros(20, 20, 3)
    image[..., 0], image[..., 1], image[..., 2] = 0.7, 0.3, 0.35              # red lips everywhere
    lips = torch.zeros(20, 20, dtype=torch.bool)
    lips[:10] = True
    opening = torch.zeros(20, 20, dtype=torch.bool)
    opening[12:16, 5:15] = True
    c = mouth_colours(image, lips, opening)
    assert torch.allclose(c["tooth"], torch.tensor(IVORY))                    # no teeth in the photo: ivory
    assert torch.allclose(c["interior"], 0.3 * torch.tensor([0.7, 0.3, 0.35]))
    image[12:16, 5:15] = torch.tensor([0.8, 0.8, 0.75])                       # the photo shows its teeth
    assert torch.allclose(mouth_colours(image, lips, opening)["tooth"], torch.tensor([0.8, 0.8, 0.75]))
    grey = image.mean(-1, keepdim=True).expand(20, 20, 3).contiguous()
    assert is_greyscale(grey) and not is_greyscale(image)
    for name, rgb in mouth_colours(grey, lips, torch.zeros_like(opening)).items():
        assert float(rgb.max() - rgb.min()) == 0.0, name


def test_rows_sit_on_their_jaw_behind_the_lips_and_arch_back():
    face = synthetic_face(gap=0.0)
    front = torch.full((120, 120), 10.0)                                       # a flat face 10 px in front of z0
    K = torch.tensor([[200.0, 0, 60], [0, 200.0, 60], [0, 0, 1]])
    colours = mouth_colours(torch.full((8, 8, 3), 0.5), torch.ones(8, 8, dtype=torch.bool),
                            torch.zeros(8, 8, dtype=torch.bool))
    g, px, side = mouth_insides(face, front, K, 2.5, colours)
    eye = 60.0
    dy = (px[:, 1] - split_line_y(face, px[:, 0])) / eye
    upper, lower = side == 1, side == 2
    assert int(upper.sum()) > 50 and int(lower.sum()) > 50
    assert float(dy[upper].min()) >= -UPPER_ROW - 1e-3 and float(dy[upper].max()) <= UPPER_SHOW + 1e-3
    rgb = sh_dc_to_rgb(g.sh[:, 0])
    tongue = lower & ((rgb - 0.8 * 0.5).abs() < 1e-4).all(1)                 # the lip colour (0.5 grey) x 0.8
    assert int(tongue.sum()) > 50
    assert float(dy[lower & ~tongue].min()) >= -LOWER_SHOW - 1e-3 and float(dy[lower & ~tongue].max()) <= LOWER_ROW + 1e-3
    # the tongue's back stands above the lower row's edges, so an open mouth shows it
    assert TONGUE_TOP < -LOWER_SHOW and float(dy[tongue].min()) == pytest.approx(TONGUE_TOP, abs=1.5 / 60)  # 1 px rows
    assert float(dy[tongue].max()) <= TONGUE_BOTTOM + 1e-3
    assert LOWER_ROW < UPPER_ROW
    surface = 2.5 - 10.0 * 2.5 / 200.0
    assert float(g.means[:, 2].min()) > surface                               # all behind the lips
    middle = (px[:, 0] - 50).abs() < 1
    ends = (px[:, 0] - 50).abs() > 12
    assert float(g.means[upper & ends, 2].mean()) > float(g.means[upper & middle, 2].mean()) + 0.01
    light = rgb.mean(-1) > 0.6
    assert float(light[upper].float().mean()) > 0.6                           # mostly crowns, a gum edge


def test_a_tilted_heads_teeth_turn_with_its_mouth():
    """The same face turned 30 degrees in the photo gets the same rows, turned 30 degrees about the mouth: they
    run along its lips, not along the photo's rows."""
    import math
    from engine.avatar.mouth import LOWER_INNER, UPPER_INNER
    face = synthetic_face(gap=0.0)
    front = torch.full((160, 160), 10.0)
    K = torch.tensor([[200.0, 0, 60], [0, 200.0, 60], [0, 0, 1]])
    colours = mouth_colours(torch.full((8, 8, 3), 0.5), torch.ones(8, 8, dtype=torch.bool),
                            torch.zeros(8, 8, dtype=torch.bool))
    centre = face[list(UPPER_INNER) + list(LOWER_INNER), :2].mean(0)
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    R = torch.tensor([[c, -s], [s, c]])
    tilted = face.clone()
    tilted[:, :2] = (face[:, :2] - centre) @ R.T + centre
    _, px, side = mouth_insides(face, front, K, 2.5, colours)
    _, px_t, side_t = mouth_insides(tilted, front, K, 2.5, colours)
    assert torch.equal(side, side_t)
    torch.testing.assert_close(px_t, (px - centre) @ R.T + centre, atol=1e-3, rtol=0)
    # and the lower row hangs below the tilted split line along the mouth's own "down", not the photo's
    down = R[:, 1]                                                            # the face's y axis in the photo
    lower = side_t == 2
    assert float(((px_t[lower] - centre) @ down).mean()) > 0


def test_a_smiles_own_upper_teeth_paint_the_upper_row_down_to_its_lower_lip():
    """A photo whose lips are 8 px apart (inner lips at y 66 and 74, eyes 60 px apart) showing its teeth: the
    closed rest mouth meets a quarter of the way down (y 68, the lips half a pixel over each other), and the
    upper row reaches on down past the photo's lower lip (y 74) to UPPER_SHOW eye widths below the resting upper
    lip (the incisors go on behind the lower lip), taking each tooth-like pixel's own colour; a dark pixel in the
    opening, and the crowns below the photo's lip, keep the plain tooth colour. The lower row stands OVERJET
    behind the upper one."""
    from engine.avatar.teeth import BEHIND, OVERJET, SEAM_SHADE
    face = synthetic_face(gap=8.0)
    image = torch.full((120, 120, 3), 0.6)
    image[..., 1:] = 0.4                                                    # skin, not tooth-like
    image[67:74, 36:65] = torch.tensor([0.85, 0.84, 0.80])                  # the teeth the smile shows ...
    image[67:74, 50:52] = torch.tensor([0.70, 0.70, 0.68])                  # ... a seam between two crowns ...
    image[72:74, 40:44] = 0.05                                              # ... and a dark gap under one
    colours = mouth_colours(image, torch.zeros(120, 120, dtype=torch.bool), torch.zeros(120, 120, dtype=torch.bool))
    front = torch.full((120, 120), 10.0)
    K = torch.tensor([[200.0, 0, 60], [0, 200.0, 60], [0, 0, 1]])
    g, px, side = mouth_insides(face, front, K, 2.5, colours, image)
    rgb = sh_dc_to_rgb(g.sh[:, 0])
    upper = side == 1
    centre = upper & ((px[:, 0] - 50.5).abs() < 0.6)
    edge = 66.0 + 0.25 * 8.0 + 0.5                                          # the resting upper lip: y 68.5
    assert float(px[centre, 1].max()) == 74.5                              # 68.5 + 0.11 x 60 = 75.1: rows 1 px apart
    assert float(px[upper, 1].max()) <= edge + UPPER_SHOW * 60.0 + 1e-3
    behind_lip = centre & (px[:, 1] > 74.0)                 # under the photo's lower lip: plain, the built seam
    assert int(behind_lip.sum()) == 1                       # between the central incisors
    torch.testing.assert_close(rgb[behind_lip], SEAM_SHADE * colours["tooth"][None], atol=1e-5, rtol=0)
    mid = upper & ((px[:, 0] - 50.5).abs() < 0.6)                          # the column x 50.5: on the seam
    seam = mid & (px[:, 1] > 67.5) & (px[:, 1] < 73.5)
    assert int(seam.sum()) >= 5
    torch.testing.assert_close(rgb[seam], torch.tensor([0.70, 0.70, 0.68]).expand(int(seam.sum()), 3),
                               atol=1e-5, rtol=0)
    crowns = upper & ((px[:, 0] - 46.5).abs() < 0.6) & (px[:, 1] > 67.5) & (px[:, 1] < 73.5)
    torch.testing.assert_close(rgb[crowns], torch.tensor([0.85, 0.84, 0.80]).expand(int(crowns.sum()), 3),
                               atol=1e-5, rtol=0)
    dark = upper & (px[:, 0] >= 40.5) & (px[:, 0] < 43.5) & (px[:, 1] >= 72.0) & (px[:, 1] < 73.5)
    assert int(dark.sum()) >= 3
    plain = ((rgb[dark] - colours["tooth"]).abs().amax(1) < 1e-5) | \
        ((rgb[dark] - SEAM_SHADE * colours["tooth"]).abs().amax(1) < 1e-5)         # a crown or a built seam
    assert bool(plain.all())
    # without a photo: the same rows, plain
    g0, px0, side0 = mouth_insides(face, front, K, 2.5, colours)
    assert torch.equal(px0, px) and not torch.equal(g0.sh, g.sh)
    # depth: the lower row's middle OVERJET eye widths further back than the upper row's (flat face, 200 px focal)
    z = g.means[:, 2]
    middle = (px[:, 0] - 50.5).abs() < 0.6
    lower_teeth = (side == 2) & ((rgb - colours["tongue"]).abs().amax(1) > 1e-4)
    eye_world = 60.0 * 2.5 / 200.0
    dz = float(z[lower_teeth & middle].mean() - z[upper & middle].mean())
    assert dz == pytest.approx(OVERJET * eye_world, rel=0.02) and BEHIND > 0


def test_built_rows_fade_into_the_dark_toward_the_corners_and_the_lower_row_is_in_shadow():
    """A closed-mouth photo's rows are built: lit across the front teeth, fading CORNER_SHADE of the way into the
    mouth's dark interior at the ends (the buccal corridor; lit to the end they stood as a white bar at each corner,
    dimmed to grey as fangs), the lower row LOWER_SHADE of the upper one and narrower (LOWER_SPAN)."""
    from engine.avatar.teeth import CORNER_FROM, CORNER_SHADE, LOWER_SHADE, LOWER_SPAN, ROW_SPAN, SEAM_SHADE
    face = synthetic_face(gap=0.0)
    K = torch.tensor([[200.0, 0, 60], [0, 200.0, 60], [0, 0, 1]])
    colours = mouth_colours(torch.full((8, 8, 3), 0.5), torch.ones(8, 8, dtype=torch.bool),
                            torch.zeros(8, 8, dtype=torch.bool))
    g, px, side = mouth_insides(face, torch.full((120, 120), 10.0), K, 2.5, colours)
    rgb = sh_dc_to_rgb(g.sh[:, 0])
    ivory = colours["tooth"]                                               # a grey photo's: IVORY's grey
    x = px[:, 0].float()
    half = float((x[side == 1].max() - x[side == 1].min()) / 2) / 0.92      # the row spans 0.92 of the half-width
    u = (x - float(x[side == 1].min() + x[side == 1].max()) / 2).abs() / half
    crown = (rgb - ivory).abs().max(1).values < 1e-4                        # lit crowns, no gap or gum
    front = u <= CORNER_FROM - 0.02
    assert int((front & (side == 1) & crown).sum()) > 30                    # across the front: the crown's own colour
    end = (x == float(x[side == 1].min())) & (side == 1)       # the row's first column: span x half-width out
    # there the smoothstep is the whole way: the crown (0.9x at a seam) CORNER_SHADE blended into the interior
    last = ivory * (1 - CORNER_SHADE) + colours["interior"] * CORNER_SHADE
    off = (rgb[end] - last).abs().max(1).values
    assert int(end.sum()) > 5 and float(off.median()) < 0.02
    assert float(rgb[end].mean(1).max()) < 0.5 * float(ivory.mean())       # darker than the old grey fangs
    lower = (side == 2) & front & ((rgb - LOWER_SHADE * ivory).abs().max(1).values < 1e-4)
    assert int(lower.sum()) > 20
    assert not bool(((side == 2) & crown).any())                            # no lower crown as lit as the upper
    teeth_x = x[(side == 2) & ((rgb - colours["tongue"]).abs().amax(1) > 1e-4)]
    lower_half = float(teeth_x.max() - teeth_x.min()) / 2
    assert lower_half == pytest.approx(half * LOWER_SPAN, abs=1.01) and LOWER_SPAN < ROW_SPAN
    # the two central incisors meet at the middle: the column there is a seam, those a quarter-crown either side lit
    corners = face[list(UPPER_INNER), 0]                                   # the mouth's middle, as built
    mid_x = float(corners.min() + corners.max()) / 2
    body = (side == 1) & ~((rgb - colours["gum"]).abs().amax(1) < 1e-4)
    for at, lit in ((0.0, False), (0.17, True), (-0.17, True), (0.45, True)):
        columns = x[body].unique()
        nearest = columns[(columns - (mid_x + at * half)).abs().argmin()]
        col = body & (x == nearest)
        assert int(col.sum()) > 10
        want = ivory if lit else SEAM_SHADE * ivory
        torch.testing.assert_close(rgb[col], want.expand(int(col.sum()), 3), atol=1e-5, rtol=0)


def test_the_upper_row_follows_the_smile_arc_and_a_turned_face_keeps_its_teeth_size():
    """A closed mouth (eyes 60 px apart): the upper row's edge hangs UPPER_SHOW eye widths below the resting upper
    lip at the middle and UPPER_SHOW_ENDS at the row's ends (the canines stand higher; level with the middle they
    hung as fangs). The same face turned away, its eye corners 80 px apart in depth (a 100 px eye width in 3D,
    60 px in the photo), gets rows 75/60 as tall: the turn shortens the eye line, not the teeth."""
    from engine.avatar.mouth import resting_lip_edges
    from engine.avatar.teeth import UPPER_SHOW_ENDS
    K = torch.tensor([[200.0, 0, 60], [0, 200.0, 60], [0, 0, 1]])
    colours = mouth_colours(torch.full((8, 8, 3), 0.5), torch.ones(8, 8, dtype=torch.bool),
                            torch.zeros(8, 8, dtype=torch.bool))
    front = torch.full((120, 120), 10.0)

    def upper_reach(face):
        _, px, side = mouth_insides(face, front, K, 2.5, colours)
        up = side == 1
        xs = torch.unique(px[up, 0])
        low = torch.stack([px[up & (px[:, 0] == x), 1].max() for x in xs])
        return xs, low - resting_lip_edges(face, xs)[0]                   # how far below the resting lip, px

    face = synthetic_face(gap=0.0)
    xs, below = upper_reach(face)
    middle = int((xs - xs.mean()).abs().argmin())
    assert float(below[middle]) == pytest.approx(UPPER_SHOW * 60.0, abs=1.0)      # rows 1 px apart
    assert float(below[0]) == pytest.approx(UPPER_SHOW_ENDS * 60.0, abs=1.0)
    assert float(below[-1]) == pytest.approx(UPPER_SHOW_ENDS * 60.0, abs=1.0)
    assert UPPER_SHOW - UPPER_SHOW_ENDS > 2.0 / 60.0                        # the arc is more than the rows' 1 px
    turned = face.clone()
    turned[263, 2] = 80.0
    _, below_t = upper_reach(turned)
    assert float(below_t[middle]) == pytest.approx(UPPER_SHOW * 100.0, abs=1.0)
    assert float(below_t[middle]) > float(below[middle]) + 3.0


def test_on_parted_lips_the_built_row_stays_above_the_lifted_lower_lip():
    """Lips 6 px apart (inner at y 66 and 72) with a 3 px lower lip (outer edge y 75), eyes 60 px apart: the rest
    mouth closes on y 67.5 and lifts the lower lip's outer edge 4.4 px (to y 70.6), the chin's skin under it
    less. The arc would hang the row 6.6 px below the resting upper lip (y 68), over that skin; it stops at
    UPPER_SHOW_ENDS (4.2 px: the reach before the arc, past the photo's lower lip at 4 px) instead. The same face
    with a 12 px lower lip keeps the arc."""
    from engine.avatar.mouth import LOWER_OUTER, resting_lip_edges
    from engine.avatar.teeth import upper_row_reach
    K = torch.tensor([[200.0, 0, 60], [0, 200.0, 60], [0, 0, 1]])
    colours = mouth_colours(torch.full((8, 8, 3), 0.5), torch.ones(8, 8, dtype=torch.bool),
                            torch.zeros(8, 8, dtype=torch.bool))
    from engine.avatar.teeth import UPPER_SHOW_ENDS
    for thickness, reach in ((3.0, UPPER_SHOW_ENDS * 60.0), (12.0, UPPER_SHOW * 60.0)):
        face = synthetic_face(gap=6.0)
        for i in LOWER_OUTER[2:]:                                            # not the corners
            face[i, 1] = 72.0 + thickness
        x = torch.tensor([50.0])
        assert float(resting_lip_edges(face, x)[0]) == pytest.approx(68.0)
        assert float(upper_row_reach(face, x)) == pytest.approx(reach, abs=1e-4)
        _, px, side = mouth_insides(face, torch.full((120, 120), 10.0), K, 2.5, colours)
        middle = (side == 1) & ((px[:, 0] - 50.0).abs() < 0.6)
        assert float(px[middle, 1].max()) == pytest.approx(68.0 + reach, abs=1.0)
