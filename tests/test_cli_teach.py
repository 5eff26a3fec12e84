"""`audioavatar teach`: a teacher's talking video of a photo, written as mp4 with the audio; bad inputs are one
line and exit code 2."""
from pathlib import Path

import pytest

pytest.importorskip("mediapipe", reason="mediapipe is installed by scripts/setup.sh")
from audioavatar import cli  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def test_teach_writes_a_talking_mp4(tmp_path, capsys):
    import soundfile as sf
    from PIL import Image

    photo = tmp_path / "me.png"
    Image.open(ROOT / "assets" / "astronaut.png").resize((192, 192)).save(photo)
    wav = tmp_path / "say.wav"
    data, rate = sf.read(str(ROOT / "assets" / "speech.wav"))
    sf.write(str(wav), data[: rate * 2], rate)
    out = tmp_path / "clip.mp4"
    assert cli.main(["teach", str(photo), str(wav), "-o", str(out)]) == 0
    assert out.is_file() and out.stat().st_size > 1000
    assert '"frames": 50' in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["teach", "nope.png", "x.wav", "-o", "o.mp4"], "no such photo file"),
    (["teach", str(ROOT / "assets" / "astronaut.png"), str(ROOT / "assets" / "speech.wav"), "-o", "o.avi"],
     "expected a .mp4 path"),
    (["teach", str(ROOT / "assets" / "astronaut.png"), str(ROOT / "assets" / "speech.wav"), "-o", "o.mp4",
      "--teacher", "nobody"], "unknown name 'nobody'"),
])
def test_teach_bad_input(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
