"""How many threads the engine computes with, and how they wait: a good neighbour on a shared CPU.

The engine's heavy work runs on torch's intra-op pool, which is OpenMP (the libgomp that torch bundles); the
splatting extension (cuda_ext/csrc/cpu) schedules its loops with at::parallel_for on that same pool, and MKL
and oneDNN use it too, so one setting governs all of them. A fork/join pool only finishes a parallel region
when its slowest thread does. libgomp's default is to *spin* for a while at every barrier; beside other busy
programs the spinning thread uses up its time slice waiting for a partner the scheduler has put off, and the
kernel then treats it as a CPU hog rather than a thread that just woke up, so the partner waits a whole
scheduling period. With two busy processes on two cores that made `animate` ten times slower. A thread that
*sleeps* at the barrier (OMP_WAIT_POLICY=PASSIVE) is woken promptly and the engine degrades to its fair share.
Measured with bench/contention.py (quiet and beside busy processes; before/after).

The policy, applied by configure_threads() (the CLI calls it first, before torch is imported):

- OMP_WAIT_POLICY=PASSIVE with GOMP_SPINCOUNT=300: an idle pool thread spins a few microseconds (enough for
  the next op of a tight sequence) and then sleeps, instead of spinning for milliseconds. libgomp reads both once,
  when it is loaded (at `import torch`), so they only take effect if configure_threads() runs before that.
  Values the user has set are left alone (if only OMP_WAIT_POLICY is set, GOMP_SPINCOUNT is not added);
  GOMP_SPINCOUNT=300000 gives back the old behaviour exactly.
- threads: torch's default (one per core) capped by the CPUs this process may run on (sched affinity) and by a
  cgroup CPU quota (containers), so a `--cpus 2` container on a big machine does not start a pool per host core.
- the same count for torch's inter-op pool (when it can still be set), OpenCV (cv2.setNumThreads if cv2 is
  loaded; OPENCV_FOR_THREADS_NUM for a later import) and child processes that honour OMP_NUM_THREADS.

The knob, from strongest to weakest:
    configure_threads(N)                   (the CLI's global `--threads N`)
    AUDIOAVATAR_THREADS=N                  (environment: the server, library users, subprocesses)
    OMP_NUM_THREADS=N                      (the usual OpenMP variable, honoured as well)
    automatic                              (see above)
N is a positive integer; 1 is the most polite (no fork/join at all) and costs quiet-machine speed.
"""
from __future__ import annotations

import contextlib

import math
import os
import sys
from pathlib import Path

ENV = "AUDIOAVATAR_THREADS"
WAIT_ENV = "OMP_WAIT_POLICY"
SPIN_ENV = "GOMP_SPINCOUNT"
DEFAULT_WAIT_POLICY = "PASSIVE"
# libgomp's busy-wait before sleeping, in its spin-loop iterations (~100 per microsecond by its own estimate).
# Its default, when OMP_WAIT_POLICY is unset, is 300000 (milliseconds); PASSIVE alone makes it 0. A few
# microseconds catch the next parallel region of a tight sequence of small ops without giving up the time
# slice: quiet, 300 rendered as fast as the spinning default (PASSIVE alone was ~4% slower), and beside two busy
# processes it kept the most of its speed of 0, 100, 300, 1000 and 3000 (10000 already collapsed at times).
DEFAULT_SPIN_COUNT = "300"

_torch_default: int | None = None   # torch's own intra-op default, read the first time configure_threads runs
_configured: int | None = None
_policy_in_time: bool | None = None  # did the first call come before libgomp was loaded (or the user set it)?


def _parse(value, name: str) -> int:
    """A positive thread count from an int or a decimal string; ValueError naming `name` otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{name}: expected a positive integer thread count, got {value!r}")  # noqa: TRY004
    if isinstance(value, str):
        text = value.strip()
        if not text.isdigit():
            raise ValueError(f"{name}: expected a positive integer thread count, got {value!r}")
        value = int(text)
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected a positive integer thread count, got {value!r}")
    return value


def cpu_budget() -> int:
    """CPUs this process may use: its scheduler affinity, capped by a cgroup v2/v1 CPU quota if one is set."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        n = min(n, quota)
    return max(1, n)


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """ceil(quota / period) from the cgroup CPU controller (v2 cpu.max, else v1), or None when unlimited/unknown."""
    try:
        fields = (root / "cpu.max").read_text().split()              # v2: "max 100000" or "200000 100000"
        if len(fields) == 2 and fields[0] != "max":
            return max(1, math.ceil(int(fields[0]) / int(fields[1])))
        return None
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())    # v1: -1 when unlimited
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return max(1, math.ceil(quota / period)) if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def requested_threads(threads: int | str | None = None) -> int | None:
    """The count asked for: `threads`, else $AUDIOAVATAR_THREADS, else $OMP_NUM_THREADS; None = automatic.
    ValueError (naming the argument or variable) for anything but a positive integer."""
    if threads is not None:
        return _parse(threads, "threads")
    for name in (ENV, "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value:
            if name == "OMP_NUM_THREADS":
                value = value.split(",")[0]                # OpenMP allows a per-level list: "4,2"
            return _parse(value, name)
    return None


def set_env_defaults() -> dict:
    """The settings that must be in the environment before libgomp loads (before `import torch`), each only
    if the user has not set it. Returns what was set."""
    done = {}
    user_policy, user_spin = os.environ.get(WAIT_ENV), os.environ.get(SPIN_ENV)
    if not user_policy:
        os.environ[WAIT_ENV] = done[WAIT_ENV] = DEFAULT_WAIT_POLICY
        if not user_spin:                    # a user's OMP_WAIT_POLICY alone keeps libgomp's spin for it
            os.environ[SPIN_ENV] = done[SPIN_ENV] = DEFAULT_SPIN_COUNT
    return done


def configure_threads(threads: int | str | None = None) -> int:
    """Apply the thread policy (module docstring) and return the intra-op thread count now in use.

    Call it as early as possible: the wait policy only applies if torch is not imported yet (the CLI calls it
    before any other engine import). Calling it again changes the count; the wait policy stays as first loaded."""
    global _torch_default, _configured, _policy_in_time
    asked = requested_threads(threads)                      # validate before touching anything
    if _policy_in_time is None:
        _policy_in_time = "torch" not in sys.modules or bool(os.environ.get(WAIT_ENV))
    set_env_defaults()
    import torch

    if _torch_default is None:
        _torch_default = torch.get_num_threads()
    n = asked if asked is not None else max(1, min(_torch_default, cpu_budget()))
    os.environ.setdefault("OPENCV_FOR_THREADS_NUM", str(n))
    if threads is not None or os.environ.get(ENV, "").strip() or not os.environ.get("OMP_NUM_THREADS"):
        os.environ["OMP_NUM_THREADS"] = str(n)              # children (workers, subprocess tools) inherit it
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)                    # only allowed before any inter-op work has started
    except RuntimeError:
        pass
    cv2 = sys.modules.get("cv2")
    if cv2 is not None and hasattr(cv2, "setNumThreads"):
        cv2.setNumThreads(n)
    _configured = n
    return n


def thread_info() -> dict:
    """What is in effect, for logs and bench JSON."""
    import torch

    return {"threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
            "wait_policy": os.environ.get(WAIT_ENV, "(libgomp default: spin, then sleep)"),
            "spin_count": os.environ.get(SPIN_ENV, "(libgomp default)"),
            "wait_policy_in_effect": bool(_policy_in_time), "cpu_budget": cpu_budget(), "configured": _configured}


@contextlib.contextmanager
def one_thread():
    """Run the block on one torch thread, then restore the count: for small sequential work whose result must
    not depend on how a pool split its sums (the body fit: 2 threads gave a different avatar on every run)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
