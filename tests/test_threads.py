"""engine.threads: the thread policy (counts, environment defaults, the knob's validation). Speed beside busy
programs is measured by bench/contention.py, not here. Everything process-global is restored after each test."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine import threads as th

ROOT = Path(__file__).resolve().parent.parent
KNOB_ENV = (th.ENV, "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "OPENCV_FOR_THREADS_NUM", "GOMP_SPINCOUNT")


@pytest.fixture(autouse=True)
def restore_threads(monkeypatch):
    """Put torch's thread count, OpenCV's, the module's state and the knob variables back as they were. The
    inter-op count can be set only once per process, so here it is recorded instead of set (the fresh-process
    test checks the real call)."""
    saved = torch.get_num_threads()
    cv2 = sys.modules.get("cv2")
    saved_cv2 = cv2.getNumThreads() if cv2 is not None else None
    saved_state = (th._torch_default, th._configured, th._policy_in_time)
    for name in KNOB_ENV:                 # monkeypatch restores each one (set or unset) after the test
        monkeypatch.setenv(name, "x")
        monkeypatch.delenv(name)
    interop = []
    monkeypatch.setattr(torch, "set_num_interop_threads", interop.append)
    yield interop
    torch.set_num_threads(saved)
    if cv2 is not None:
        cv2.setNumThreads(saved_cv2)
    th._torch_default, th._configured, th._policy_in_time = saved_state


def test_explicit_count_is_applied(restore_threads):
    assert th.configure_threads(1) == 1
    assert torch.get_num_threads() == 1
    assert restore_threads == [1]                  # the inter-op pool gets the same count
    assert th.thread_info()["threads"] == 1
    assert th.configure_threads(2) == 2            # can be changed again
    assert torch.get_num_threads() == 2


def test_opencv_follows(monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, "cv2", type(sys)("cv2"))
    sys.modules["cv2"].setNumThreads = calls.append
    th.configure_threads(1)
    assert calls == [1]


def test_string_count_is_accepted():
    assert th.configure_threads("1") == 1
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize("bad", [0, -1, "x", "", "1.5", 2.0, True])
def test_bad_argument_is_a_value_error_naming_it(bad):
    before = torch.get_num_threads()
    with pytest.raises(ValueError, match="threads"):
        th.configure_threads(bad)
    assert torch.get_num_threads() == before       # nothing applied
    assert "OMP_WAIT_POLICY" not in os.environ


@pytest.mark.parametrize("bad", ["0", "-2", "many"])
def test_bad_environment_value_names_the_variable(monkeypatch, bad):
    monkeypatch.setenv(th.ENV, bad)
    with pytest.raises(ValueError, match=th.ENV):
        th.configure_threads()
    monkeypatch.delenv(th.ENV)
    monkeypatch.setenv("OMP_NUM_THREADS", bad)
    with pytest.raises(ValueError, match="OMP_NUM_THREADS"):
        th.configure_threads()


def test_environment_knob(monkeypatch):
    monkeypatch.setenv(th.ENV, "1")
    assert th.configure_threads() == 1
    assert torch.get_num_threads() == 1
    assert os.environ["OMP_NUM_THREADS"] == "1"    # inherited by child processes


def test_argument_beats_environment(monkeypatch):
    monkeypatch.setenv(th.ENV, "2")
    assert th.configure_threads(1) == 1


def test_omp_num_threads_is_honoured_and_kept(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1,1")    # an OpenMP per-level list: the first level counts
    assert th.configure_threads() == 1
    assert os.environ["OMP_NUM_THREADS"] == "1,1"   # the user's value is not rewritten


def test_audioavatar_threads_beats_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setenv(th.ENV, "1")
    assert th.configure_threads() == 1


def test_wait_policy_defaults():
    th.configure_threads(1)
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    assert os.environ["GOMP_SPINCOUNT"] == th.DEFAULT_SPIN_COUNT
    assert os.environ["OPENCV_FOR_THREADS_NUM"] == "1"


def test_user_wait_policy_is_kept(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    monkeypatch.setenv("OPENCV_FOR_THREADS_NUM", "3")
    th.configure_threads(1)
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"          # the user's choice stands...
    assert "GOMP_SPINCOUNT" not in os.environ                 # ...with libgomp's own spin for it
    assert os.environ["OPENCV_FOR_THREADS_NUM"] == "3"


def test_user_spin_count_is_kept(monkeypatch):
    monkeypatch.setenv("GOMP_SPINCOUNT", "300000")            # the old behaviour, as bench/contention.py pins it
    th.configure_threads(1)
    assert os.environ["GOMP_SPINCOUNT"] == "300000"
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"


def test_automatic_count_is_capped_by_the_usable_cpus():
    n = th.configure_threads()
    assert 1 <= n <= th.cpu_budget()
    assert n == torch.get_num_threads()


def test_cpu_budget_respects_affinity():
    assert 1 <= th.cpu_budget() <= (os.cpu_count() or 1)
    if hasattr(os, "sched_getaffinity"):
        assert th.cpu_budget() <= len(os.sched_getaffinity(0))


def test_cgroup_quota(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert th._cgroup_quota(tmp_path) == 2                    # 1.5 CPUs -> 2 threads
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert th._cgroup_quota(tmp_path) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert th._cgroup_quota(tmp_path) == 1                    # v1, half a CPU
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert th._cgroup_quota(tmp_path) is None
    assert th._cgroup_quota(tmp_path / "missing") is None


def test_policy_in_a_fresh_process():
    """Before torch is imported (as the CLI does it): the wait policy is in the environment libgomp reads, the
    count is applied, and a user's OMP_WAIT_POLICY is kept."""
    code = ("import json; from engine.threads import configure_threads, thread_info; configure_threads(1); "
            "import torch, os; print(json.dumps([thread_info(), os.environ.get('OMP_WAIT_POLICY'), "
            "torch.get_num_threads()]))")
    env = {k: v for k, v in os.environ.items() if k not in KNOB_ENV}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    info, policy, n = json.loads(out.stdout.strip().splitlines()[-1])
    assert policy == "PASSIVE" and n == 1 and info["wait_policy_in_effect"] is True
    assert info["interop_threads"] == 1
    env["OMP_WAIT_POLICY"] = "active"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1])[1] == "active"
