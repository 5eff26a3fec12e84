"""The avatar a bench measures: the one given, or the bundled photo personalized into a temporary folder."""
from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def avatar_folder(given: str | None) -> Iterator[str]:
    """`given`, or assets/astronaut.png personalized with the default config (about 30 s) into a temporary
    folder that is removed on exit."""
    if given is not None:
        yield given
        return
    from engine.avatar.personalize import personalize
    with tempfile.TemporaryDirectory() as tmp:
        yield str(personalize(ROOT / "assets" / "astronaut.png", progress=False).save_pretrained(Path(tmp) / "a"))
