"""`audioavatar` command line. Each subcommand checks its inputs first; a bad input is one line on stderr
and exit code 2, and nothing half-written is left on disk.

  audioavatar demo [-o out/demo]          render the bundled demo scene: a PNG and a turntable mp4
  audioavatar personalize PHOTO -o DIR    one photo -> an avatar bundle (engine.avatar)
  audioavatar render SCENE [--orbit]      render a 3DGS .ply or an avatar bundle (front PNG, or turntable mp4)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO_SCENE = REPO / "assets" / "demo_scene.ply"


class UserError(Exception):
    """A problem with what the user gave us: reported as one line, exit code 2."""


def _render_config(args):
    from engine.config import load_config
    from engine.render import RenderConfig

    cfg = load_config(RenderConfig, args.config) if args.config else RenderConfig()
    for key in ("frames", "fps"):
        if getattr(args, key, None) is not None:
            setattr(cfg, key, getattr(args, key))
    if args.size is not None:
        cfg.width = cfg.height = args.size
    if cfg.width < 16 or cfg.height < 16 or cfg.width % 2 or cfg.height % 2:
        raise UserError(f"--size: need an even size of at least 16 pixels, got {cfg.width}x{cfg.height}")
    if cfg.frames < 1:
        raise UserError(f"--frames: need at least 1 frame, got {cfg.frames}")
    return cfg


def _load_scene(path: Path):
    from engine.ply import read_ply
    from engine.gaussians import Gaussians

    if path.is_dir():
        plys = sorted(path.glob("*.ply"))
        if len(plys) != 1:
            raise UserError(f"{path}: expected a .ply file or a folder holding exactly one, found {len(plys)}")
        path = plys[0]
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    return Gaussians.from_ply(read_ply(path)), path


def cmd_render(args) -> dict:
    from engine.render import orbit_viewmats, render_turntable, render_view
    from engine.video import write_png

    cfg = _render_config(args)
    g, path = _load_scene(Path(args.scene))
    out = Path(args.output) if args.output else Path("out") / path.stem
    if args.orbit:
        return render_turntable(g, out / "turntable.mp4", cfg, still_png=out / "front.png")
    cfg.frames = 1
    img, _ = render_view(g, orbit_viewmats(g, cfg)[0], cfg)
    return {"png": str(write_png(out / "front.png", img))}


def cmd_demo(args) -> dict:
    args.scene, args.orbit = str(DEMO_SCENE), True
    if args.output is None:
        args.output = "out/demo"
    return cmd_render(args)


def cmd_personalize(args) -> dict:
    from engine.personalize import PersonalizeConfig, personalize

    cfg = PersonalizeConfig()
    if args.fit_steps is not None:
        cfg.fit_steps = args.fit_steps
    if not Path(args.photo).is_file():
        raise UserError(f"{args.photo}: no such file")
    avatar = personalize(args.photo, cfg)
    for note in avatar.meta.get("notes", []):
        print(f"audioavatar personalize: note: {note}", file=sys.stderr)
    out = avatar.save_pretrained(args.output)
    return {"avatar": str(out), "gaussians": len(avatar.gaussians), "particles": int(avatar.particles.shape[0]),
            "fit_steps": avatar.meta["fit"]["steps"]}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="audioavatar", description="AudioAvatar: speech-driven 3D Gaussian avatars")
    sub = ap.add_subparsers(dest="command", required=True)

    def view_opts(p):
        p.add_argument("-o", "--output", help="output folder")
        p.add_argument("--config", help="RenderConfig YAML (default: built-in, same as configs/render.yaml)")
        p.add_argument("--size", type=int, help="square image size in pixels")
        p.add_argument("--frames", type=int, help="turntable frames")
        p.add_argument("--fps", type=float, help="turntable frame rate")

    p = sub.add_parser("demo", help="render the bundled demo scene to a PNG and a turntable mp4")
    view_opts(p)
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("personalize", help="build an avatar bundle from one photo")
    p.add_argument("photo")
    p.add_argument("-o", "--output", required=True, help="avatar folder to write (replaced atomically)")
    p.add_argument("--fit-steps", type=int, help="photometric fit steps (default 300, stops early)")
    p.set_defaults(func=cmd_personalize)
    p = sub.add_parser("render", help="render a standard 3DGS .ply, or an avatar bundle (a folder holding one)")
    p.add_argument("scene")
    p.add_argument("--orbit", action="store_true", help="write a turntable mp4 instead of one front view")
    view_opts(p)
    p.set_defaults(func=cmd_render)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args.func(args)
    except (UserError, ValueError, FileNotFoundError) as e:
        print(f"audioavatar {args.command}: error: {e}", file=sys.stderr)
        return 2
    for key, value in result.items():
        if isinstance(value, str) and value:
            print(f"{key}: {Path(value).resolve()}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
