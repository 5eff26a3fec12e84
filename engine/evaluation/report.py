"""An evaluate() result on disk: report.json, lipsync.png (mouth opening vs audio envelope over time, and r by
lag), identity.png (per-frame cosine), contact_sheet.png (frames across the clip), report.html (all of it).
Written to a temporary folder first and moved into place, so a failed report leaves nothing half-written."""
from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np

from engine.pretrained import atomic_dir_write

from .suite import summary


def _figure():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _z(x) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    ok = np.isfinite(a)
    if ok.sum() < 2 or a[ok].std() == 0:
        return a
    return (a - a[ok].mean()) / a[ok].std()


def plot_lipsync(ls: dict, fps: float, path: Path) -> None:
    plt = _figure()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 3.2), gridspec_kw={"width_ratios": [3, 1]})
    t = np.arange(len(ls["opening"])) / fps
    ax.plot(t, _z(ls["envelope"]), color="#999", lw=1, label="audio RMS envelope")
    ax.plot(t, _z(ls["opening"]), color="#c33", lw=1.2, label="mouth opening (mediapipe)")
    ax.set(xlabel="time (s)", ylabel="z-score", title="mouth opening vs audio envelope")
    ax.legend(loc="upper right", fontsize=8)
    lags = sorted(int(k) for k in ls["r_by_lag"])
    bx.bar(lags, [ls["r_by_lag"][str(k)] for k in lags], color="#36c")
    if ls.get("lag_frames") is not None:
        bx.axvline(ls["lag_frames"], color="#c33", lw=1)
    bx.set(xlabel="lag (frames; > 0: mouth after audio)", ylabel="Pearson r", title="r by lag")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_identity(idn: dict, fps: float, path: Path) -> None:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(8, 3))
    t = np.asarray(idn["frames"]) / fps
    c = np.array([math.nan if v is None else v for v in idn["cosine"]])
    ax.plot(t, c, "o-", color="#393", ms=3)
    ax.axhline(0.94, color="#999", ls="--", lw=1, label="dlib same-person level (~0.94)")
    ax.set(xlabel="time (s)", ylabel="cosine to the reference", title="identity per frame (dlib)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def contact_sheet(frames: np.ndarray, n: int, path: Path, width: int = 1600) -> None:
    from PIL import Image

    pick = np.linspace(0, len(frames) - 1, min(n, len(frames))).round().astype(int)
    cols = min(4, len(pick))
    rows = math.ceil(len(pick) / cols)
    h, w = frames.shape[1:3]
    scale = min(1.0, width / (cols * w))
    tw, th = max(1, int(w * scale)), max(1, int(h * scale))
    sheet = Image.new("RGB", (cols * tw, rows * th), "white")
    for k, i in enumerate(pick):
        sheet.paste(Image.fromarray(frames[i]).resize((tw, th), Image.BILINEAR), ((k % cols) * tw, (k // cols) * th))
    sheet.save(path)


def _html(result: dict, images: list[str]) -> str:
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{'skipped' if v is None else html.escape(_fmt(v))}</td></tr>"
                   for k, v in summary(result).items())
    notes = [f"{k}: {v['skipped']}" for k, v in result.items() if isinstance(v, dict) and "skipped" in v]
    notes += [f"fidelity: {n}" for n in result.get("fidelity", {}).get("notes", [])]
    clip = result["clip"]
    return ("<!doctype html><meta charset='utf-8'><title>AudioAvatar evaluation</title>"
            "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}td{padding:2px 12px}"
            "img{max-width:100%}</style>"
            f"<h1>Evaluation of {html.escape(str(clip['source']))}</h1>"
            f"<p>{clip['frames']} frames, {clip['width']}x{clip['height']}, {clip['fps']:g} fps, "
            f"{clip['seconds']} s</p><table>{rows}</table>"
            + "".join(f"<p class='note'>{html.escape(n)}</p>" for n in notes)
            + "".join(f"<p><img src='{html.escape(i)}' alt='{html.escape(i)}'></p>" for i in images)
            + "<p>Raw values: <a href='report.json'>report.json</a></p>")


def _jsonable(v):
    """NaN/inf -> None (strict JSON), numpy scalars -> Python, recursively."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def write_report(result: dict, frames: np.ndarray, out_dir: str | Path, contact_frames: int = 8) -> Path:
    """Write the report folder `out_dir` atomically (replaced as a whole when it already holds a report; any
    other non-empty folder is a ValueError and stays untouched)."""
    fps = result["clip"]["fps"]

    def write(tmp: Path) -> None:
        images = []
        if result["lipsync"].get("opening"):
            plot_lipsync(result["lipsync"], fps, tmp / "lipsync.png")
            images.append("lipsync.png")
        if result["identity"].get("frames"):
            plot_identity(result["identity"], fps, tmp / "identity.png")
            images.append("identity.png")
        contact_sheet(frames, contact_frames, tmp / "contact_sheet.png")
        images.append("contact_sheet.png")
        (tmp / "report.html").write_text(_html(result, images))
        (tmp / "report.json").write_text(json.dumps(_jsonable({"summary": summary(result), **result}), indent=1,
                                                    allow_nan=False))
    return atomic_dir_write(out_dir, write, marker="report.json")
