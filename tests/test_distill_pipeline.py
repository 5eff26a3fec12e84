"""The whole distillation on the tiny config (configs/distill/tiny.yaml): every stage runs, the exported models
load into the live engine, a kill -9 in the middle of a stage and --resume end bit-identical to a run that was
never interrupted, and a used run folder is never overwritten."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from distill.config import load_distill_config
from engine.avatar.personalize import PersonalizeConfig, personalize

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "configs" / "distill" / "tiny.yaml"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def avatar_dir(tmp_path_factory):
    avatar = personalize(ROOT / "assets" / "astronaut.png", PersonalizeConfig(max_side=160, fit_steps=5),
                         progress=False)
    return avatar.save_pretrained(tmp_path_factory.mktemp("av") / "astronaut")


def _cli(run: Path, avatar_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "audioavatar", "distill", str(TINY), "-o", str(run),
            "--set", f"data.avatar={avatar_dir}", *extra]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file
    out = {}
    for f in sorted((run / "model").glob("*/model.safetensors")) + [run / "models" / "finetune" / "decoder" /
                                                                     "model.safetensors"]:
        for k, v in load_file(str(f)).items():
            out[f"{f.parent.name}/{k}"] = v
    return out


def test_tiny_run_trains_every_stage_and_the_engine_loads_it(avatar_dir, tmp_path):
    from distill.logs import read_log
    from distill.pipeline import distill
    from engine.runtime import AvatarEngine, EngineConfig

    cfg = load_distill_config(TINY, [f"data.avatar={avatar_dir}", "run.sample_every=4"])
    model_dir = distill(cfg, tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "samples" / "motion-000004.mp4").stat().st_size > 1000
    for stage, steps in (("fit4d", 3), ("embedding", 4), ("motion", 4), ("finetune", 3)):
        log = read_log(tmp_path / "run" / "logs" / f"{stage}.csv")
        assert log["step"][-1] == steps, stage
        assert all(v == v for v in log["loss"]), stage                       # finite (NaN != NaN)
        assert (tmp_path / "run" / "logs" / f"{stage}.png").is_file()
    # the trained DiT is no longer the zero-initialised rest pose
    from engine.motion.dit import MotionDiT
    dit = MotionDiT.from_pretrained(model_dir / "motion")
    assert float(dit.final.head.weight.detach().abs().max()) > 0
    # the engine runs on the exported models and moves
    engine = AvatarEngine(avatar_dir, EngineConfig(width=64, height=64, motion="learned", model_dir=str(model_dir)))
    from engine.audio.features import load_audio
    engine.push_audio(load_audio(ROOT / "assets" / "speech.wav")[:16000])
    frames = [f.image for f in engine.frames()]
    assert len(frames) == 25
    import json
    report = json.loads((tmp_path / "run" / "eval.json").read_text())
    for variant in ("learned", "procedural"):
        assert report[variant]["frames"] > 0 and report[variant]["psnr"] > 10
    assert (tmp_path / "run" / "samples" / "heldout.mp4").stat().st_size > 1000


def test_kill_9_and_resume_end_exactly_where_an_uninterrupted_run_does(avatar_dir, tmp_path):
    steps = ["--set", "motion.steps=30"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight = tmp_path / "straight"
    subprocess.run(_cli(straight, avatar_dir, *steps), check=True, env=env, capture_output=True, timeout=600)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli(killed, avatar_dir, *steps), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    latest = killed / "stages" / "motion" / "checkpoints" / "latest"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if latest.is_file() and latest.read_text().strip() >= "step_00000006.pt":
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "model").exists()
    resumed = subprocess.run(_cli(killed, avatar_dir, *steps, "--resume"), env=env, capture_output=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    a, b = _weights(straight), _weights(killed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # the loss curve of the resumed stage continues the original's, row for row
    from distill.logs import read_log
    la, lb = read_log(straight / "logs" / "motion.csv"), read_log(killed / "logs" / "motion.csv")
    assert la["step"] == lb["step"] and la["loss"] == lb["loss"]


def test_a_used_run_folder_is_not_overwritten(avatar_dir, tmp_path):
    from distill.pipeline import distill
    run = tmp_path / "run"
    run.mkdir()
    (run / "mine.txt").write_text("keep")
    cfg = load_distill_config(TINY, [f"data.avatar={avatar_dir}"])
    with pytest.raises(ValueError, match="not empty"):
        distill(cfg, run, progress=False)
    assert (run / "mine.txt").read_text() == "keep"
    missing = load_distill_config(TINY, [f"data.avatar={avatar_dir}", "data.photo=nope.png"])
    with pytest.raises(ValueError, match="nope.png"):
        distill(missing, tmp_path / "run2", progress=False)


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_same_command_under_torchrun_keeps_two_gloo_ranks_identical(avatar_dir, tmp_path):
    """`torchrun --nproc_per_node=2 -m audioavatar distill ...`: DDP on gloo; every training stage ends with the
    parameters of both ranks equal (distill.train.check_ranks_agree writes the largest difference)."""
    import json
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           "-m", "audioavatar", "distill", str(TINY), "-o", str(run), "--set", f"data.avatar={avatar_dir}"]
    done = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    for stage in ("fit4d", "embedding", "motion", "finetune"):
        check = json.loads((run / "stages" / stage / "ddp_check.json").read_text())
        assert check == {"world": 2, "max_abs_diff": 0.0}, stage
    assert (run / "model" / "motion" / "model.safetensors").is_file()
