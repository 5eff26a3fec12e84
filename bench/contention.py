"""The engine beside other busy programs (issue: "collapse beside other programs"), one JSON document on stdout.

For each thread policy, `audioavatar animate` (bundled speech) and `audioavatar personalize` (bundled photo)
run quiet, then beside --busy CPU-bound processes that this script starts itself (and always kills). Repeats
are interleaved (policy A, policy B, A, B, ...) so that drifting background load hits every policy alike;
medians are reported. Bars: loaded animate keeps >= 45% of its quiet real-time factor, and loaded personalize
takes <= 2.5x its quiet time.

Policies (--policies, comma separated; a `:N` suffix pins N threads, e.g. new:1; `+VAR=VALUE` adds an
environment variable, e.g. new+GOMP_SPINCOUNT=1000; new+_CONTENTION_X264_THREADS=1 gives the mp4 encoder
`-threads 1`):
  new   engine.threads.configure_threads() before the CLI (what `audioavatar --threads` / AUDIOAVATAR_THREADS do):
        OMP_WAIT_POLICY=PASSIVE, GOMP_SPINCOUNT=300, one thread per usable core
  old   the behaviour before engine.threads: libgomp's default barrier, which spins ~3 ms before sleeping, pinned
        with its default GOMP_SPINCOUNT=300000 (an explicit spin count wins over OMP_WAIT_POLICY in libgomp, so
        this stays the old behaviour after the CLI applies the new policy itself); torch's default thread count.
        `old:1` is the issue's OMP_NUM_THREADS=1 workaround.

Busy processes (--busy-kind): `spin` (a Python `while True: pass`, one thread each) or `matmul` (a single-thread
numpy matmul loop, a stand-in for a local LLM). --busy-session new puts each in its own session (with kernel
autogroup scheduling, as a program started from another terminal or desktop would be); the default keeps them
in this script's session, where the kernel shares the CPU per runnable thread. What to expect: with one busy
process per core in the same session, an engine with one thread per core is owed about half of the machine, so
about half its quiet real-time factor is the ceiling (the bar asks for 45%). The matmul load also competes for
caches and memory bandwidth, so it costs the engine somewhat more than `spin`.

Every sample records the machine's load average and the mean number of other runnable threads (not this
script's busy processes, not the run's own threads) over the second before it (background_load) and while it
ran (background_load_during): both about 0 on a quiet machine, so a noisy run can be recognised; rerun on a
quiet machine for figures to quote.

Usage: python bench/contention.py [--repeats 3] [--busy 2] [--busy-kind spin] [--policies new,old]
                                  [--skip-personalize] [--skip-animate] [--avatar DIR] [--fit-steps N]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# after the path insert; engine.threads imports no torch, so no thread policy is fixed in this process
from engine.threads import cpu_budget

PHOTO = ROOT / "assets" / "astronaut.png"
SPEECH = ROOT / "assets" / "speech.wav"
ANIMATE_BAR, PERSONALIZE_BAR = 0.45, 2.5
# Environment that selects a thread policy; cleared for every run so only the policy under test applies.
POLICY_ENV = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "AUDIOAVATAR_THREADS",
              "OPENCV_FOR_THREADS_NUM", "OMP_PROC_BIND", "OMP_PLACES")
LIBGOMP_DEFAULT_SPINCOUNT = "300000"   # libgomp's spin count when OMP_WAIT_POLICY is unset (libgomp/env.c)

# The CLI, preceded by the policy. `new` calls configure_threads() first; that is what `audioavatar --threads`
# does once the CLI has the flag, and calling it twice is harmless.
LAUNCHER = """
import os, sys
if os.environ.get("_CONTENTION_CONFIGURE") == "1":
    from engine.threads import configure_threads
    configure_threads()
if os.environ.get("_CONTENTION_X264_THREADS"):      # diagnostic: the mp4 encoder's thread count
    import subprocess, types
    import engine.render.video as video
    def popen(cmd, *a, **k):
        if "libx264" in cmd:
            i = cmd.index("libx264") + 1
            cmd = cmd[:i] + ["-threads", os.environ["_CONTENTION_X264_THREADS"]] + cmd[i:]
        return subprocess.Popen(cmd, *a, **k)
    video.subprocess = types.SimpleNamespace(Popen=popen, PIPE=subprocess.PIPE)
from audioavatar.cli import main
sys.exit(main(sys.argv[1:]))
"""

BUSY = {
    "spin": "while True:\n    pass\n",
    "matmul": ("import numpy as np\nrng = np.random.default_rng(0)\na = rng.standard_normal((384, 384), np.float32)\n"
               "b = rng.standard_normal((384, 384), np.float32)\nwhile True:\n    a = np.tanh(a @ b * 0.05)\n"),
}


def policy_env(policy: str) -> dict:
    """The environment for one policy (module docstring): NAME[:THREADS][+VAR=VALUE...]."""
    base, *extra = policy.split("+")
    name, _, threads = base.partition(":")
    if name not in ("new", "old") or (threads and (not threads.isdigit() or int(threads) < 1)) \
            or any("=" not in e for e in extra):
        raise SystemExit(f"--policies: bad policy {policy!r} (expected new or old, then optionally :THREADS and "
                         "+VAR=VALUE, e.g. new:1 or new+GOMP_SPINCOUNT=1000)")
    env = {k: v for k, v in os.environ.items() if k not in POLICY_ENV}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if name == "new":
        env["_CONTENTION_CONFIGURE"] = "1"
        if threads:
            env["AUDIOAVATAR_THREADS"] = threads
    else:
        env["GOMP_SPINCOUNT"] = LIBGOMP_DEFAULT_SPINCOUNT
        if threads:
            env["OMP_NUM_THREADS"] = threads
    env.update(e.split("=", 1) for e in extra)
    return env


def _procs_running() -> int:
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("procs_running"):
                return int(line.split()[1])
    return 0


def _running_threads(pid: int) -> int:
    """Threads in state R (running or runnable) of `pid` and its descendants (the engine and its ffmpeg)."""
    n, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/stat") as f:
                    n += f.read().rpartition(")")[2].split()[0] == "R"
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except (OSError, ValueError, IndexError):
            continue
    return n


def background_load(seconds: float, own_busy: int) -> float:
    """Mean number of other runnable threads over `seconds` (sampled every 10 ms from /proc/stat's
    procs_running, less this script's busy processes and the sampler itself): about 0 on a quiet machine;
    unlike CPU utilisation it keeps counting past saturation."""
    samples, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end:
        samples.append(_procs_running())
        time.sleep(0.01)
    return round(max(0.0, statistics.mean(samples) - 1 - own_busy), 2)


class Busy:
    """n CPU-bound processes, started on enter and killed (and reaped) on exit whatever happens."""

    def __init__(self, n: int, kind: str, new_session: bool):
        self.n, self.kind, self.new_session, self.procs = n, kind, new_session, []

    def __enter__(self):
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        try:
            for _ in range(self.n):
                self.procs.append(subprocess.Popen([sys.executable, "-c", BUSY[self.kind]], env=env,
                                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                                   start_new_session=self.new_session))
        except BaseException:
            self.stop()
            raise
        time.sleep(1.0)                      # let them reach their loops
        return self

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            p.wait()
        self.procs = []

    def __exit__(self, *exc):
        self.stop()


def run_cli(args: list[str], env: dict, timeout: float, own_busy: int = 0) -> dict:
    """One CLI run in a fresh process: its JSON result, wall seconds, the CPU seconds it and its children
    (ffmpeg) used (from wait4), and background_load_during: the mean number of runnable threads that were neither
    the run's nor this script's busy processes', sampled every 50 ms while it ran."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, *args], env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err)
        deadline = t0 + timeout
        others = []
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                others.append(_procs_running() - 1 - own_busy - _running_threads(proc.pid))
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"timed out after {timeout:.0f} s: audioavatar {' '.join(args)}")
                time.sleep(0.05)
        except BaseException:                 # timeout, Ctrl-C, SIGTERM: leave no engine running
            proc.kill()
            os.wait4(proc.pid, 0)
            raise
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text = out.read().decode(errors="replace")
        if proc.returncode != 0:
            tail = err.read().decode(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(f"exit {proc.returncode}: audioavatar {' '.join(args)}\n" + "\n".join(tail))
    result = json.loads(text.strip().splitlines()[-1])
    return {"result": result, "wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "involuntary_switches": usage.ru_nivcsw,
            "background_load_during": round(max(0.0, statistics.mean(others)), 2) if others else 0.0}


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


def summarise(samples: list[dict]) -> dict:
    return {k: (round(statistics.median(s[k] for s in samples), 3) if samples else None)
            for k in ("value", "wall_s", "cpu_s", "loadavg_1m", "background_load", "background_load_during")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="runs per (policy, quiet/loaded, command); medians")
    ap.add_argument("--busy", type=int, default=cpu_budget(), help="busy processes in the loaded case "
                                                                   "(default: one per usable CPU)")
    ap.add_argument("--busy-kind", choices=sorted(BUSY), default="spin")
    ap.add_argument("--busy-session", choices=["same", "new"], default="same",
                    help="run the busy processes in this session (default) or each in a new one")
    ap.add_argument("--policies", default="new,old", help="comma-separated: new, old, new:N, old:N")
    ap.add_argument("--skip-personalize", action="store_true")
    ap.add_argument("--skip-animate", action="store_true")
    ap.add_argument("--avatar", help="avatar folder for animate (default: made by one personalize run first)")
    ap.add_argument("--fit-steps", type=int, help="personalize --fit-steps (default: the CLI's)")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds between runs (lets the load settle)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds one CLI run may take")
    args = ap.parse_args()
    if args.repeats < 1 or args.busy < 0:
        raise SystemExit("--repeats must be >= 1 and --busy >= 0")
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    envs = {p: policy_env(p) for p in policies}
    commands = [c for c in ("animate", "personalize") if not getattr(args, f"skip_{c}")]
    work = Path(tempfile.mkdtemp(prefix="contention-"))
    extra = ["--fit-steps", str(args.fit_steps)] if args.fit_steps is not None else []
    avatar = args.avatar
    print("[contention] loading the splatting extension (a first build takes minutes)...", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-c", "from cuda_ext._backend import load; load()"], env=envs[policies[0]],
                   cwd=ROOT, check=True, stdin=subprocess.DEVNULL)      # so no build lands inside a timed run
    if "animate" in commands and avatar is None:
        print("[contention] making an avatar for animate...", file=sys.stderr, flush=True)
        avatar = str(work / "avatar")
        run_cli(["personalize", str(PHOTO), "-o", avatar, *extra], envs[policies[0]], args.timeout)

    def argv(command: str, policy: str, i: int) -> list[str]:
        tag = "".join(c if c.isalnum() else "_" for c in policy)
        if command == "animate":
            return ["animate", avatar, str(SPEECH), "-o", str(work / f"talk-{tag}-{i}.mp4")]
        return ["personalize", str(PHOTO), "-o", str(work / f"avatar-{tag}-{i}"), *extra]

    samples = {p: {c: {"quiet": [], "loaded": []} for c in commands} for p in policies}
    old_term = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))     # so `finally` kills the busy ones
    try:
        for i in range(args.repeats):
            for load in ("quiet", "loaded"):
                busy = Busy(args.busy if load == "loaded" else 0, args.busy_kind, args.busy_session == "new")
                with busy:
                    for command in commands:
                        for policy in (policies if i % 2 == 0 else policies[::-1]):
                            time.sleep(args.settle)
                            bg = background_load(1.0, len(busy.procs))
                            before = loadavg()
                            run = run_cli(argv(command, policy, i), envs[policy], args.timeout, len(busy.procs))
                            value = (run["result"]["realtime_factor"] if command == "animate" else run["wall_s"])
                            sample = {"value": value, "wall_s": run["wall_s"], "cpu_s": run["cpu_s"],
                                      "involuntary_switches": run["involuntary_switches"],
                                      "loadavg_1m": before, "background_load": bg,
                                      "background_load_during": run["background_load_during"]}
                            samples[policy][command][load].append(sample)
                            print(f"[contention] {i + 1}/{args.repeats} {load:6s} {policy:6s} {command:11s} "
                                  f"{'rtf' if command == 'animate' else 'wall_s'}={value} cpu_s={run['cpu_s']} "
                                  f"load={before} background_load={bg}/{run['background_load_during']}",
                                  file=sys.stderr, flush=True)
    finally:
        signal.signal(signal.SIGTERM, old_term)
        shutil.rmtree(work, ignore_errors=True)

    report = {"machine": {"cpus": os.cpu_count(), "usable_cpus": cpu_budget(), "platform": platform.platform(),
                          "python": platform.python_version()},
              "busy": {"processes": args.busy, "kind": args.busy_kind, "session": args.busy_session},
              "repeats": args.repeats, "policies": {}}
    for policy in policies:
        entry = {}
        if "animate" in commands:
            q, l = (summarise(samples[policy]["animate"][k]) for k in ("quiet", "loaded"))
            ratio = round(l["value"] / q["value"], 3)
            entry["animate"] = {"quiet_rtf": q["value"], "loaded_rtf": l["value"], "loaded_over_quiet": ratio,
                                "bar": f">= {ANIMATE_BAR}", "passes": ratio >= ANIMATE_BAR, "quiet": q, "loaded": l,
                                "samples": samples[policy]["animate"]}
        if "personalize" in commands:
            q, l = (summarise(samples[policy]["personalize"][k]) for k in ("quiet", "loaded"))
            ratio = round(l["value"] / q["value"], 3)
            entry["personalize"] = {"quiet_s": q["value"], "loaded_s": l["value"], "loaded_over_quiet": ratio,
                                    "bar": f"<= {PERSONALIZE_BAR}", "passes": ratio <= PERSONALIZE_BAR, "quiet": q,
                                    "loaded": l, "samples": samples[policy]["personalize"]}
        report["policies"][policy] = entry
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
