"""Issue 7's ablation table: a finished distillation run against variants that drop one ingredient each,
all scored on the same held-out clips (distill.pipeline.evaluate_heldout). Prints one JSON line per row.

    full                 the run itself (the default config: no end-to-end finetune, finetune.steps = 0)
    without refiner      the same models, the refiner skipped (evaluation only)
    with finetune        the end-to-end finetune run from the same motion stage for FINETUNE_STEPS steps
    finetune without trajectory / without ARAP: the same with finetune.w_traj = 0 / finetune.w_arap = 0
    without embedding    no contrastive stage (the audio encoder trains from scratch with the DiT), no sync loss:
                         motion (+ finetune, when the run has one) re-run
    procedural           the rule-based baseline on the same avatar
The run's own eval.json is reused when it scores all three of full / without refiner / procedural.
A variant starts from a copy of the run's folder with the stages it changes removed, so it shares the
teacher videos, tracks, fit4d and everything upstream of the change (distill --resume skips finished stages).
VSD has no row: the offline procedural teacher has no score function.

    python bench/distill_ablation.py --run runs/default --out runs/ablation
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FINETUNE_STEPS = 200
FINETUNE = [f"finetune.steps={FINETUNE_STEPS}"]
VARIANTS = {
    "with finetune": (FINETUNE, ["finetune"]),
    "finetune without trajectory": (FINETUNE + ["finetune.w_traj=0"], ["finetune"]),
    "finetune without ARAP": (FINETUNE + ["finetune.w_arap=0"], ["finetune"]),
    "without embedding": (["embedding.enabled=false", "finetune.w_sync=0"], ["embedding", "motion", "finetune"]),
}


def row(name: str, scores: dict, extra: dict | None = None) -> dict:
    return {"variant": name, "sync_peak_r": round(scores["sync"]["peak_r"], 4), "lag_frames": scores["sync"]["lag_frames"],
            "r_at_0": round(scores["sync"]["r_at_0"], 4), "psnr_db": round(scores["psnr"], 2),
            "ssim": round(scores["ssim"], 4), "frames": scores["frames"], **(extra or {})}


def copy_run(base: Path, out: Path, drop: list[str]) -> None:
    """out = base without the stages in `drop` (teacher videos are linked, not copied)."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for item in base.iterdir():
        if item.name in ("teacher",):
            (out / item.name).symlink_to(item.resolve())
        elif item.name in ("model", "eval.json", "samples", "logs"):
            continue
        elif item.is_dir():
            shutil.copytree(item, out / item.name)
        else:
            shutil.copy2(item, out / item.name)
    for stage in drop:
        shutil.rmtree(out / "stages" / stage, ignore_errors=True)
        shutil.rmtree(out / "models" / stage, ignore_errors=True)


def main() -> None:
    from distill.config import load_distill_config
    from distill.pipeline import distill, evaluate_run

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a finished `audioavatar distill` run folder")
    ap.add_argument("--out", required=True, help="folder for the variants' runs")
    ap.add_argument("--only", action="append", help="run only these variants (repeatable)")
    args = ap.parse_args()
    base, out = Path(args.run), Path(args.out)
    saved = json.loads((base / "eval.json").read_text()) if (base / "eval.json").is_file() else {}
    scores = saved if all(k in saved for k in ("learned", "learned_no_refiner", "procedural")) else evaluate_run(base)
    print(json.dumps(row("full", scores["learned"])), flush=True)
    print(json.dumps(row("without refiner", scores["learned_no_refiner"])), flush=True)
    print(json.dumps(row("procedural", scores["procedural"])), flush=True)
    for name, (overrides, drop) in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        target = out / name.replace(" ", "_")
        copy_run(base, target, drop)
        cfg = load_distill_config(base / "config.yaml", overrides)
        (target / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=True))
        t0 = time.perf_counter()
        distill(cfg, target, resume=True, eval_variants=("learned",))
        wall = time.perf_counter() - t0
        result = json.loads((target / "eval.json").read_text())
        print(json.dumps(row(name, result["learned"], {"retrain_s": round(wall, 1)})), flush=True)


if __name__ == "__main__":
    main()
