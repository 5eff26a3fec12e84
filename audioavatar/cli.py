"""`audioavatar` command line. Each subcommand checks its inputs first; a bad input is one line on stderr
and exit code 2, and nothing half-written is left on disk.

  audioavatar demo [-o out/demo]          the bundled photo -> avatar -> talking mp4 (bundled speech) + turntable
  audioavatar personalize PHOTO -o DIR    one photo -> an avatar bundle (engine.avatar.bundle)
  audioavatar animate AVATAR AUDIO -o MP4 speech -> a talking video with the audio muxed in (engine.runtime)
  audioavatar render SCENE [--orbit]      render a 3DGS .ply or an avatar bundle (front PNG, or turntable mp4)
  audioavatar export AVATAR -o OUT.ply    the avatar for web 3DGS viewers (engine/avatar/web_export.py)
  audioavatar serve AVATAR [--port P]     live websocket server + browser viewer (viewer/server.py)
  audioavatar teach PHOTO AUDIO -o MP4    a teacher's talking video of the photo (distill/teachers)
  audioavatar distill CONFIG -o RUN       teacher videos -> tracks -> fit4d -> embedding -> motion -> finetune
                                          (distill/pipeline.py; --resume continues a killed run exactly)
  audioavatar eval CLIP --audio A -o DIR  lip sync, identity, hands, fidelity, flicker of a video or an avatar
                                          (engine/evaluation/): report.json, plots, report.html
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from engine.threads import configure_threads

VERBOSE_ENV = "AUDIOAVATAR_VERBOSE"                     # engine.avatar.landmarks reads it (importing it loads torch)

REPO = Path(__file__).resolve().parent.parent
DEMO_PHOTO = REPO / "assets" / "astronaut.png"
DEMO_SPEECH = REPO / "assets" / "speech.wav"


class UserError(Exception):
    """A problem with what the user gave us: reported as one line, exit code 2."""


def _render_config(args):
    from engine.config import load_config
    from engine.render.turntable import RenderConfig

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
    from engine.render.gaussians import Gaussians
    from engine.render.ply import read_ply

    if path.is_dir() and (path / "avatar.json").is_file():
        from engine.avatar.bundle import Avatar
        avatar = Avatar.from_pretrained(path)
        return avatar.gaussians, path / "gaussians.ply", avatar.normals, avatar.away_colour()
    if path.is_dir():
        plys = sorted(path.glob("*.ply"))
        if len(plys) != 1:
            raise UserError(f"{path}: expected a .ply file or a folder holding exactly one, found {len(plys)}")
        path = plys[0]
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    return Gaussians.from_ply(read_ply(path)), path, None, None


def cmd_render(args) -> dict:
    from engine.render.turntable import orbit_viewmats, render_turntable, render_view
    from engine.render.video import write_png

    cfg = _render_config(args)
    g, path, normals, away = _load_scene(Path(args.scene))
    out = Path(args.output) if args.output else Path("out") / path.stem
    if args.orbit:
        return render_turntable(g, out / "turntable.mp4", cfg, still_png=out / "front.png", normals=normals,
                                away=away)
    cfg.frames = 1
    img, _ = render_view(g, orbit_viewmats(g, cfg)[0], cfg, normals, away)
    return {"png": str(write_png(out / "front.png", img))}


def cmd_export(args) -> dict:
    """An avatar bundle -> a .ply for web 3DGS viewers (Spark, mkkellogg's, ...): centred, y up, facing +z."""
    from engine.avatar.web_export import export_web_ply

    out = Path(args.output)
    if out.suffix.lower() != ".ply" or out.is_dir():
        raise UserError(f"-o: expected a .ply file path, got {out}")
    if not (Path(args.avatar) / "avatar.json").is_file():
        raise UserError(f"{args.avatar}: not an avatar folder (make one with `audioavatar personalize`)")
    return export_web_ply(args.avatar, out, seal_back=not args.no_seal)


def cmd_demo(args) -> dict:
    """The main job on bundled inputs: personalize the astronaut, make her say the bundled sentence, and orbit."""
    _render_config(args)                                  # check the options before any work
    out = Path(args.output or "out/demo")
    avatar_dir = out / "avatar"
    made = cmd_personalize(argparse.Namespace(photo=str(DEMO_PHOTO), output=str(avatar_dir), fit_steps=None,
                                              body_stride=None))
    talk = cmd_animate(argparse.Namespace(avatar=str(avatar_dir), audio=str(DEMO_SPEECH), output=str(out / "talking.mp4"),
                                          config=None, size=args.size, motion=None, model_dir=None, orbit=15.0))
    args.scene, args.orbit, args.output = str(avatar_dir), True, str(out)
    turn = cmd_render(args)
    return {"avatar": made["avatar"], "talking_mp4": talk["mp4"], "turntable_mp4": turn["mp4"],
            "png": turn["png"], "realtime_factor": talk["realtime_factor"]}


def cmd_animate(args) -> dict:
    import time

    from tqdm import tqdm

    from engine.audio.features import SAMPLE_RATE, load_audio
    from engine.config import load_config
    from engine.render.video import Mp4Writer
    from engine.runtime import FPS, AvatarEngine, EngineConfig

    cfg = load_config(EngineConfig, args.config) if args.config else EngineConfig()
    if args.size is not None:
        cfg.width = cfg.height = args.size
    if args.motion is not None:
        cfg.motion = args.motion
    if args.model_dir is not None:
        cfg.model_dir = args.model_dir
    cfg.__post_init__()
    if not Path(args.avatar).is_dir():
        raise UserError(f"{args.avatar}: not an avatar folder (make one with `audioavatar personalize`)")
    out = Path(args.output)
    if out.suffix.lower() != ".mp4" or out.is_dir():
        raise UserError(f"-o: expected a .mp4 file path, got {out}")
    wave = load_audio(args.audio)
    if wave.shape[0] < SAMPLE_RATE // FPS:
        raise UserError(f"{args.audio}: {1000 * wave.shape[0] / SAMPLE_RATE:.0f} ms of audio; need at least "
                        f"{1000 // FPS} ms (one frame at {FPS} fps); nothing was written")
    engine = AvatarEngine(args.avatar, cfg)
    n_frames = engine.push_audio(wave, SAMPLE_RATE) + engine.end_audio()
    t0 = time.perf_counter()
    with Mp4Writer(out, cfg.width, cfg.height, FPS, audio=args.audio) as video:    # the input's own rate/channels
        for frame in tqdm(engine.frames(), total=n_frames, desc="animating", unit="frame"):
            if args.orbit:
                engine.set_orbit(args.orbit * math.sin(2 * math.pi * frame.index / (FPS * 8)))  # 8 s sweep
            video.write(frame.image)
    wall = time.perf_counter() - t0
    return {"mp4": str(out), "frames": n_frames, "seconds": round(wave.shape[0] / SAMPLE_RATE, 2),
            "realtime_factor": round(wave.shape[0] / SAMPLE_RATE / wall, 2), "motion": cfg.motion}


def cmd_personalize(args) -> dict:
    from engine.avatar.personalize import PersonalizeConfig, personalize

    cfg = PersonalizeConfig()
    if args.fit_steps is not None:
        cfg.fit_steps = args.fit_steps
    if getattr(args, "body_stride", None) is not None:
        if not 1 <= args.body_stride <= 8:
            raise UserError(f"--body-stride: expected 1..8 pixels, got {args.body_stride}")
        cfg.shell.stride = args.body_stride
        cfg.fine_small_photos = False                     # the stride asked for, whatever the photo's size
        cfg.shell.back_stride = cfg.shell.back_fine_stride = max(cfg.shell.back_stride, 2 * args.body_stride)
    from engine.avatar.bundle import MARKER
    from engine.pretrained import check_replaceable

    if Path(args.photo).is_dir():
        raise UserError(f"{args.photo}: is a folder, not a photo (give an image file: jpg, png, ...)")
    if not Path(args.photo).is_file():
        raise UserError(f"{args.photo}: no such file")
    check_replaceable(args.output, MARKER)               # before the work: never replace what we did not write
    avatar = personalize(args.photo, cfg)
    for note in avatar.meta.get("notes", []):
        print(f"audioavatar personalize: note: {note}", file=sys.stderr)
    out = avatar.save_pretrained(args.output)
    return {"avatar": str(out), "gaussians": len(avatar.gaussians), "particles": int(avatar.particles.shape[0]),
            "fit_steps": avatar.meta["fit"]["steps"]}


def cmd_serve(args) -> dict:
    import asyncio

    from viewer.server import AvatarServer, ServerConfig

    if not Path(args.avatar).is_dir():
        raise UserError(f"{args.avatar}: not an avatar folder (make one with `audioavatar personalize`)")
    cfg = ServerConfig(host=args.host, port=args.port, size=args.size, token=args.token or "",
                       allow_origins=list(args.allow_origin or []), max_sessions=args.max_sessions,
                       motion=args.motion, model_dir=args.model_dir or "", render=args.render,
                       motion_linger_s=args.motion_linger, motion_context=args.motion_context)
    if cfg.size < 16 or cfg.size % 2:
        raise UserError(f"--size: need an even size of at least 16 pixels, got {cfg.size}")
    if args.workers < 1:
        raise UserError(f"--workers: expected >= 1, got {args.workers}")
    if args.workers > 1:
        from viewer.workers import run_workers, worker_threads
        cfg.check()
        serve = [args.avatar, "--host", cfg.host, "--size", str(cfg.size), "--max-sessions", str(cfg.max_sessions),
                 "--motion", cfg.motion, "--render", cfg.render, "--motion-linger", str(cfg.motion_linger_s),
                 "--motion-context", str(cfg.motion_context),
                 *(["--token", cfg.token] if cfg.token else []),
                 *(["--model-dir", cfg.model_dir] if cfg.model_dir else []),
                 *[a for origin in cfg.allow_origins for a in ("--allow-origin", origin)]]
        threads = getattr(args, "threads", None) or worker_threads(args.workers)
        code = run_workers(serve, args.workers, cfg.port, threads)
        if code:
            raise UserError(f"--workers: a worker stopped with exit code {code}")
        return {}
    server = AvatarServer(args.avatar, cfg)
    shown = f"[{cfg.host}]" if ":" in cfg.host else cfg.host

    def listening(port: int) -> None:
        print(f"warming up at http://{shown}:{port}/ (the page says so until sessions are accepted)", file=sys.stderr,
              flush=True)

    def ready(port: int) -> None:
        print(f"serving http://{shown}:{port}/", flush=True)
    try:
        asyncio.run(server.run(ready, listening=listening))
    except KeyboardInterrupt:
        pass
    return {}


def cmd_teach(args) -> dict:
    import time

    import numpy as np
    from PIL import Image

    from distill.teachers import make_teacher
    from engine.audio.features import SAMPLE_RATE, load_audio
    from engine.render.video import Mp4Writer

    for path, what in ((args.photo, "photo"), (args.audio, "audio")):
        if not Path(path).is_file():
            raise UserError(f"{path}: no such {what} file")
    out = Path(args.output)
    if out.suffix.lower() != ".mp4":
        raise UserError(f"-o: expected a .mp4 path, got {out}")
    options = {}
    if args.config:
        import yaml
        try:
            options = yaml.safe_load(Path(args.config).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise UserError(f"--config {args.config}: {e}") from e
    teacher = make_teacher(args.teacher, **options)
    try:
        image = np.asarray(Image.open(args.photo).convert("RGB"))
    except Exception as e:  # noqa: BLE001 - PIL raises many types for a bad file
        raise UserError(f"{args.photo}: not an image ({e})") from e
    wave = load_audio(args.audio)
    t0 = time.perf_counter()
    frames = teacher.generate(image, wave, seed=args.seed)
    wall = time.perf_counter() - t0
    h, w = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2
    with Mp4Writer(out, w, h, 25, audio=(wave.numpy(), SAMPLE_RATE)) as video:
        for frame in frames:
            video.write(frame[:h, :w])
    return {"mp4": str(out), "teacher": args.teacher, "frames": int(frames.shape[0]), "generate_s": round(wall, 1)}


def cmd_distill(args) -> dict:
    from distill.config import load_distill_config
    from distill.pipeline import distill

    cfg = load_distill_config(args.config, args.set or [])
    model_dir = distill(cfg, args.output, resume=args.resume)
    run = Path(args.output)
    result = {"model_dir": str(model_dir), "run": str(run)}
    if (run / "eval.json").is_file():
        result["eval"] = str(run / "eval.json")
    return result


def cmd_eval(args) -> dict:
    import numpy as np
    from PIL import Image

    from engine.audio.features import load_audio
    from engine.config import load_config
    from engine.evaluation.clip import load_clip, read_video
    from engine.evaluation.config import EvalConfig
    from engine.evaluation.report import write_report
    from engine.evaluation.suite import evaluate, summary
    from engine.pretrained import check_replaceable

    cfg = load_config(EvalConfig, args.config) if args.config else EvalConfig()
    for key in ("size", "motion"):
        if getattr(args, key) is not None:
            setattr(cfg, key, getattr(args, key))
    cfg.__post_init__()
    clip_path = Path(args.clip)
    if not clip_path.exists():
        raise UserError(f"{clip_path}: no such video file or avatar folder")
    out = check_replaceable(args.output, "report.json")          # before the work: never replace a stranger's folder
    wave = load_audio(args.audio)
    reference = None
    if args.reference:
        try:
            reference = np.asarray(Image.open(args.reference).convert("RGB"))
        except (OSError, ValueError) as e:
            raise UserError(f"--reference: {args.reference}: not a readable image ({e})") from e
    teacher = read_video(args.teacher).frames if args.teacher else None
    clip = load_clip(clip_path, wave, cfg.size, cfg.motion, args.model_dir or "")
    result = evaluate(clip, wave, reference, teacher, cfg)
    for name, part in result.items():                   # what did not run is said here, not only in report.json
        if isinstance(part, dict) and ("skipped" in part or "note" in part):
            print(f"audioavatar eval: {name}: {part.get('skipped') or part.get('note')}", file=sys.stderr)
    folder = write_report(result, clip.frames, out, cfg.contact_sheet_frames)
    return {"report": str(folder / "report.html"), **{k: (round(v, 4) if isinstance(v, float) else v)
                                                     for k, v in summary(result).items()}}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="audioavatar", description="AudioAvatar: speech-driven 3D Gaussian avatars")
    common = argparse.ArgumentParser(add_help=False)     # accepted by every command, before or after its name
    common.add_argument("--threads", type=int, metavar="N", default=argparse.SUPPRESS,
                        help="compute threads (default: automatic, or $AUDIOAVATAR_THREADS; 1 is the most polite "
                             "beside other busy programs; engine/threads.py)")
    common.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="let third-party libraries (mediapipe, TFLite) print their own log lines")
    for option in common._actions:
        ap._add_action(option)
    sub = ap.add_subparsers(dest="command", required=True)

    def command(name: str, **kwargs) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], **kwargs)

    def view_opts(p):
        p.add_argument("-o", "--output", help="output folder")
        p.add_argument("--config", help="RenderConfig YAML (default: built-in, same as configs/render.yaml)")
        p.add_argument("--size", type=int, help="square image size in pixels")
        p.add_argument("--frames", type=int, help="turntable frames")
        p.add_argument("--fps", type=float, help="turntable frame rate")

    p = command("demo", help="bundled photo -> avatar -> talking mp4 with the bundled speech, + turntable")
    view_opts(p)
    p.set_defaults(func=cmd_demo)
    p = command("animate", help="drive an avatar with speech: a talking mp4 with the audio muxed in")
    p.add_argument("avatar", help="avatar folder (from `audioavatar personalize`)")
    p.add_argument("audio", help="speech: wav, flac, ogg or mp3, any rate, mono or stereo")
    p.add_argument("-o", "--output", required=True, help="mp4 to write (appears only when complete)")
    p.add_argument("--config", help="EngineConfig YAML (default: built-in, same as configs/engine.yaml)")
    p.add_argument("--size", type=int, help="square frame size in pixels (default 512)")
    p.add_argument("--motion", choices=["procedural", "learned"],
                   help="motion source (default: learned, the bundled distilled models)")
    p.add_argument("--model-dir", help="learned motion: folder with audio_encoder/, motion/, refiner/ "
                                       "(default: the bundled models/default)")
    p.add_argument("--orbit", type=float, default=0.0, help="sway the camera +-DEG around the avatar while it talks")
    p.set_defaults(func=cmd_animate)
    p = command("serve", help="live: websocket server + browser viewer for an avatar (docs/protocol.md)")
    p.add_argument("avatar", help="avatar folder (from `audioavatar personalize`)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1; others need --token)")
    p.add_argument("--port", type=int, default=8765, help="port (0 picks a free one; the URL is printed)")
    p.add_argument("--size", type=int, default=512, help="square frame size in pixels")
    p.add_argument("--token", help="shared secret the client sends in hello (required off loopback)")
    p.add_argument("--allow-origin", action="append", help="extra allowed browser Origin (repeatable)")
    p.add_argument("--max-sessions", type=int, default=4)
    p.add_argument("--motion", choices=["procedural", "learned"], default="learned",
                   help="motion source (default: learned, the bundled distilled models)")
    p.add_argument("--model-dir", help="learned motion: folder with audio_encoder/, motion/, refiner/ "
                                       "(default: the bundled models/default)")
    p.add_argument("--render", choices=["server", "client"], default="server",
                   help="where frames are drawn for a page that does not say (hello's render field): server = "
                        "JPEG frames; client = the page downloads the avatar once and splats it with WebGL2, the "
                        "server sends motion and audio only (docs/protocol.md, docs/scaling.md)")
    p.add_argument("--motion-linger", type=float, default=0.02, metavar="S",
                   help="learned motion: seconds a session needing motion waits for other sessions' audio, so the "
                        "motion models run once for all of them (default 0.02; 0: never wait)")
    p.add_argument("--motion-context", type=int, default=4, metavar="F",
                   help="learned motion: known frames in each DiT window, 1..8 (0: the model's 8; default 4, which "
                        "costs 16%% less per frame than 8 with the same lip figures: docs/scaling.md)")
    p.add_argument("--workers", type=int, default=1, help="server processes on ports P, P+1, ... sharing the cores, "
                   "for a balancer in front (viewer/workers.py, docs/scaling.md)")
    p.set_defaults(func=cmd_serve)
    p = command("teach", help="a teacher's talking video of a photo (the distillation's training data)")
    p.add_argument("photo")
    p.add_argument("audio")
    p.add_argument("-o", "--output", required=True, help="mp4 to write (appears only when complete)")
    p.add_argument("--teacher", default="procedural", help="teacher name (procedural, echomimic_v2)")
    p.add_argument("--config", help="teacher options YAML (configs/teachers/<name>.yaml)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_teach)
    p = command("distill", help="distil the motion models from a teacher (configs/distill/*.yaml)")
    p.add_argument("config", help="distillation config YAML (configs/distill/default.yaml, tiny.yaml)")
    p.add_argument("-o", "--output", required=True, help="run folder (checkpoints, logs, samples, model/)")
    p.add_argument("--resume", action="store_true", help="continue the run in -o from its last checkpoint")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override one config key (repeatable)")
    p.set_defaults(func=cmd_distill)
    p = command("eval", help="evaluate a talking video or avatar: lip sync, identity, hands, fidelity, flicker")
    p.add_argument("clip", help="a video file, or an avatar folder (rendered here for --audio)")
    p.add_argument("--audio", required=True, help="the speech the clip says (wav, flac, ogg, mp3)")
    p.add_argument("--reference", help="photo for identity (dlib face descriptor cosine)")
    p.add_argument("--teacher", help="teacher video for PSNR / SSIM / MS-SSIM (paired by frame)")
    p.add_argument("-o", "--output", required=True, help="report folder (report.json, PNGs, report.html)")
    p.add_argument("--config", help="EvalConfig YAML (default: built-in, same as configs/eval.yaml)")
    p.add_argument("--size", type=int, help="avatar folder: render size in pixels (default 512)")
    p.add_argument("--motion", choices=["procedural", "learned"], help="avatar folder: motion source")
    p.add_argument("--model-dir", help="avatar folder, learned motion: model folder (default models/default)")
    p.set_defaults(func=cmd_eval)

    p = command("personalize", help="build an avatar bundle from one photo")
    p.add_argument("photo")
    p.add_argument("-o", "--output", required=True, help="avatar folder to write (replaced atomically)")
    p.add_argument("--fit-steps", type=int, help="photometric fit steps (default 300, stops early)")
    p.add_argument("--body-stride", type=int, help="body sampling step in pixels (default 2, and 1 on a photo "
                                                   "under 512 px; 3 renders ~20%% faster for serving several "
                                                   "sessions, at lower fidelity)")
    p.set_defaults(func=cmd_personalize)
    p = command("export", help="an avatar as a .ply for web 3DGS viewers (centred, y up, facing +z)")
    p.add_argument("avatar", help="avatar folder (from `audioavatar personalize`)")
    p.add_argument("-o", "--output", required=True, help=".ply to write (appears only when complete)")
    p.add_argument("--no-seal", action="store_true", help="leave the back shell as it is (by default the Gaussians "
                                                          "the photo view culls are made opaque, as web viewers "
                                                          "do not cull)")
    p.set_defaults(func=cmd_export)
    p = command("render", help="render a standard 3DGS .ply, or an avatar bundle (a folder holding one)")
    p.add_argument("scene")
    p.add_argument("--orbit", action="store_true", help="write a turntable mp4 instead of one front view")
    view_opts(p)
    p.set_defaults(func=cmd_render)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "verbose", False):
        os.environ[VERBOSE_ENV] = "1"
    try:
        configure_threads(getattr(args, "threads", None))   # first: the wait policy must precede `import torch`
        result = args.func(args)
    except (UserError, ValueError, FileNotFoundError) as e:
        print(f"audioavatar {args.command}: error: {e}", file=sys.stderr)
        return 2
    for key, value in result.items():
        if isinstance(value, str) and value and Path(value).exists():
            print(f"{key}: {Path(value).resolve()}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
