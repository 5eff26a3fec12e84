"""Training logs: one CSV per stage (always), TensorBoard scalars too when tensorboard is installed, and a plot.

What the trainer does with this file:
  1. `log = RunLog(run_dir, stage, resume_step)` with resume_step = the step `load_latest` returned, or None for a
     fresh run. Rows of a previous run with step > resume_step are dropped (all rows when None), so a resumed
     curve continues the original one without duplicates: steps logged after the last checkpoint are redone.
  2. `log.log(step, loss=..., loss_l1=..., lr=...)` each time it has metrics; a row is (step, wall_time, metrics).
     A metric that appears later widens the CSV header (the file is rewritten with the union of the columns;
     earlier rows leave it empty).
  3. `log.close()` at the end (or use `with RunLog(...) as log:`), and `plot_losses(csv, png)` for a quick look.

Files: run_dir/logs/{stage}.csv, and run_dir/logs/tb/{stage}/ for TensorBoard (its `purge_step` drops the
abandoned future the same way). Only rank 0 writes: on other ranks (RANK from torchrun's environment, or the
`rank` argument) RunLog does nothing. Values are written with repr(float), so they read back bit-exact.
Rewrites (truncation on resume, a widened header) go to a temp file that is os.replace'd into place.
"""
from __future__ import annotations

import csv
import io
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path

from engine.pretrained import atomic_file_write

STEP, WALL = "step", "wall_time"


def _read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a CSV written by RunLog; rows that do not parse (a line cut by a crash) are dropped."""
    if not path.is_file():
        return [], []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        rows = []
        for row in reader:
            try:
                int(row.get(STEP) or "")
            except ValueError:
                continue
            if None in row or any(v is None for v in row.values()):      # too many / too few fields
                continue
            rows.append(row)
    return header, rows


def _write_rows(path: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=header, restval="", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_file_write(path, lambda f: f.write(buf.getvalue().encode()))


def _float(name: str, v) -> float:
    try:
        return float(v.item() if hasattr(v, "item") else v)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"metric {name!r}: expected a number or a one-element tensor, got {v!r}") from e


class RunLog:
    """Per-stage metric log: run_dir/logs/{stage}.csv (+ TensorBoard when installed). Only rank 0 writes."""

    def __init__(self, run_dir: str | Path, stage: str, resume_step: int | None = None, rank: int | None = None,
                 tensorboard: bool = True):
        if not stage or not isinstance(stage, str) or any(c in stage for c in "/\\") or stage.startswith("."):
            raise ValueError(f"stage: expected a plain name usable as a file name, got {stage!r}")
        if resume_step is not None and (not isinstance(resume_step, int) or resume_step < 0):
            raise ValueError(f"resume_step: expected None or an int >= 0, got {resume_step!r}")
        if rank is None:
            rank = int(os.environ.get("RANK", "0"))
        self.enabled = rank == 0
        self.path = Path(run_dir) / "logs" / f"{stage}.csv"
        self.columns: list[str] = [STEP, WALL]
        self.tb = None
        if not self.enabled:
            return

        # 1. keep the rows up to resume_step (none on a fresh run).
        self.path.parent.mkdir(parents=True, exist_ok=True)
        header, rows = _read_rows(self.path)
        limit = -1 if resume_step is None else resume_step
        kept = [r for r in rows if int(r[STEP]) <= limit]
        if header:
            self.columns = [STEP, WALL] + [c for c in header if c not in (STEP, WALL)]
        _write_rows(self.path, self.columns, kept)      # always: also drops a line cut short by a crash

        # 2. TensorBoard when it imports; purge_step drops its events after resume_step the same way.
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:          # tensorboard not installed: CSV only
                SummaryWriter = None
            if SummaryWriter is not None:
                self.tb = SummaryWriter(log_dir=str(Path(run_dir) / "logs" / "tb" / stage),
                                        purge_step=None if resume_step is None else resume_step + 1)

    def log(self, step: int, metrics: Mapping[str, float] | None = None, /, **more: float) -> None:
        """Append a row (step, wall time, metrics). Metrics: floats, ints or one-element tensors."""
        if not self.enabled:
            return
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            raise ValueError(f"step: expected an int >= 0, got {step!r}")
        values = {k: _float(k, v) for k, v in {**(metrics or {}), **more}.items()}
        for k in values:
            if k in (STEP, WALL):
                raise ValueError(f"metric name {k!r} is reserved (columns {STEP!r} and {WALL!r} are written by RunLog)")
        wall = time.time()
        row = {STEP: str(step), WALL: repr(wall), **{k: repr(v) for k, v in values.items()}}
        new = [k for k in values if k not in self.columns]
        if new:                                                    # widen the header: rewrite with the union
            self.columns += new
            _, rows = _read_rows(self.path)
            _write_rows(self.path, self.columns, rows + [row])
        else:
            with open(self.path, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=self.columns, restval="", lineterminator="\n").writerow(row)
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(k, v, global_step=step, walltime=wall)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_log(csv_path: str | Path) -> dict[str, list[float]]:
    """A RunLog CSV as columns: {"step": [...], "wall_time": [...], metric: [...]} (NaN where a row has no value)."""
    header, rows = _read_rows(Path(csv_path))
    if not header:
        raise ValueError(f"csv_path: {csv_path} is missing or empty")
    return {c: [float(r[c]) if r.get(c) not in (None, "") else math.nan for r in rows] for c in header}


def plot_losses(csv_path: str | Path, png_path: str | Path) -> Path:
    """Plot a RunLog CSV to a PNG: one line per metric column against step. Columns named loss* share a log-y
    panel; other metrics (lr, diagnostics) get a linear panel beside it. Uses matplotlib's Agg canvas directly
    (no pyplot, no global backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = read_log(csv_path)
    metrics = [c for c in cols if c not in (STEP, WALL)]
    losses = [c for c in metrics if c.startswith("loss")]
    others = [c for c in metrics if not c.startswith("loss")]
    panels = [(names, log_y) for names, log_y in ((losses, True), (others, False)) if names] or [([], False)]
    fig = Figure(figsize=(6 * len(panels), 4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    for i, (names, log_y) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for c in names:
            pts = [(s, v) for s, v in zip(cols[STEP], cols[c]) if not math.isnan(v)]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=c, linewidth=1)
        if log_y and any(v > 0 for c in names for v in cols[c] if not math.isnan(v)):
            ax.set_yscale("log", nonpositive="mask")
        ax.set_xlabel("step")
        ax.set_title(("losses (log y)" if log_y else "metrics") if names else "no metrics logged")
        ax.grid(True, alpha=0.3)
        if names:
            ax.legend(fontsize=8)
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path)
    return png_path
