"""engine.pretrained's atomic writer, the one every saver uses: a folder that is not ours is never replaced,
a killed writer's leftovers are cleaned (or, when the kill fell mid-swap, the old folder is put back), and a
write still running in another process is left alone."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from engine.pretrained import atomic_dir_write, check_replaceable, clean_stale

from test_avatar_bundle import tiny_avatar

ROOT = Path(__file__).resolve().parent.parent


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _write(text: str):
    def write(tmp: Path) -> None:
        (tmp / "marker.json").write_text(text)
    return write


def test_a_strangers_folder_is_refused_and_left_intact(tmp_path):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"my only copy")
    with pytest.raises(ValueError, match="holds no avatar.json"):
        tiny_avatar().save_pretrained(out)
    assert [p.name for p in out.iterdir()] == ["holiday.jpg"]
    assert (out / "holiday.jpg").read_bytes() == b"my only copy"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]         # no temporary folder left
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        check_replaceable(tmp_path / "a_file", "avatar.json")


def test_empty_folder_and_own_output_are_replaced(tmp_path):
    (tmp_path / "empty").mkdir()
    atomic_dir_write(tmp_path / "empty", _write("1"), marker="marker.json")
    assert (tmp_path / "empty" / "marker.json").read_text() == "1"
    (tmp_path / "empty" / "extra").write_text("ours: the folder holds our marker")
    atomic_dir_write(tmp_path / "empty", _write("2"), marker="marker.json")
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == ["marker.json"]
    assert (tmp_path / "empty" / "marker.json").read_text() == "2"


def test_a_writer_that_forgets_the_marker_changes_nothing(tmp_path):
    atomic_dir_write(tmp_path / "out", _write("1"), marker="marker.json")
    with pytest.raises(RuntimeError, match="left no marker.json"):
        atomic_dir_write(tmp_path / "out", lambda tmp: (tmp / "other").write_text("x"), marker="marker.json")
    assert (tmp_path / "out" / "marker.json").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_leftovers_of_a_dead_writer_are_cleaned_and_a_live_ones_kept(tmp_path):
    dead, target = _dead_pid(), tmp_path / "out"
    stale_dir = tmp_path / f".out.tmp-{dead}-0123abcd"
    stale_dir.mkdir()
    (stale_dir / "half.bin").write_bytes(b"half")
    stale_file = tmp_path / f".out.tmp-{dead}-89abcdef"
    stale_file.write_bytes(b"half")
    live = tmp_path / f".out.tmp-{os.getpid()}-00000000"                  # this process: still writing
    live.mkdir()
    other = tmp_path / f".other.tmp-{dead}-00000000"                       # another target's: not ours to judge
    other.mkdir()
    atomic_dir_write(target, _write("new"), marker="marker.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", live.name, other.name])


def test_a_kill_between_the_two_renames_restores_the_old_folder(tmp_path):
    old = tmp_path / f".out.old-{_dead_pid()}-0123abcd"                   # target moved aside, then killed
    old.mkdir()
    (old / "marker.json").write_text("previous")
    assert clean_stale(tmp_path / "out") == [old]
    assert (tmp_path / "out" / "marker.json").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_kill_9_during_a_save_then_a_good_run_leaves_nothing_behind(tmp_path):
    """A real kill -9 of a process inside write(); the next save cleans its temp folder and succeeds."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from engine.pretrained import atomic_dir_write
        def write(tmp):
            (tmp / "part.bin").write_bytes(b"x" * 1000)
            print("writing", flush=True)
            time.sleep(60)
        atomic_dir_write(Path({str(tmp_path / 'out')!r}), write, marker="marker.json")
    """)
    atomic_dir_write(tmp_path / "out", _write("first"), marker="marker.json")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.tmp-")]
    assert len(left) == 1 and (tmp_path / "out" / "marker.json").read_text() == "first"
    time.sleep(0.01)
    atomic_dir_write(tmp_path / "out", _write("second"), marker="marker.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (tmp_path / "out" / "marker.json").read_text() == "second"


def test_cli_personalize_onto_a_strangers_folder_exits_2_before_any_work(tmp_path, capsys):
    from audioavatar.cli import main
    out = tmp_path / "docs"
    out.mkdir()
    (out / "thesis.tex").write_text("five years")
    assert main(["personalize", str(ROOT / "assets" / "astronaut.png"), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds no avatar.json" in err[0], err
    assert [p.name for p in out.iterdir()] == ["thesis.tex"] and (out / "thesis.tex").read_text() == "five years"
