"""What tests/test_pipecat.py and tests/test_livekit.py share: the agent framework's own environment
(.venv-pipecat, .venv-livekit: scripts/setup_agents.sh, which scripts/setup.sh test runs; the frameworks need
protobuf 5, which the engine's mediapipe cannot share), a test server for it to reach, and a script run there."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from test_server import Running

ROOT = Path(__file__).resolve().parent.parent


def python_of(framework: str) -> Path:
    return ROOT / f".venv-{framework}" / "bin" / "python"


def needs(framework: str) -> list:
    """Skip marks: that framework's environment, and espeak-ng (the speech the scripts feed it)."""
    return [pytest.mark.skipif(not python_of(framework).is_file(),
                               reason=f".venv-{framework} is missing (scripts/setup_agents.sh makes it)"),
            pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng absent (apt install espeak-ng)")]


@pytest.fixture(scope="module")
def server(avatar):
    s = Running(avatar, max_sessions=2)
    yield s
    s.close()


def run_script(framework: str, script: Path, *args: str) -> dict:
    """Run `script` with the framework's Python; its last stdout line, parsed as JSON."""
    out = subprocess.run([str(python_of(framework)), str(script), *args], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])
