"""One photo -> a canonical, animatable 3D Gaussian avatar (engine.avatar.bundle.Avatar).

Steps: 1 load and check the photo, 2 person mask and landmarks (the inner lips moved onto the edges the photo
shows them at, engine.avatar.inner_lips), 3 region labels per pixel, 4 front and back
surface depth (the body template fitted to the pose, engine.avatar.body_fit, over the inflated silhouette; a rounder
head; face-mesh relief on the face; engine.avatar.depth), 5 front/back shells
of surfels (dense on face and hands; engine.avatar.shell), the back coloured per region from the photo's own
surfaces, never mirrored (engine.avatar.backside), 6 an under-layer behind the face: the mouth interior and a soft second
skin (engine.avatar.mouth); over PersonalizeConfig.max_gaussians, back to 1 with a smaller copy of the photo,
7 photometric fit of the front shell with the differentiable rasterizer, 8 control
particles on the landmarks, lifted to 3D, 9 skinning from every Gaussian to its nearest particles of compatible
regions, split at the mouth line so the jaw opens the mouth instead of stretching it; arms and legs ride their
bones (engine.avatar.limbs). The photo camera is the world frame: viewmat identity, +z forward, the person at
distance z0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

import cuda_ext
from engine.avatar.backside import BackPainter, inset_colours, rim_colours
from engine.avatar.behind_arms import behind_arms
from engine.avatar.body_fit import body_depth, fit_body
from engine.avatar.bundle import Avatar, PhotoCamera
from engine.avatar.depth import surface_depth, surface_normals, surface_z
from engine.avatar.eyelids import lid_sheets, rig_eyelids
from engine.avatar.inner_lips import refine_inner_lips
from engine.avatar.landmarks import Landmarks, detect, person_mask_and_pose, pose_in_crop
from engine.avatar.limbs import body_parts, limb_skinning
from engine.avatar.matte import edge_matte
from engine.avatar.mouth import (Level, closing_depth, closing_shift, in_gap, lip_band, mouth_sides, particle_sides,
                                 under_layer)
from engine.avatar.particles import canonical_slots
from engine.avatar.photo import MIN_SIDE, crop, load_photo, person_box
from engine.avatar.regions import BODY, EYES, FACE, HAIR, HANDS, LIPS, region_map
from engine.avatar.shell import (ShellConfig, build_shells, crack_walls, face_the_camera, halo_normals, outward,
                                 rim_walls)
from engine.avatar.skinning import skin_weights
from engine.avatar.teeth import inner_lip_mask, mouth_colours, mouth_insides
from engine.render.camera import intrinsics
from engine.render.gaussians import Gaussians, rgb_to_sh_dc
from engine.render.metrics import psnr
from engine.render.splat import facing, render_gaussians


@dataclass
class PersonalizeConfig:
    max_side: int = 512            # the photo is downscaled to this
    fov_y_deg: float = 20.0        # assumed vertical field of view of the photo
    shell: ShellConfig = field(default_factory=ShellConfig)
    fit_steps: int = 300           # photometric fit, at most (0: none, the shell's colours as sampled)
    fit_patience: int = 25         # stop when the loss has not improved by 0.1% for this many steps
    skin_neighbours: int = 4
    body_template: bool = True     # fit the parametric body to the pose for the body's depth (engine.avatar.body_fit)
    body_fit_steps: int = 250
    # The live engine's speed goes with the number of Gaussians (bench/avatar_engine.py, 2 cores, 512 px): the
    # bundled astronaut (66k) renders at 2.3-2.5x real time, a tight selfie that fills the frame (67k) at 2.0-2.2x.
    # A photo that would make more (a selfie: every face pixel is one, and the frame cuts the head on all sides:
    # 101k) is worked on at the size that stays under this. Not much lower: the astronaut made at 495 px instead of
    # 512 lost a third of its open mouth's teeth (bench/person.py: tooth share 0.23 -> 0.15).
    max_gaussians: int = 72000
    # A photo that comes out under max_side (nothing to downscale) has its body sampled at every pixel, as the face
    # is, when the avatar stays under max_gaussians (a stride-2 body lost the grain and folds of a 455 px photo:
    # basketball1.png 46.5 -> 51.1 dB). False keeps shell.stride whatever the size (the CLI's --body-stride).
    fine_small_photos: bool = True


# A fitted surfel grows at most this much: a steep one shows the photo camera a sliver, and growing its long axis
# to fill the pixel would make a streak along the view ray, seen from the side.
MAX_GROWTH = 2.0
SMALL_PERSON = 256                 # px: a person crop under this on its longer side makes a coarse avatar (a note)
SMALL_FACE = 24                    # px between the outer eye corners under which lips and lids are a few px (a note)
DECODE_SIDE = 2048                 # the photo is decoded at most this large, cropped to the person, then downscaled

# Which particle regions a Gaussian of each region may follow.
ALLOWED = {BODY: {BODY, HANDS}, FACE: {FACE, LIPS, EYES}, LIPS: {LIPS, FACE}, EYES: {EYES, FACE},
           HANDS: {HANDS, BODY}, HAIR: {FACE, BODY}}


def fit_front_view(g: Gaussians, image: Tensor, person: Tensor, K: Tensor, cfg: PersonalizeConfig,
                   trainable: Tensor, progress: bool = True, visible: Tensor | None = None) -> dict:
    """Adam on colours, opacities, scales and positions of the `trainable` [N] Gaussians (the front shell) so
    the front render matches the photo inside the silhouette and is transparent outside it. The hidden back
    shell stays as built: it gets only the faint gradient that leaks through the front shell, and Adam, which
    normalises step sizes, would turn that noise into speckle. Modifies g in place; returns a loss summary."""
    H, W = person.shape
    keep = trainable.float()
    def leaf(t: Tensor) -> Tensor:
        t = t.clone().requires_grad_(True)
        t.register_hook(lambda grad: grad * keep.view(-1, *([1] * (grad.dim() - 1))))
        return t
    sh, log_s, means = leaf(g.sh), leaf(g.scales.log()), leaf(g.means)
    log_s_cap = g.scales.log() + math.log(MAX_GROWTH)
    logit = leaf(torch.logit(g.opacities.clamp(1e-4, 1 - 1e-4)))
    opt = torch.optim.Adam([{"params": [sh], "lr": 0.02}, {"params": [logit], "lr": 0.05},
                            {"params": [log_s], "lr": 0.01}, {"params": [means], "lr": 2e-4}])
    target, inside = image, person.float()[..., None]
    view, Ks, bg = torch.eye(4)[None], K[None], torch.ones(1, 3)
    best, since, history = float("inf"), 0, []
    bar = tqdm(range(cfg.fit_steps), desc="fitting to the photo", unit="step", disable=not progress)
    for _ in bar:
        v = slice(None) if visible is None else visible       # render what the photo camera renders (culling)
        img, alpha, _ = cuda_ext.rasterization(means[v], g.quats[v], log_s.exp()[v], torch.sigmoid(logit)[v], sh[v],
                                               view, Ks, W, H, sh_degree=0, backgrounds=bg)
        loss = ((img[0] - target).abs() * inside).sum() / inside.sum() + (alpha[0] * (1 - inside)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            torch.minimum(log_s, log_s_cap, out=log_s)
        value = float(loss.detach())
        history.append(value)
        bar.set_postfix(loss=f"{value:.4f}")
        if value < best * (1 - 1e-3):
            best, since = value, 0
        else:
            since += 1
            if since >= cfg.fit_patience:
                break
    with torch.no_grad():                  # only trainable rows change (log/exp and logit/sigmoid do not round-trip)
        pick = lambda new, old: torch.where(trainable.view(-1, *([1] * (old.dim() - 1))), new, old)  # noqa: E731
        g.sh, g.opacities = pick(sh, g.sh), pick(torch.sigmoid(logit), g.opacities)
        g.scales, g.means = pick(log_s.exp(), g.scales), pick(means, g.means)
    return {"steps": len(history), "loss_first": history[0] if history else None,   # fit_steps 0: no fit
            "loss_last": history[-1] if history else None}


def _away_colour(g: Gaussians, which: Tensor, pixel: Tensor, fine: Tensor, share: Tensor, clean: Tensor,
                 stride: int) -> Tensor:
    """The colours [N, 3] (SH DC) the Gaussians show away from the photo camera (engine.render.away): the surfels
    `which` [N] bool (the front shell) on pixels [N, 2] (x, y) where the photo mixes in its backdrop, share [H, W]
    < 1, show the person's colour there, clean [H, W, 3] (engine.avatar.matte.edge_matte; outside `fine` [H, W] a
    surfel stands for the stride x stride pixels from its own, and counts as mixed when any of them is). The
    rest show their own colour."""
    block = -F.max_pool2d(F.pad(-share[None, None], (0, stride - 1, 0, stride - 1), value=-1.0), stride, 1)[0, 0]
    y, x = pixel[:, 1], pixel[:, 0]
    mixed = which & (torch.where(fine[y, x], share[y, x], block[y, x]) < 1.0)
    dc = g.sh[:, 0].clone()
    dc[mixed] = rgb_to_sh_dc(clean[y[mixed], x[mixed]])
    return dc


def control_particles(lm: Landmarks, regions: Tensor, front: Tensor, K: Tensor, shell: ShellConfig):
    """Anchors on the landmarks the photo shows, in the canonical slot order (engine.avatar.particles): face-mesh
    lip, eye and every 6th point, the visible pose joints from the shoulders down, and both hands; lifted onto
    the front surface (front [H, W], depth in pixels). -> ([K, 3], [K] regions, names)."""
    H, W = regions.shape
    source = {"face": lm.face, "pose": lm.pose, "hand_left": lm.left_hand, "hand_right": lm.right_hand}
    anchors: list[tuple[str, float, float, int]] = []
    for name, region in canonical_slots():
        kind, i = name.split(":")
        points = source[kind]
        if points is None:
            continue
        x, y = float(points[int(i), 0]), float(points[int(i), 1])
        if kind == "pose" and not (points[int(i), 3] > 0.5 and 0 <= x < W and 0 <= y < H):
            continue                                                       # a joint the photo does not show
        anchors.append((name, x, y, region))
    if not anchors:
        raise ValueError("no landmarks to anchor control particles on")
    fx, fy, cx, cy = float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])
    pts = []
    for _, x, y, _ in anchors:
        xi, yi = min(max(int(x), 0), W - 1), min(max(int(y), 0), H - 1)
        z = shell.z0 - float(front[yi, xi]) * shell.z0 / fx
        pts.append([(x - cx) / fx * z, (y - cy) / fy * z, z])
    return torch.tensor(pts), torch.tensor([a[3] for a in anchors]), [a[0] for a in anchors]


def _skinning(means: Tensor, regions: Tensor, sides: Tensor, particles: Tensor, p_regions: Tensor,
              p_sides: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Skinning (engine.avatar.skinning) over groups = region + 8 * mouth side (engine.avatar.mouth: 0 not split, 1 upper,
    2 lower). A Gaussian follows particles of the regions ALLOWED for its own and, when split, of its side only.
    Where the photo lacks every allowed particle, the nearest present ones stand in."""
    present = {(int(r), int(s)) for r, s in zip(p_regions, p_sides)}
    present_regions = {r for r, _ in present}
    allowed = {}
    groups = regions + 8 * sides
    for group in groups.unique().tolist():
        r, s = group % 8, group // 8
        ok_regions = (ALLOWED[r] & present_regions) or present_regions
        same_side = {pr + 8 * ps for pr, ps in present if pr in ok_regions and (s == 0 or ps == s)}
        allowed[group] = same_side or {pr + 8 * ps for pr, ps in present if pr in ok_regions}
    return skin_weights(means, particles, k, point_regions=groups, particle_regions=p_regions + 8 * p_sides,
                        allowed=allowed, local=True)


def _mouth_layers(face: Tensor, image: Tensor, person: Tensor, regions: Tensor, front: Tensor, K: Tensor,
                  z0: float) -> tuple[Gaussians, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The layers behind the face (engine.avatar.mouth.under_layer) and inside the mouth (engine.avatar.teeth),
    coloured from the photo's lips and teeth. -> (Gaussians [M], pixel [M, 2] (x, y, int), region [M], mouth
    side [M], is_tooth [M] bool: teeth and tongue, which are already laid out for a closed mouth, interior [M] bool:
    the layer behind the mouth (its dark inside, and the skin beside its corners), which stays with the head)."""
    H, W = person.shape
    facial = person & torch.isin(regions, torch.tensor([FACE, LIPS, EYES]))
    world_per_face_unit = float((face[33, :2] - face[263, :2]).norm()) * z0 / float(K[0, 0])
    opening = inner_lip_mask(face, H, W)
    colours = mouth_colours(image, person & (regions == LIPS) & ~opening, opening)
    under, under_px, in_mouth, behind = under_layer(face, image, facial, front, K, z0, 0.08 * world_per_face_unit,
                                                    colours["interior"], 0.25 * world_per_face_unit)
    under_regions = torch.where(in_mouth, LIPS, regions[under_px[:, 1], under_px[:, 0]])
    under_sides = torch.where(behind, 1, mouth_sides(face, under_px + 0.5))   # behind the mouth: with the head
    inside, inside_px, inside_sides = mouth_insides(face, front, K, z0, colours, image)
    inside_px = torch.stack([inside_px[:, 0].long().clamp(0, W - 1), inside_px[:, 1].long().clamp(0, H - 1)], 1)
    is_tooth = torch.cat([torch.zeros(len(under), dtype=torch.bool), torch.ones(len(inside), dtype=torch.bool)])
    interior = torch.cat([behind, torch.zeros(len(inside), dtype=torch.bool)])
    return (Gaussians.cat([under, inside]), torch.cat([under_px, inside_px]),
            torch.cat([under_regions, torch.full((len(inside),), LIPS)]), torch.cat([under_sides, inside_sides]),
            is_tooth, interior)


def shows_both_shoulders(pose: Tensor | None, width: int, height: int) -> bool:
    """Whether pose [33, 4] has both shoulders (11, 12) visible (> 0.5) inside a width x height photo: what the
    control particles need for a face unit when there is no face (engine.avatar.particles.motion_scale)."""
    if pose is None:
        return False
    return all(float(pose[j, 3]) > 0.5 and 0 <= float(pose[j, 0]) < width and 0 <= float(pose[j, 1]) < height
               for j in (11, 12))


def _come_forward(means: Tensor, ahead: Tensor, world_per_px: float) -> None:
    """In place: points [M, 3] (photo camera frame) brought ahead [M] pixels of depth nearer the camera (the shell's
    depth scale: world_per_px world units a pixel), along their line of sight, so each stays on its pixel."""
    z = means[:, 2:3]
    means.mul_(((z - ahead[:, None] * world_per_px) / z).clamp(min=0.5))


def _close_the_mouth(face: Tensor, g: Gaussians, pixel: Tensor, sides: Tensor, is_front: Tensor, teeth: Tensor,
                     particles: Tensor, p_sides: Tensor, K: Tensor, front: Tensor, z0: float) -> Tensor:
    """Closes the photo's lip gap in the rest pose (engine.avatar.mouth.closing_shift, and closing_depth: the
    lower lip comes forward to the upper's depth; front [H, W] the front surface depth, z0 the shell's distance):
    moves the skin's Gaussians [N] (not the teeth) and the control particles [K, 3] in place, and returns which
    Gaussians to keep [N] bool: all but the front skin between the photo's inner lips (its teeth or dark mouth,
    which the built mouth replaces)."""
    f = K.diagonal()[:2]                                                  # (fx, fy)
    moving = torch.where(teeth, 0, sides)
    _come_forward(g.means, closing_depth(face, pixel.float() + 0.5, moving, front), z0 / float(f[0]))
    shift = closing_shift(face, pixel.float() + 0.5, moving)              # [N, 2] pixels
    g.means[:, :2] += shift * g.means[:, 2:3] / f
    # the shift fades toward nose and chin, so it stretches the lips and the skin around them; their splats grow
    # with it, or the stretched lips turn porous and the teeth behind them show through a closed mouth. The
    # stretch is along the shift (the face's own up-down): the shift's change over one pixel that way.
    step = Level(face).back(torch.tensor([[0.0, 0.5]]), about=False)[0]
    stretch = (closing_shift(face, pixel.float() + 0.5 + step, moving)
               - closing_shift(face, pixel.float() + 0.5 - step, moving)).norm(dim=1)
    g.scales = g.scales * (1.0 + stretch)[:, None]
    uv = (K @ (particles / particles[:, 2:]).T).T[:, :2]
    in_column = mouth_sides(face, uv) != 0
    _come_forward(particles, closing_depth(face, uv, torch.where(in_column, p_sides, 0), front), z0 / float(f[0]))
    p_shift = closing_shift(face, uv, torch.where(in_column, p_sides, 0))
    particles[:, :2] += p_shift * particles[:, 2:3] / f
    return ~(is_front & in_gap(face, pixel.float() + 0.5))


def personalize(photo: str | Path, cfg: PersonalizeConfig = PersonalizeConfig(), progress: bool = True,
                _why: list[str] = ()) -> Avatar:
    """The whole pipeline; see the module docstring. Raises ValueError for a photo it cannot use. A photo that
    comes out under cfg.max_side (a small photo: nothing to downscale) has its body sampled at every pixel, as the
    face is: a stride-2 body lost the grain and the folds of a 455 px photo. An avatar over cfg.max_gaussians is
    made again at the usual stride, or else from a smaller copy of the photo (_why: the notes saying so)."""
    given = cfg
    # 1-2. photo (cropped to the person when the photo is much wider or taller), mask, landmarks
    full, info = load_photo(photo, max_side=max(cfg.max_side, DECODE_SIDE))
    H0, W0 = full.shape[:2]
    mask, pose_full = person_mask_and_pose(full)
    box = person_box(mask)
    image = crop(full, box or (0, 0, W0, H0), cfg.max_side)
    hint = pose_in_crop(pose_full, box or (0, 0, W0, H0), image.shape[:2])   # the whole photo's pose, in the crop
    (ow, oh), decoded = info["original_size"], W0 / info["original_size"][0]      # decoded px per photo px
    scale = image.shape[1] / ((box[2] - box[0]) if box else W0) * decoded          # final px per photo px
    notes = list(_why)
    if box is not None:
        x0, y0, x1, y1 = (round(v / decoded) for v in box)
        notes.append(f"the photo ({ow}x{oh}) is much larger than the person in it: cropped to the person, "
                     f"x {x0}..{x1}, y {y0}..{y1}")
    downscaled = scale < 0.999
    if downscaled:
        notes.append(f"downscaled the photo{' crop' if box else ''} by {scale:.3g} to {image.shape[1]}x{image.shape[0]}")
    lm = detect(image, pose_hint=hint)
    if lm.face is not None:
        lm.face = refine_inner_lips(lm.face, image)               # not on the teeth of a smile
    H, W = image.shape[:2]
    if lm.face is None and not shows_both_shoulders(lm.pose, W, H):
        raise ValueError(f"{photo}: mediapipe found no face, and the photo does not show both shoulders: nothing to "
                         f"animate (a face about 20 px wide or more, or a body down to the shoulders, is needed)")
    person = lm.mask > 0.5
    if float(person.float().mean()) < 0.01:
        raise ValueError(f"{photo}: the person covers under 1% of the photo")
    if max(H, W) < SMALL_PERSON:
        notes.append(f"the person is only {max(H, W)} px in the photo: the avatar holds no more detail than that "
                     f"(a photo with the person {cfg.max_side} px or more works best)")
    eyes_px = None if lm.face is None else float((lm.face[33, :2] - lm.face[263, :2]).norm())
    if eyes_px is None:
        notes.append("mediapipe found no face (turned away, or too small): the body moves, but no mouth or eyes do")
    elif eyes_px < SMALL_FACE:
        notes.append(f"the face is {eyes_px:.0f} px between the eyes: lips and lids are a few pixels, and move "
                     f"coarsely ({2 * SMALL_FACE} px or more works best)")
    if cfg.fine_small_photos and max(H, W) < cfg.max_side and cfg.shell.stride > 1:
        cfg = replace(cfg, shell=replace(cfg.shell, stride=1))
    # 3-5. regions, relief, shells
    regions = region_map(lm, person)
    fine = (regions == FACE) | (regions == LIPS) | (regions == EYES) | (regions == HANDS)
    K = intrinsics(W, H, cfg.fov_y_deg)
    body, body_meta = None, None
    if cfg.body_template:
        posed = fit_body(lm.pose, K, W, H, cfg.shell.z0, cfg.body_fit_steps, progress=progress)
        if posed is None:
            notes.append("the photo shows too little of the body to fit the body template: the body's depth is "
                         "the inflated silhouette")
        else:
            body = body_depth(posed, K, W, H, cfg.shell.z0)
            body_meta = {"error_px": round(posed.error_px, 2), "landmarks": len(posed.used)}
    parts = None
    if body is not None:                    # each pixel's body part: the limbs' round tubes, and the back's bare arms
        ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
        parts = body_parts(torch.stack([xs, ys], -1).reshape(-1, 2) + 0.5, lm.pose).reshape(H, W)
    depth = surface_depth(person, regions, lm.face, cfg.shell.thickness, cfg.shell.head_roundness, progress, body,
                          parts)
    g, pixel, is_front = build_shells(image, person, depth, K, fine, cfg.shell)
    facing_photo = face_the_camera(g, pixel, is_front, person)     # the halo ring: seen from the front only
    g_regions = regions[pixel[:, 1], pixel[:, 0]]
    # what the sides and the back are painted from: the photo with its backdrop taken out of the edge
    # (engine.avatar.matte), so no wall or back surfel carries the backdrop's colour round the head; the front
    # shell's edge keeps the photo's mix for the photo camera and shows the person away from it (_away_colour)
    share, clean = edge_matte(image, person)
    is_back = ~is_front
    paint_back = BackPainter(clean, person, regions, pose=lm.pose, parts=parts,    # the back shell, the walls'
                             unsure=lm.unsure)                                     # backs
    g.sh[is_back, 0] = rgb_to_sh_dc(paint_back(pixel[is_back]))
    # 6. the under-layer (mouth interior, a soft second skin behind the face), teeth and tongue
    sides = torch.zeros(len(g), dtype=torch.long)
    extra_px = torch.zeros(0, 2, dtype=torch.long)
    teeth = torch.zeros(len(g), dtype=torch.bool)
    interior = torch.zeros(len(g), dtype=torch.bool)
    if lm.face is not None:
        sides = mouth_sides(lm.face, pixel + 0.5, is_front & torch.isin(g_regions, torch.tensor([FACE, LIPS])))
        inner, extra_px, extra_regions, extra_sides, extra_teeth, extra_interior = _mouth_layers(
            lm.face, image, person, regions, depth[0], K, cfg.shell.z0)
        g = Gaussians.cat([g, inner])
        g_regions, sides = torch.cat([g_regions, extra_regions]), torch.cat([sides, extra_sides])
        none = torch.zeros(len(inner), dtype=torch.bool)
        is_front, is_back, teeth = torch.cat([is_front, none]), torch.cat([is_back, none]), torch.cat([teeth, extra_teeth])
        interior = torch.cat([interior, extra_interior])
    # the lids that slide down over the eyes in a blink, hidden behind the lids' folds at rest
    sheet_eye = torch.full((len(g),), -1, dtype=torch.long)
    if lm.face is not None:
        sheets, sheet_px, eye_of = lid_sheets(lm.face, image, person & (regions == FACE), depth[0], K, cfg.shell.z0)
        g, extra_px = Gaussians.cat([g, sheets]), torch.cat([extra_px, sheet_px])
        g_regions, sides = torch.cat([g_regions, torch.full((len(sheets),), EYES)]), torch.cat(
            [sides, torch.zeros(len(sheets), dtype=torch.long)])
        none = torch.zeros(len(sheets), dtype=torch.bool)
        is_front, is_back, teeth, interior = (torch.cat([t, none]) for t in (is_front, is_back, teeth, interior))
        sheet_eye = torch.cat([sheet_eye, eye_of])
    # the torso behind the arms and hands that lie over it (engine.avatar.behind_arms), bound to the torso
    behind, behind_px = behind_arms(clean, person, regions, lm.pose, depth, K, cfg.shell.z0)
    g, extra_px = Gaussians.cat([g, behind]), torch.cat([extra_px, behind_px])
    g_regions, sides = torch.cat([g_regions, torch.full((len(behind),), BODY)]), torch.cat(
        [sides, torch.zeros(len(behind), dtype=torch.long)])
    none = torch.zeros(len(behind), dtype=torch.bool)
    is_front, is_back, teeth, interior = (torch.cat([t, none]) for t in (is_front, is_back, teeth, interior))
    sheet_eye = torch.cat([sheet_eye, torch.full((len(behind),), -1)])
    torso_only = torch.cat([torch.zeros(len(g) - len(behind), dtype=torch.bool), ~none])
    # the side wall where front meets back, and caps where the person runs off the photo's edge: from the
    # photo's colour just inside the rim at the front edge to the back's colour at the back edge
    caps, caps_px, caps_n = rim_walls(person, depth, K, cfg.shell)
    z_front, z_back = (surface_z(d[caps_px[:, 1], caps_px[:, 0]], side, K, cfg.shell.z0)
                       for d, side in ((depth[0], -1.0), (depth[1], 1.0)))
    along = (caps.means[:, 2] - z_front) / (z_back - z_front).clamp(min=1e-9)   # 0 at the front edge, 1 at the back
    caps.sh[:, 0] = rgb_to_sh_dc(rim_colours(clean, person, caps_px, -caps_n[:, :2], along, paint_back(caps_px),
                                             unsure=lm.unsure))
    # and walls over the steps inside each shell (a turned face standing out of its hair): the photo's colour in
    # front, the back's behind
    face_px = torch.isin(regions, torch.tensor([FACE, LIPS, EYES]))
    front_cracks, f_px, f_n = crack_walls(person, depth[0], -1.0, K, cfg.shell, within=face_px)
    front_cracks.sh[:, 0] = rgb_to_sh_dc(inset_colours(clean, person, f_px, -f_n[:, :2]))   # not the halo's
    back_cracks, b_px, b_n = crack_walls(person, depth[1], 1.0, K, cfg.shell, within=face_px)
    back_cracks.sh[:, 0] = rgb_to_sh_dc(paint_back(b_px))
    caps = Gaussians.cat([caps, front_cracks, back_cracks])
    caps_px, caps_n = torch.cat([caps_px, f_px, b_px]), torch.cat([caps_n, f_n, b_n])
    none = torch.zeros(len(caps), dtype=torch.bool)
    g, g_regions = Gaussians.cat([g, caps]), torch.cat([g_regions, regions[caps_px[:, 1], caps_px[:, 0]]])
    sides, teeth = torch.cat([sides, torch.zeros(len(caps), dtype=torch.long)]), torch.cat([teeth, none])
    interior, torso_only = torch.cat([interior, none]), torch.cat([torso_only, none])
    is_front, is_back = torch.cat([is_front, none]), torch.cat([is_back, none])
    sheet_eye = torch.cat([sheet_eye, torch.full((len(caps),), -1)])
    # outward normals of the surface each Gaussian sits on (the under-layer: the front's), for back-face culling
    front_n, back_n = (surface_normals(d, K, cfg.shell.z0, side) for d, side in ((depth[0], -1.0), (depth[1], 1.0)))
    all_px = torch.cat([pixel, extra_px, caps_px])
    normals = torch.where(is_back[:, None], back_n[all_px[:, 1], all_px[:, 0]], front_n[all_px[:, 1], all_px[:, 0]])
    normals[len(normals) - len(caps):] = caps_n
    halo = facing_photo.nonzero().squeeze(1)                           # the shells come first
    normals[halo] = halo_normals(outward(person)[pixel[halo, 1], pixel[halo, 0]])
    normals[torso_only] = torch.tensor([0.0, 0.0, -1.0])                          # the torso behind the arms
    if len(g) > cfg.max_gaussians and cfg.shell.stride != given.shell.stride:     # the fine body: too many
        why = (f"the body sampled every {given.shell.stride} px: at every pixel the avatar would hold {len(g)} "
               f"Gaussians, over the {cfg.max_gaussians} it renders in real time")
        return personalize(photo, replace(given, fine_small_photos=False), progress, _why=[*_why, why])
    if len(g) > cfg.max_gaussians:      # a tight selfie: every face pixel is a Gaussian, and walls all round
        side = int(max(H, W) * math.sqrt(cfg.max_gaussians / len(g)) * 0.98)
        if side < MIN_SIDE:
            raise ValueError(f"{photo}: the avatar would hold {len(g)} Gaussians at {W}x{H}, and under "
                             f"{cfg.max_gaussians} only below {MIN_SIDE} px")
        why = (f"worked at {side} px: at {W}x{H} the avatar would hold {len(g)} Gaussians, over the "
               f"{cfg.max_gaussians} it renders in real time")
        return personalize(photo, replace(given, max_side=side), progress, _why=[*_why, why])
    # 7. photometric fit of the front shell, with everything the photo camera renders in place
    visible = facing(normals, g.means, torch.eye(4))
    fit = fit_front_view(g, image, person, K, cfg, is_front, progress, visible)
    # 8-9. particles and skinning
    particles, particle_regions, names = control_particles(lm, regions, depth[0], K, cfg.shell)
    p_sides = torch.ones(len(names), dtype=torch.long)
    if lm.face is not None:
        p_sides = particle_sides(lm.face, (K @ (particles / particles[:, 2:]).T).T[:, :2], names)
    if lm.face is not None:                 # the rest mouth is closed, whatever the photo's lips do
        keep = _close_the_mouth(lm.face, g, all_px, sides, is_front, teeth, particles, p_sides, K, depth[0],
                                cfg.shell.z0)
        g, g_regions, sides, normals, all_px = g.select(keep), g_regions[keep], sides[keep], normals[keep], all_px[keep]
        is_front, is_back, teeth, interior = is_front[keep], is_back[keep], teeth[keep], interior[keep]
        torso_only, sheet_eye = torso_only[keep], sheet_eye[keep]
        # skinning splits the lips, not the chin below them (mouth.lip_band); teeth, tongue and the mouth's
        # interior keep the sides they were built with
        sides = torch.where(teeth | interior | lip_band(lm.face, all_px.float() + 0.5), sides, 0)
    skin_index, skin_weight = _skinning(g.means, g_regions, sides, particles, particle_regions, p_sides,
                                        cfg.skin_neighbours)
    if lm.face is not None:                    # blinks move the lids and the eye opening, nothing else
        skin_index, skin_weight = rig_eyelids(lm.face, K, g, g_regions, is_front, is_back, particles,
                                              particle_regions, names, skin_index, skin_weight, sheet_eye)
    skin_index, skin_weight, bones = limb_skinning(all_px + 0.5, g.means, g_regions, lm.pose, particles, names,
                                                   skin_index, skin_weight, torso_only)   # arms and legs on bones
    away_dc = _away_colour(g, is_front, all_px, fine, share, clean, cfg.shell.stride)
    meta = {"photo": Path(photo).name, "photo_size": list(info["original_size"]), "downscaled": downscaled, "crop": box,
            "notes": notes + lm.notes, "fit": fit, "fov_y_deg": cfg.fov_y_deg, "z0": cfg.shell.z0,
            "body_template": body_meta}
    return Avatar(g, g_regions, particles, particle_regions, names, skin_index, skin_weight,
                  PhotoCamera(K, torch.eye(4), W, H), meta, normals, bones=bones,
                  away_dc=away_dc).validate()


def front_view_metrics(avatar: Avatar, image: Tensor, person: Tensor) -> dict:
    """The front re-render through the photo camera, and its PSNR (dB) inside the person mask."""
    cam = avatar.camera
    img, alpha = render_gaussians(avatar.gaussians, cam.viewmat, cam.K, cam.width, cam.height, normals=avatar.normals,
                                  away=avatar.away_colour())
    return {"psnr_in_mask": psnr(img, image, person), "render": img, "alpha": alpha[..., 0]}
