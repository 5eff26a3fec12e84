"""distill.checkpoint: atomic writes, corrupt-file fallback, keep-N pruning, bit-exact resume in a fresh process,
and the data order (epoch_order / batch_indices) as a pure function of its arguments."""
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from distill.checkpoint import (LATEST, batch_indices, epoch_order, list_checkpoints, load_latest,
                                save_checkpoint)
from distill.logs import RunLog, read_log

pytestmark = pytest.mark.usefixtures("one_thread")

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def _tiny_state(seed=0):
    torch.manual_seed(seed)
    m = nn.Linear(3, 2)
    return {"model": m.state_dict(), "note": f"seed {seed}"}


def _steps(run_dir):
    return [s for s, _ in list_checkpoints(run_dir)]


# ------------------------------------------------------------------------------------------------ atomic writes
def test_save_load_roundtrip_restores_rng(tmp_path):
    state = _tiny_state()
    path = save_checkpoint(tmp_path, 7, {**state, "cfg": {"lr": 1e-3, "names": ["a", "b"], "none": None}})
    assert path == tmp_path / "checkpoints" / "step_00000007.pt"
    assert (tmp_path / "checkpoints" / LATEST).read_text().strip() == "step_00000007.pt"
    expected = (random.random(), np.random.rand(), torch.rand(3))
    random.seed(99), np.random.seed(99), torch.manual_seed(99)
    step, got = load_latest(tmp_path)
    assert step == 7 and got["note"] == "seed 0" and got["cfg"] == {"lr": 1e-3, "names": ["a", "b"], "none": None}
    assert all(torch.equal(got["model"][k], v) for k, v in state["model"].items())
    after = (random.random(), np.random.rand(), torch.rand(3))
    assert after[0] == expected[0] and after[1] == expected[1] and torch.equal(after[2], expected[2])


def test_crash_mid_write_leaves_previous_checkpoint(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, 1, _tiny_state(1))

    def torch_save_dies_midway(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")                # some bytes reach the temp file, then the crash
        raise RuntimeError("simulated crash while writing")

    monkeypatch.setattr(torch, "save", torch_save_dies_midway)
    with pytest.raises(RuntimeError, match="simulated crash"):
        save_checkpoint(tmp_path, 2, _tiny_state(2))
    monkeypatch.undo()

    d = tmp_path / "checkpoints"
    assert (d / LATEST).read_text().strip() == "step_00000001.pt"
    assert not (d / "step_00000002.pt").exists()
    assert sorted(p.name for p in d.iterdir()) == [LATEST, "step_00000001.pt"]     # no temp file left behind
    step, state = load_latest(tmp_path)
    assert step == 1 and state["note"] == "seed 1"


def test_temp_file_of_killed_process_is_ignored_then_cleaned(tmp_path):
    save_checkpoint(tmp_path, 1, _tiny_state(1))
    d = tmp_path / "checkpoints"
    stale = d / ".step_00000002.pt.tmp-deadbeef"          # what a SIGKILL during torch.save leaves
    stale.write_bytes(b"PK\x03\x04 cut")
    assert _steps(tmp_path) == [1]
    assert load_latest(tmp_path)[0] == 1
    save_checkpoint(tmp_path, 2, _tiny_state(2))
    assert not stale.exists() and _steps(tmp_path) == [1, 2]


# ------------------------------------------------------------------------------------------- corrupt fallback
def test_truncated_latest_checkpoint_is_skipped(tmp_path):
    for s in (1, 2, 3):
        save_checkpoint(tmp_path, s, _tiny_state(s))
    newest = tmp_path / "checkpoints" / "step_00000003.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    with pytest.warns(UserWarning, match="step_00000003.pt: skipped"):
        step, state = load_latest(tmp_path)
    assert step == 2 and state["note"] == "seed 2"


def test_corrupt_or_missing_latest_pointer_falls_back_to_newest(tmp_path):
    for s in (1, 2):
        save_checkpoint(tmp_path, s, _tiny_state(s))
    latest = tmp_path / "checkpoints" / LATEST
    latest.write_bytes(b"\x00\xffgarbage")
    with pytest.warns(UserWarning, match="latest"):
        assert load_latest(tmp_path)[0] == 2
    latest.write_text("step_00000009.pt\n")                    # names a file that does not exist
    with pytest.warns(UserWarning, match="not a checkpoint file here"):
        assert load_latest(tmp_path)[0] == 2
    latest.unlink()
    assert load_latest(tmp_path)[0] == 2


def test_foreign_and_empty_files_are_skipped_and_none_when_nothing_usable(tmp_path):
    assert load_latest(tmp_path) is None                      # no folder at all
    save_checkpoint(tmp_path, 1, _tiny_state(1))
    d = tmp_path / "checkpoints"
    torch.save(torch.zeros(3), d / "step_00000004.pt")        # loads, but is not a checkpoint
    (d / "step_00000005.pt").write_bytes(b"")                 # empty
    assert load_latest(tmp_path)[0] == 1                      # `latest` names step 1: the others are not tried
    (d / LATEST).unlink()                                     # newest first now: 5 and 4 are skipped
    with pytest.warns(UserWarning) as record:
        assert load_latest(tmp_path)[0] == 1
    assert {"step_00000004.pt", "step_00000005.pt"} <= {Path(str(w.message).split(":")[0]).name for w in record}
    (d / "step_00000001.pt").write_bytes(b"junk")
    with pytest.warns(UserWarning):
        assert load_latest(tmp_path) is None


# -------------------------------------------------------------------------------------------------- pruning
def test_keep_last_n_and_drop_abandoned_future(tmp_path):
    for s in range(1, 7):
        save_checkpoint(tmp_path, s * 10, _tiny_state(s), keep=3)
    assert _steps(tmp_path) == [40, 50, 60]
    # resumed from 40 and saving 45: 50 and 60 belong to the abandoned run and go
    save_checkpoint(tmp_path, 45, _tiny_state(9), keep=3)
    assert _steps(tmp_path) == [40, 45]
    assert load_latest(tmp_path)[0] == 45
    save_checkpoint(tmp_path, 46, _tiny_state(9), keep=1)
    assert _steps(tmp_path) == [46]


def test_save_checks_arguments(tmp_path):
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="step"):
            save_checkpoint(tmp_path, bad, {})
    with pytest.raises(ValueError, match="state"):
        save_checkpoint(tmp_path, 1, [1, 2])
    with pytest.raises(ValueError, match="keep"):
        save_checkpoint(tmp_path, 1, {}, keep=0)


# ----------------------------------------------------------------------------------------- resume exactness
N_DATA, BATCH, DATA_SEED = 24, 4, 7


def _toy_train(run_dir, total, save_every=5, crash_at=None, resume=False, restore_rng=True):
    """A toy trainer: MLP with dropout, Adam, numpy noise and python-random scaling (so all three RNGs matter),
    samples from batch_indices, a RunLog, a checkpoint every `save_every` steps. Stops early at `crash_at`.
    Writes the final parameters to run_dir/final.pt."""
    torch.set_num_threads(1)
    run_dir = Path(run_dir)
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(123)
    x, y = torch.randn(N_DATA, 4, generator=g), torch.randn(N_DATA, 1, generator=g)
    start = 0
    if resume:
        got = load_latest(run_dir, restore_rng=restore_rng)
        assert got is not None, "nothing to resume from"
        start, state = got
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        assert state["data_seed"] == DATA_SEED
    with RunLog(run_dir, "toy", start if resume else None) as log:
        for step in range(start, crash_at or total):
            idx = batch_indices(N_DATA, BATCH, step, DATA_SEED)
            xb = x[idx] + 0.05 * torch.from_numpy(np.random.randn(BATCH, 4)).float()
            scale = 1.0 + 0.1 * random.random()
            loss = ((model(xb) * scale - y[idx]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            log.log(step + 1, loss=loss.item())
            if (step + 1) % save_every == 0:
                save_checkpoint(run_dir, step + 1, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                                    "data_seed": DATA_SEED})
    torch.save(model.state_dict(), run_dir / "final.pt")


def test_resume_in_fresh_process_is_bit_exact(tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _toy_train(straight, total=20)
    # the resumed run checkpoints at 5 and 10, logs up to 13, "crashes"; a fresh process resumes from 10
    _toy_train(resumed, total=20, crash_at=13)
    assert _steps(resumed) == [5, 10]
    code = (f"import sys; sys.path.insert(0, {str(TESTS)!r}); from test_checkpoint import _toy_train; "
            f"_toy_train({str(resumed)!r}, total=20, resume=True)")
    r = subprocess.run([sys.executable, "-W", "error::UserWarning", "-c", code], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]

    a, b = torch.load(straight / "final.pt"), torch.load(resumed / "final.pt")
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k}: max diff {(a[k] - b[k]).abs().max().item():.3g}"
    la, lb = read_log(straight / "logs" / "toy.csv"), read_log(resumed / "logs" / "toy.csv")
    assert lb["step"] == list(range(1, 21))                   # 11..13 of the crashed run were dropped, no duplicates
    assert lb["loss"][10:] == la["loss"][10:]                  # steps 11..20: the same losses, bit for bit
    assert lb["loss"] == la["loss"]
    assert _steps(resumed) == [10, 15, 20]

    # control: without restoring the RNG the continuation differs, so the test above does test the RNG
    _toy_train(resumed, total=20, crash_at=13)
    _toy_train(resumed, total=20, resume=True, restore_rng=False)
    c = torch.load(resumed / "final.pt")
    assert not all(torch.equal(a[k], c[k]) for k in a)


# ----------------------------------------------------------------------------------------------- data order
def test_epoch_order_is_a_pure_permutation():
    state = torch.get_rng_state()
    o = epoch_order(50, 3, 0)
    assert sorted(o) == list(range(50))
    assert o == epoch_order(50, 3, 0)                          # same args, same order
    assert o != epoch_order(50, 3, 1) and o != epoch_order(50, 4, 0)
    assert len({tuple(epoch_order(50, 3, e)) for e in range(10)}) == 10
    assert torch.equal(torch.get_rng_state(), state)          # never touches the global RNG
    for bad in ((0, 1, 0), (5, -1, 0), (5, 1, -2), (5.0, 1, 0)):
        with pytest.raises(ValueError):
            epoch_order(*bad)


@pytest.mark.parametrize("n,batch,world", [(24, 4, 3), (10, 3, 2), (7, 2, 1), (5, 4, 2)])
def test_batch_indices_cover_each_epoch_exactly_once_across_ranks(n, batch, world):
    seed, steps = 11, 12
    stream = []
    for step in range(steps):
        per_rank = [batch_indices(n, batch, step, seed, rank, world) for rank in range(world)]
        assert all(len(b) == batch for b in per_rank)
        glob = [i for b in per_rank for i in b]
        assert glob == batch_indices(n, batch * world, step, seed)    # same global batch on one rank
        assert per_rank == [batch_indices(n, batch, step, seed, r, world) for r in range(world)]  # pure
        stream += glob
    epochs = [stream[e * n:(e + 1) * n] for e in range(len(stream) // n)]
    assert len(epochs) >= 2
    for e, chunk in enumerate(epochs):
        assert sorted(chunk) == list(range(n)), f"epoch {e}: {chunk}"
        assert chunk == epoch_order(n, seed, e)
    assert epochs[0] != epochs[1]


def test_batch_indices_checks_arguments():
    with pytest.raises(ValueError, match="rank"):
        batch_indices(10, 2, 0, 0, rank=2, world=2)
    with pytest.raises(ValueError, match="batch"):
        batch_indices(10, 0, 0, 0)
    with pytest.raises(ValueError, match="step"):
        batch_indices(10, 2, -1, 0)
