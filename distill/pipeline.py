"""`audioavatar distill CONFIG -o RUN`: the whole distillation, as numbered steps over one run folder.

    1. run folder     RUN/config.yaml (the resolved config; --resume checks it is unchanged)
    2. avatar         the photo personalised (engine/avatar/personalize), or data.avatar   -> RUN/avatar
    3. teacher data   teacher videos of the identity for the speech corpus, cached   -> RUN/teacher/<clip>-<key>/
    4. tracks         2-D tracks of the avatar's particles in each training video    -> RUN/tracks/<clip>.pt
    5. fit4d          pseudo-GT canonical motion per clip (lift; track gains calibrated photometrically,
                      stage "calibrate"), then the decoder                           -> RUN/fit4d/<clip>.pt
    6. embedding      audio encoder + E_X, contrastive (skipped when disabled)
    7. motion         MotionDiT + refiner on (features, pseudo-GT motion)
    8. finetune       end to end through the renderer against the teacher
    9. export         RUN/model/{audio_encoder,motion,refiner,embedding} (engine's model_dir layout) and
                      RUN/avatar/decoder; RUN/eval.json + RUN/samples/heldout.mp4 (held-out clips)
Each training stage checkpoints every run.checkpoint_every steps (distill/train.py); its models go to
RUN/models/<stage>/ when it finishes, so --resume picks up inside the running stage and skips finished ones.
Under torchrun every rank runs the same steps on its own share of each batch (DDP); only rank 0 writes.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
import yaml

from distill import data as teacher_data
from distill.checkpoint import batch_indices
from distill.config import REPO, DistillConfig
from distill.dataset import ClipTensors, Windows
from distill.dist import DistContext, barrier, init_distributed, is_main
from distill.embedding import AudioMotionEmbedding
from distill.fit4d import (DecoderFit, GainFit, TrackGain, TrackGainConfig, calibrate_tracks, lift_displacement,
                           lift_tracks, track_displacement)
from distill.objectives import EmbeddingObjective, FinetuneObjective, MotionObjective
from distill.train import Stage, is_done, run_stage, step_generator
from distill.view import TeacherView, crop_frames
from engine.audio.encoder import AudioEncoder
from engine.audio.features import audio_features
from engine.avatar.bundle import Avatar
from engine.deform.decoder import DecoderConfig, GaussianDecoder
from engine.motion.dit import MotionDiT
from engine.motion.refiner import FaceHandRefiner
from engine.pretrained import atomic_file_write

MODEL_DIRS = {"encoder": "audio_encoder", "dit": "motion", "refiner": "refiner", "embedding": "embedding"}
VARIANTS = ("learned", "learned_no_refiner", "procedural")


def _path(p: str) -> Path:
    q = Path(p).expanduser()
    return q if q.is_absolute() else REPO / q


class Run:
    """The state of one distillation run: its folder, config, models and data."""

    def __init__(self, cfg: DistillConfig, run_dir: Path, resume: bool, progress: bool, ctx: DistContext):
        self.cfg, self.dir, self.resume, self.progress, self.ctx = cfg, Path(run_dir), resume, progress, ctx

    # ---------------------------------------------------------------------------------------------- 1. folder
    def prepare_folder(self) -> None:
        saved = self.dir / "config.yaml"
        mine = yaml.safe_dump(self.cfg.to_dict(), sort_keys=True)
        if saved.is_file():
            if not self.resume:
                raise ValueError(f"-o {self.dir}: already holds a run; pass --resume to continue it, or choose "
                                 f"another folder (nothing there was changed)")
            if saved.read_text() != mine:
                raise ValueError(f"--resume: {saved} differs from this config; resume with the same config "
                                 f"(or start a new run folder)")
        elif self.dir.exists() and any(self.dir.iterdir()) and not self.resume:
            raise ValueError(f"-o {self.dir}: exists and is not empty; choose a new folder")
        barrier(self.ctx)                    # every rank has checked the folder before rank 0 writes to it
        if is_main(self.ctx):
            atomic_file_write(saved, lambda f: f.write(mine.encode()))
        barrier(self.ctx)

    # ---------------------------------------------------------------------------------------------- 2. avatar
    def avatar(self) -> Avatar:
        d = self.cfg.data
        if d.avatar:
            return Avatar.from_pretrained(_path(d.avatar))
        out = self.dir / "avatar"
        if is_main(self.ctx) and not (out / "avatar.json").is_file():
            from engine.avatar.personalize import personalize
            personalize(_path(d.photo), progress=self.progress).save_pretrained(out)
        barrier(self.ctx)
        return Avatar.from_pretrained(out)

    # ---------------------------------------------------------------------------------------------- 3. teacher
    def teacher(self):
        from distill.teachers import make_teacher
        d = self.cfg.data
        options = yaml.safe_load(d.teacher_options) if d.teacher_options else {}
        if not isinstance(options, dict):
            raise ValueError(f"data.teacher_options: expected a YAML mapping, got {d.teacher_options!r}")
        if d.teacher == "procedural":
            options.setdefault("max_side", d.frame_size)
        return make_teacher(d.teacher, **options)

    def teacher_clips(self, teacher) -> tuple[list, list]:
        d = self.cfg.data
        extra = [p.strip() for p in d.extra_audio.split(",") if p.strip()]
        corpus = teacher_data.speech_corpus(_path(d.corpus), extra=[_path(p) for p in extra])
        train = [c for c in corpus if c.split == "train"]
        heldout = [c for c in corpus if c.split == "heldout"]
        if d.max_clips:
            train = train[:: max(1, len(train) // d.max_clips)][: d.max_clips]
        if d.heldout_clips:
            heldout = heldout[:: max(1, len(heldout) // d.heldout_clips)][: d.heldout_clips]
        photo = np.asarray(_load_photo(_path(d.photo)))
        out = []
        if is_main(self.ctx):
            out = teacher_data.teacher_clips(teacher, photo, train + heldout, self.dir / "teacher",
                                             seed=self.cfg.run.seed, progress=self.progress)
        barrier(self.ctx)
        if not is_main(self.ctx):               # every entry is cached now: this only reads them
            out = teacher_data.teacher_clips(teacher, photo, train + heldout, self.dir / "teacher",
                                             seed=self.cfg.run.seed, progress=False)
        return out[:len(train)], out[len(train):]

    # ---------------------------------------------------------------------------------------------- 4-5. tracks, lift
    def clip_tensors(self, view: TeacherView, clip) -> ClipTensors:
        from distill.tracks import track
        d = self.cfg.data
        frames = clip.frames()
        audio = clip.audio()
        T = frames.shape[0]
        if d.max_seconds:
            T = min(T, int(d.max_seconds * 25))
            frames, audio = frames[:T], audio[:T * 640]
        path = self.dir / "tracks" / f"{clip.id}.pt"
        if path.is_file():
            tr = torch.load(path, weights_only=True)
        else:
            names = self.avatar_names
            t = track(clip.reference(), np.asarray(frames), view.particle_pixels(), names, self.cfg.tracks)
            tr = {"points": t.points, "valid": t.valid}
            if is_main(self.ctx):
                _atomic_torch_save(tr, path)
        motion, mask = lift_tracks(view, tr["points"], tr["valid"], self.cfg.fit4d.min_valid)   # uncalibrated
        mel, rms = audio_features(audio)
        return ClipTensors(clip.id, mel[:T], rms[:T], motion[:T], mask, tr["points"][:T], tr["valid"][:T], frames,
                           audio[:T * 640])

    # ---------------------------------------------------------------------------------------------- models
    def models(self, avatar: Avatar, unit: float) -> dict:
        c = self.cfg
        torch.manual_seed(c.run.seed)
        return {"encoder": AudioEncoder(c.audio_encoder), "dit": MotionDiT(c.motion_model),
                "refiner": FaceHandRefiner(c.refiner_model), "embedding": AudioMotionEmbedding(c.embedding_model),
                "decoder": GaussianDecoder(DecoderConfig(n_particles=avatar.particles.shape[0],
                                                         input_scale=1.0 / unit))}

    def save_models(self, models: dict, stage: str) -> None:
        if is_main(self.ctx):
            root = self.dir / "models" / stage
            for name, m in models.items():
                m.save_pretrained(root / name)
        barrier(self.ctx)

    def calibrate(self, view: TeacherView, clips: list[ClipTensors], decoder: GaussianDecoder,
                  person: torch.Tensor) -> torch.Tensor:
        """fit4d step 2 (distill/fit4d.py): per-particle track gains [K, 2], fitted photometrically on the face
        box with the decoder at rest; then every clip's tracks and pseudo-GT motion are calibrated in place and
        the pseudo-GT is written to RUN/fit4d/<clip>.pt."""
        f = self.cfg.fit4d
        gain = TrackGain(TrackGainConfig(n_particles=view.slots.numel(), low=f.gain_low, high=f.gain_high))
        lifted = [track_displacement(view, c.tracks, c.valid, f.min_valid) for c in clips]   # ([T, K, 2] px, [K])
        if f.gain_steps:
            crop = view.face_box()
            mask = crop_frames(person[None, :, :, None], crop)[0, ..., 0]
            index = [(c, t) for c, clip in enumerate(clips) for t in range(clip.T)]

            def batch_fn(step, rank, world):
                b = _batches(len(index), f.batch, self.cfg.run.seed + 5)(step, rank, world)
                pick = [index[i] for i in b["index"]]
                target = torch.stack([torch.from_numpy(np.array(clips[c].frames[t])) for c, t in pick])
                return {"displacement": torch.stack([lifted[c][0][t] for c, t in pick]),
                        "target": crop_frames(target, crop).float() / 255,
                        "mask": mask[None].expand(len(pick), -1, -1), **b}
            decoder.requires_grad_(False)             # at rest (untrained): ΔG = 0
            self.train(Stage("calibrate", GainFit(view, decoder, gain, f, crop),
                             {"gain": torch.optim.Adam(gain.parameters(), f.gain_lr)}, f.gain_steps, batch_fn),
                       {"gain": gain})
            decoder.requires_grad_(True)
        g = gain().detach()
        for clip, (shift, keep) in zip(clips, lifted):
            clip.motion, clip.slot_mask = lift_displacement(view, shift * g, keep)
            clip.tracks = calibrate_tracks(view, clip.tracks, g)
            path = self.dir / "fit4d" / f"{clip.id}.pt"
            if is_main(self.ctx) and not path.is_file():
                _atomic_torch_save({"motion": clip.motion, "slot_mask": clip.slot_mask, "gain": g}, path)
        return g

    def load_models(self, models: dict, stage: str) -> None:
        root = self.dir / "models" / stage
        for name, m in models.items():
            m.load_state_dict(type(m).from_pretrained(root / name).state_dict())

    def train(self, stage: Stage, models: dict) -> None:
        """Run a stage unless it finished before (then load what it produced)."""
        if is_done(self.dir, stage.name) and (self.dir / "models" / stage.name).is_dir():
            self.load_models(models, stage.name)
            return
        r = self.cfg.run
        run_stage(stage, self.dir, self.ctx, checkpoint_every=r.checkpoint_every, log_every=r.log_every,
                  sample_every=r.sample_every, resume=self.resume, progress=self.progress)
        self.save_models(models, stage.name)


def _load_photo(path: Path) -> np.ndarray:
    """The photo as personalize reads it -> [H, W, 3] uint8."""
    from engine.avatar.photo import load_photo
    img, _ = load_photo(path)
    return (img * 255 + 0.5).to(torch.uint8).numpy()


def _atomic_torch_save(obj, path: Path) -> None:
    atomic_file_write(path, lambda f: torch.save(obj, f))


def _batches(n: int, batch: int, seed: int):
    def fn(step: int, rank: int, world: int) -> dict:
        return {"index": batch_indices(n, batch, step, seed, rank, world),
                "generator": step_generator(seed, step, rank)}
    return fn


def distill(cfg: DistillConfig, run_dir: str | Path, resume: bool = False, progress: bool = True,
            eval_variants: tuple[str, ...] = VARIANTS) -> Path:
    """Run (or resume) a whole distillation; returns RUN/model. eval_variants: what RUN/eval.json scores."""
    ctx = init_distributed()
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    run = Run(cfg, Path(run_dir), resume, progress, ctx)
    # 1-2. folder, avatar
    run.prepare_folder()
    avatar = run.avatar()
    run.avatar_names = avatar.particle_names
    # 3. teacher videos (train + held-out)
    teacher = run.teacher()
    train_clips, heldout_clips = run.teacher_clips(teacher)
    if not train_clips:
        raise ValueError("data: no training clips (corpus train split empty and no extra_audio)")
    first = train_clips[0]
    size = first.frames().shape[1:3]
    view = TeacherView(avatar, size)       # white background, as the avatar was fitted and the engine renders
    person = _person_mask(first.reference())         # [H, W]: where the photometric losses and the metrics count
    # 4-5. tracks and pseudo-GT motion
    clips = [run.clip_tensors(view, c) for c in _progress(train_clips, progress and is_main(ctx), "tracks + fit4d")]
    models = run.models(avatar, view.unit)
    run.calibrate(view, clips, models["decoder"], person)
    crop = view.face_box() if cfg.fit4d.region == "face" else None
    mask = crop_frames(person[None, :, :, None], crop)[0, ..., 0]
    frames_index = [(c, t) for c, clip in enumerate(clips) for t in range(clip.T)]

    def decoder_batch(step, rank, world):
        b = _batches(len(frames_index), cfg.fit4d.batch, cfg.run.seed + 1)(step, rank, world)
        pick = [frames_index[i] for i in b["index"]]
        motion = torch.stack([view.to_world(clips[c].motion[t]) for c, t in pick])
        target = torch.stack([torch.from_numpy(np.array(clips[c].frames[t])) for c, t in pick])
        target = crop_frames(target, crop).float() / 255
        return {"motion": motion, "target": target, "mask": mask[None].expand(len(pick), -1, -1), **b}
    fit = DecoderFit(view, models["decoder"], cfg.fit4d, crop)
    run.train(Stage("fit4d", fit, {"decoder": torch.optim.Adam(models["decoder"].parameters(), cfg.fit4d.lr)},
                    cfg.fit4d.steps, decoder_batch), models)
    # 6. embedding
    e = cfg.embedding
    if e.enabled:
        win = Windows(clips, e.window)
        obj = EmbeddingObjective(models["encoder"], models["embedding"], win)
        opt = torch.optim.AdamW(list(models["encoder"].parameters()) + list(models["embedding"].parameters()), e.lr)
        run.train(Stage("embedding", obj, {"embedding": opt}, e.steps, _batches(len(win), e.batch, cfg.run.seed + 2)),
                  models)
    # 7. motion DiT + refiner
    m = cfg.motion
    win = Windows(clips, cfg.motion_model.window)
    train_encoder = not (e.enabled and m.freeze_encoder)
    obj = MotionObjective(models["encoder"], models["dit"], models["refiner"], win, train_encoder, m.sample_steps,
                          m.refiner_batch)
    params = list(models["dit"].parameters()) + (list(models["encoder"].parameters()) if train_encoder else [])
    opts = {"dit": torch.optim.AdamW(params, m.lr), "refiner": torch.optim.AdamW(models["refiner"].parameters(),
                                                                                 m.refiner_lr)}
    sample = _sampler(run, view, models, heldout_clips[:1] or train_clips[:1])
    run.train(Stage("motion", obj, opts, m.steps, _batches(len(win), m.batch, cfg.run.seed + 3),
                    sample_fn=lambda step: sample("motion", step), find_unused_parameters=True), models)
    # 8. finetune
    f = cfg.finetune
    teacher_for_sds = teacher if (f.w_vsd and getattr(teacher, "is_diffusion", False)) else None
    if f.w_vsd and teacher_for_sds is None:
        warnings.warn(f"finetune.w_vsd: teacher {cfg.data.teacher!r} has no score function; VSD is skipped")
    obj = FinetuneObjective(models["encoder"], models["dit"], models["refiner"], models["decoder"],
                            models["embedding"] if e.enabled else None, view, win, f, m.sample_steps, person,
                            view.face_box() if f.region == "face" else None, teacher_for_sds)
    opts = {"motion": torch.optim.AdamW(list(models["dit"].parameters()) + list(models["refiner"].parameters()), f.lr)}
    if f.decoder_lr > 0:
        opts["decoder"] = torch.optim.Adam(models["decoder"].parameters(), f.decoder_lr)
    else:
        models["decoder"].requires_grad_(False)
    batches = _batches(len(win), f.batch, cfg.run.seed + 4)
    if teacher_for_sds is not None:
        conditions = {}

        def batches(step, rank, world, _inner=batches):
            b = _inner(step, rank, world)
            b["teacher_conditions"] = [_clip_conditions(teacher, conditions, win, i, first.reference())
                                       for i in b["index"]]
            return b
    run.train(Stage("finetune", obj, opts, f.steps, batches, sample_fn=lambda step: sample("finetune", step),
                    find_unused_parameters=True), models)
    # 9. export + held-out evaluation
    model_dir = run.dir / "model"
    if is_main(ctx):
        for key, sub in MODEL_DIRS.items():
            models[key].save_pretrained(model_dir / sub)
        if not cfg.data.avatar:                       # the run's own avatar keeps its trained decoder
            avatar.decoder = models["decoder"]
            avatar.save_pretrained(run.dir / "avatar")
        (run.dir / "eval.json").write_text(json.dumps(
            evaluate_heldout(run, view, avatar, models, heldout_clips, person, eval_variants), indent=1))
    barrier(ctx)
    return model_dir


def evaluate_heldout(run: Run, view: TeacherView, avatar: Avatar, models: dict, clips: list, mask: torch.Tensor,
                     variants: tuple[str, ...] = VARIANTS) -> dict:
    """Lip sync and fidelity (inside mask [H, W], the person) on the held-out clips: the learned model, the
    learned model without its refiner (an ablation for free), and the procedural baseline."""
    from distill.evaluate import learned_motion, procedural_motion, render_motion, score_clips, side_by_side
    result = {"clips": [c.id for c in clips]}
    for variant in variants:
        rendered = []
        for clip in _progress(clips, run.progress, f"evaluating {variant}"):
            audio = clip.audio()
            mel, rms = audio_features(audio)
            if variant == "procedural":
                motion = procedural_motion(avatar, mel, rms)
            else:
                motion = learned_motion(models["encoder"], models["dit"], models["refiner"], mel,
                                        use_refiner=variant == "learned")
            frames = render_motion(view, models["decoder"], motion)
            rendered.append({"frames": frames, "teacher": clip.frames()[:len(frames)], "audio": audio})
        result[variant] = score_clips(rendered, mask)
        if variant == "learned" and rendered:
            side_by_side(run.dir / "samples" / "heldout.mp4", rendered[0]["frames"], rendered[0]["teacher"],
                         rendered[0]["audio"])
    return result


def _sampler(run: Run, view: TeacherView, models: dict, clips: list):
    """sample(stage, step): RUN/samples/<stage>-<step>.mp4, the current models on one (held-out) clip, next to
    the teacher's video, with its audio."""
    from distill.evaluate import learned_motion, render_motion, side_by_side

    def sample(stage: str, step: int) -> None:
        clip = clips[0]
        audio = clip.audio()
        mel, _ = audio_features(audio)
        motion = learned_motion(models["encoder"], models["dit"], models["refiner"], mel)
        frames = render_motion(view, models["decoder"], motion)
        side_by_side(run.dir / "samples" / f"{stage}-{step:06d}.mp4", frames, clip.frames(), audio)
    return sample


def evaluate_run(run_dir: str | Path, progress: bool = True) -> dict:
    """Re-evaluate a finished run (its config, avatar, exported models and cached held-out teacher videos)."""
    from distill.config import load_distill_config
    run_dir = Path(run_dir)
    cfg = load_distill_config(run_dir / "config.yaml")
    run = Run(cfg, run_dir, True, progress, init_distributed())
    avatar = run.avatar()
    train_clips, heldout_clips = run.teacher_clips(run.teacher())
    view = TeacherView(avatar, train_clips[0].frames().shape[1:3])
    models = run.models(avatar, view.unit)
    run.load_models(models, "finetune")
    return evaluate_heldout(run, view, avatar, models, heldout_clips, _person_mask(train_clips[0].reference()))


def _person_mask(reference: np.ndarray) -> torch.Tensor:
    """[H, W] bool: mediapipe's person segmentation of the teacher's reference image (as issue 3's PSNR)."""
    from engine.avatar.landmarks import detect
    return detect(torch.from_numpy(np.array(reference)).float() / 255.0).mask > 0.5


def _clip_conditions(teacher, cache: dict, win: Windows, i: int, reference: np.ndarray) -> dict:
    """The diffusion teacher's score conditions for the whole clip of window i (cached per clip); the finetune
    objective cuts them to the frames it renders."""
    c, _ = win.items[i]
    if c not in cache:
        cache[c] = teacher.make_conditions(reference, win.clips[c].audio)
    return cache[c]


def _progress(items, enabled: bool, desc: str):
    from tqdm import tqdm
    return tqdm(items, desc=desc, unit="clip", disable=not enabled)
