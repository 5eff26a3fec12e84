"""An avatar's Gaussians as a .ply for third-party web 3DGS viewers (Spark, mkkellogg's GaussianSplats3D,
anything built on three.js): `audioavatar export AVATAR -o OUT.ply`.

The bundle's gaussians.ply stays in our world frame, which is the photo camera's (engine.render.camera, OpenCV
axes: x right, y down, z forward; the person stands about z0 = 2.5 in front of the camera and faces it,
i.e. faces -z). three.js and the viewers on it use y up and look down -z, so that file opens upside down,
seen from behind, and away from the origin where the viewers' cameras point (mkkellogg's viewer also reveals
a scene outwards from the origin, so an avatar 2.5 away stays invisible for its first hundred-odd frames).
The export:

  * centres the avatar: the middle of the box that holds its visible Gaussians goes to the origin;
  * turns it 180 degrees about x, (x, y, z) -> (x, -y, -z): head up (+y), face towards +z, so a camera on the
    +z axis looking at the origin (three.js's `camera.position.z = d`) sees the face, the person's right hand
    on the image's left, as in the photo. A rotation (not a mirror), applied to every part of a Gaussian:
    means, orientations (q' = q_x180 * q) and view-dependent colour (SH coefficients of degree >= 1 change
    sign by the parity of their y and z powers). Scales, opacities and the DC colour do not change;
  * seals the back shell (`seal_hidden_side`): third-party viewers do not cull by normal as our renderer
    does, and through the sparse back shell the face would show as a ghost on the back of the head.

The header's comment lines name the transform: ``comment audioavatar web: p_web = diag(1,-1,-1) @ (p_bundle -
centre); centre X Y Z``. Same standard 3DGS layout as the bundle (engine.render.ply): log-scales, opacity logits,
wxyz quaternions, f_dc / f_rest.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor

from engine.avatar.bundle import Avatar
from engine.render.camera import camera_centre
from engine.render.ply import GaussianPly, write_ply
from engine.render.splat import facing

# p_web = WEB_FROM_WORLD @ (p_world - centre): 180 degrees about x.
WEB_FROM_WORLD = torch.diag(torch.tensor([1.0, -1.0, -1.0]))
Q_WEB_FROM_WORLD = torch.tensor([0.0, 1.0, 0.0, 0.0])   # wxyz of that rotation
SEAL_OPACITY = 0.995   # seal_hidden_side: least opacity of the back shell ...
SEAL_WIDEN = 1.3       # ... and how much wider its Gaussians get in their own plane

# Sign of each real SH basis function (engine order, cuda_ext.reference.sh_bases, degrees 0..3) under
# (x, y, z) -> (x, -y, -z): (-1) ** (power of y + power of z), the same for every term of one function.
_SH_SIGNS = torch.tensor([
    1.0,                                  # 1
    -1.0, -1.0, 1.0,                      # y, z, x
    -1.0, 1.0, 1.0, -1.0, 1.0,            # xy, yz, 2zz-xx-yy, xz, xx-yy
    -1.0, 1.0, -1.0, -1.0, 1.0, -1.0, 1.0,  # y(3xx-yy), xyz, y(4zz-xx-yy), z(2zz-3xx-3yy), x(4zz-xx-yy),
])                                          # z(xx-yy), x(xx-3yy)


def visible_centre(gs: GaussianPly, min_opacity: float = 0.2, tail: float = 0.005) -> Tensor:
    """The middle [3] of the box holding the Gaussians with opacity > min_opacity, per axis between the
    `tail` and 1 - `tail` quantiles (a few stray Gaussians do not move it). All Gaussians when few pass."""
    if len(gs) == 0:
        return torch.zeros(3)
    keep = gs.opacities() > min_opacity
    pts = gs.means[keep] if int(keep.sum()) >= 10 else gs.means
    lo, hi = torch.quantile(pts, tail, dim=0), torch.quantile(pts, 1 - tail, dim=0)
    return (lo + hi) / 2


def rotate_x180(gs: GaussianPly, centre: Tensor) -> GaussianPly:
    """The Gaussians moved by -centre, then turned 180 degrees about x (see the module docstring). The
    covariance R S S^T R^T becomes F R S S^T R^T F with F = diag(1, -1, -1); SH up to degree 3."""
    k = gs.sh.shape[1]
    if k > len(_SH_SIGNS):
        raise ValueError(f"SH degree {gs.sh_degree}: the web export rotates SH up to degree 3")
    w, x, y, z = gs.quats.unbind(-1)
    quats = torch.stack([-x, w, -z, y], -1)            # Q_WEB_FROM_WORLD * q (Hamilton product, exact)
    means = (gs.means - centre.to(gs.means)) * torch.diagonal(WEB_FROM_WORLD).to(gs.means)
    sh = gs.sh * _SH_SIGNS[:k, None].to(gs.sh)
    return GaussianPly(means.contiguous(), quats.contiguous(), gs.log_scales.clone(), gs.opacity_logits.clone(),
                       sh.contiguous(), {name: t.clone() for name, t in gs.extra.items()})


def seal_hidden_side(gs: GaussianPly, hidden: Tensor, min_opacity: float = SEAL_OPACITY,
                     widen: float = SEAL_WIDEN) -> GaussianPly:
    """Make the `hidden` [N] bool Gaussians (those the photo view culls: the back shell) an opaque surface of
    their own. Our renderer culls by normal, so from behind it never shows the front shell through the back's
    gaps; viewers that do not cull do: through the sparse back shell (about 3% mean transmittance under our
    rasteriser, more in Spark, which adds no 0.3 px screen-space blur) the face shows as a ghost on the back of
    the head. Their opacity is raised to at least `min_opacity` and their two larger axes are widened by
    `widen` (the thin axis keeps its size), closing the gaps. From the front they stay behind the front shell."""
    out = GaussianPly(gs.means.clone(), gs.quats.clone(), gs.log_scales.clone(), gs.opacity_logits.clone(),
                      gs.sh.clone(), {name: t.clone() for name, t in gs.extra.items()})
    if not bool(hidden.any()):
        return out
    logit = math.log(min_opacity / (1 - min_opacity))
    out.opacity_logits[hidden] = out.opacity_logits[hidden].clamp(min=logit)
    ls = out.log_scales[hidden]
    thin = ls.argmin(dim=-1, keepdim=True)
    grow = torch.full_like(ls, math.log(widen)).scatter(-1, thin, 0.0)
    out.log_scales[hidden] = ls + grow
    return out


def web_ply(gs: GaussianPly, centre: Tensor | None = None, hidden: Tensor | None = None
            ) -> tuple[GaussianPly, Tensor]:
    """(the Gaussians in the web convention, the centre [3] used, in the bundle's world frame). With hidden
    [N] bool (the Gaussians the photo view culls), those are sealed first (`seal_hidden_side`)."""
    centre = visible_centre(gs) if centre is None else torch.as_tensor(centre, dtype=torch.float32)
    if hidden is not None:
        gs = seal_hidden_side(gs, hidden)
    return rotate_x180(gs, centre), centre


def export_web_ply(avatar, out: str | Path, seal_back: bool = True) -> dict:
    """Write `avatar` (an engine.avatar.bundle.Avatar, or the path of a bundle folder) at `out` as a .ply for web 3DGS
    viewers (atomically; see the module docstring). seal_back: seal the Gaussians the photo view culls (needs
    the avatar's normals; without them nothing is sealed). Returns a JSON-able summary: the output path, the
    number of Gaussians, how many were sealed, the centre that went to the origin (bundle frame), a radius
    holding 98% of the visible Gaussians (to frame a camera: distance = radius / sin(fov_y / 2)), and the
    photo camera in the web frame (position; look-at: the point of its optical axis nearest the origin; up;
    vertical field of view; image size)."""
    if not isinstance(avatar, Avatar):
        avatar = Avatar.from_pretrained(avatar)
    src = avatar.gaussians.to_ply()
    cam = avatar.camera
    hidden = None
    if seal_back and avatar.normals is not None:
        hidden = ~facing(avatar.normals, avatar.gaussians.means, cam.viewmat)
    gs, centre = web_ply(src, hidden=hidden)
    c = [round(float(v), 6) for v in centre]
    write_ply(out, gs, comments=[
        "audioavatar web: y up, the avatar faces +z, centred at the origin (three.js convention)",
        "audioavatar web: p_web = diag(1,-1,-1) @ (p_bundle - centre); centre " + " ".join(map(str, c)),
    ])
    keep = gs.opacities() > 0.2
    pts = gs.means[keep] if int(keep.sum()) >= 10 else gs.means
    radius = float(pts.norm(dim=-1).quantile(0.98)) if len(pts) else 0.0
    R = cam.viewmat[:3, :3].float()
    eye = WEB_FROM_WORLD @ (camera_centre(cam.viewmat.float()) - centre)   # the photo camera's centre, web frame
    forward, up = WEB_FROM_WORLD @ R[2], WEB_FROM_WORLD @ -R[1]  # its +z and its up (-y in OpenCV axes)
    fov = math.degrees(2 * math.atan(0.5 * cam.height / float(cam.K[1, 1])))
    r6 = lambda v: [round(float(x), 6) for x in v]  # noqa: E731
    return {"ply": str(out), "gaussians": len(gs), "sealed": 0 if hidden is None else int(hidden.sum()),
            "centre": c, "radius": round(radius, 6),
            "photo_camera": {"position": r6(eye), "look_at": r6(eye - float(eye @ forward) * forward), "up": r6(up),
                             "fov_y_deg": round(fov, 4), "width": cam.width, "height": cam.height}}
