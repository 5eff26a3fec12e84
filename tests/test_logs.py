"""distill.logs: CSV rows truncated on resume, union of columns, rank-0-only writing, and the loss plot."""
import importlib.util

import pytest
from PIL import Image

from distill.logs import RunLog, plot_losses, read_log

pytestmark = pytest.mark.usefixtures("one_thread")

HAS_TB = importlib.util.find_spec("tensorboard") is not None


def test_rows_and_exact_values(tmp_path):
    with RunLog(tmp_path, "stage1") as log:
        for s in range(1, 4):
            log.log(s, loss=0.1 + 0.2 * s, lr=1e-3)
    cols = read_log(tmp_path / "logs" / "stage1.csv")
    assert cols["step"] == [1, 2, 3]
    assert cols["loss"] == [0.1 + 0.2 * s for s in range(1, 4)]     # repr round-trip: bit-exact
    assert all(b >= a for a, b in zip(cols["wall_time"], cols["wall_time"][1:]))
    if not HAS_TB:
        assert log.tb is None and not (tmp_path / "logs" / "tb").exists()


def test_resume_truncates_later_rows(tmp_path):
    with RunLog(tmp_path, "s") as log:
        for s in range(1, 9):
            log.log(s, loss=float(s))
    with RunLog(tmp_path, "s", resume_step=5) as log:        # checkpoint at 5: rows 6..8 are redone
        assert read_log(log.path)["step"] == [1, 2, 3, 4, 5]
        for s in (6, 7):
            log.log(s, loss=10.0 * s)
    cols = read_log(tmp_path / "logs" / "s.csv")
    assert cols["step"] == [1, 2, 3, 4, 5, 6, 7]
    assert cols["loss"] == [1.0, 2.0, 3.0, 4.0, 5.0, 60.0, 70.0]
    RunLog(tmp_path, "s", resume_step=None).close()          # a fresh run starts an empty curve
    assert read_log(tmp_path / "logs" / "s.csv")["step"] == []


def test_union_of_columns(tmp_path):
    log = RunLog(tmp_path, "u")
    log.log(1, loss=1.0)
    log.log(2, {"loss": 2.0})
    log.log(3, loss=3.0, lr=0.5)                             # a new column: header widened, file rewritten
    log.log(4, lr=0.25)                                      # a missing one: left empty
    log.close()
    path = tmp_path / "logs" / "u.csv"
    assert path.read_text().splitlines()[0] == "step,wall_time,loss,lr"
    cols = read_log(path)
    assert cols["step"] == [1, 2, 3, 4] and cols["loss"][:3] == [1.0, 2.0, 3.0] and cols["lr"][2:] == [0.5, 0.25]
    assert cols["lr"][0] != cols["lr"][0] and cols["loss"][3] != cols["loss"][3]      # NaN where empty
    with RunLog(tmp_path, "u", resume_step=3) as log:        # resume keeps the widened header
        log.log(4, loss=4.0, grad_norm=9.0)
    assert path.read_text().splitlines()[0] == "step,wall_time,loss,lr,grad_norm"
    assert read_log(path)["step"] == [1, 2, 3, 4]


def test_line_cut_by_a_crash_is_dropped_on_resume(tmp_path):
    with RunLog(tmp_path, "c") as log:
        log.log(1, loss=1.0)
        log.log(2, loss=2.0)
    path = tmp_path / "logs" / "c.csv"
    with open(path, "a") as f:
        f.write("3,17000")                                   # half a row, no newline
    with RunLog(tmp_path, "c", resume_step=10) as log:
        log.log(3, loss=3.0)
    assert read_log(path)["loss"] == [1.0, 2.0, 3.0]


def test_only_rank0_writes(tmp_path, monkeypatch):
    RunLog(tmp_path, "r", rank=1).log(1, loss=1.0)
    monkeypatch.setenv("RANK", "3")
    RunLog(tmp_path, "r").log(1, loss=1.0)
    assert not (tmp_path / "logs").exists()
    monkeypatch.setenv("RANK", "0")
    RunLog(tmp_path, "r").log(1, loss=1.0)
    assert read_log(tmp_path / "logs" / "r.csv")["step"] == [1]


def test_bad_arguments(tmp_path):
    log = RunLog(tmp_path, "b")
    with pytest.raises(ValueError, match="metric 'loss'"):
        log.log(1, loss="high")
    with pytest.raises(ValueError, match="reserved"):
        log.log(1, step=3.0)
    with pytest.raises(ValueError, match="step"):
        log.log(-1, loss=1.0)
    with pytest.raises(ValueError, match="stage"):
        RunLog(tmp_path, "../escape")
    with pytest.raises(ValueError, match="resume_step"):
        RunLog(tmp_path, "b", resume_step=-3)


def test_plot_losses_writes_png(tmp_path):
    import torch
    with RunLog(tmp_path, "p") as log:
        for s in range(1, 30):
            log.log(s, loss=1.0 / s, loss_l1=torch.tensor(0.5 / s), lr=1e-3 * (0.9 ** s))
    png = plot_losses(tmp_path / "logs" / "p.csv", tmp_path / "plots" / "p.png")
    with Image.open(png) as im:
        im.load()
        assert im.format == "PNG" and im.width > 600 and im.height > 200
    only_losses = tmp_path / "o"
    with RunLog(only_losses, "q") as log:
        log.log(1, loss=0.0)                                 # non-positive on a log axis: masked, no crash
        log.log(2, loss=1.0)
    with Image.open(plot_losses(only_losses / "logs" / "q.csv", only_losses / "q.png")) as im:
        assert im.format == "PNG"
