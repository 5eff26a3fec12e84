"""Teachers by name: `make_teacher(name, **config)` builds one, `teacher_names()` lists them.

The built-in teachers are a table of where each class lives, imported only when that teacher is built (a
diffusion teacher's module brings diffusers with it). Another teacher joins with `register(name, factory)`.
The teacher modules do not import this one, so the registry and the teachers form no import loop.
"""
from __future__ import annotations

from collections.abc import Callable
from importlib import import_module

from distill.teachers.base import Teacher

BUILTIN = {                                   # name -> (module, class)
    "procedural": ("distill.teachers.procedural", "ProceduralTeacher"),
    "versa_animator": ("distill.teachers.versa", "VersaAnimatorTeacher"),
    "echomimic_v2": ("distill.teachers.echomimic_v2.teacher", "EchoMimicV2Teacher"),
    "vivid_animator": ("distill.teachers.vivid.teacher", "VividAnimatorTeacher"),
    "paha": ("distill.teachers.paha.teacher", "PAHATeacher"),
}
_EXTRA: dict[str, Callable[..., Teacher]] = {}


def register(name: str, factory: Callable[..., Teacher]) -> None:
    """Make a teacher outside this package constructible by name (factory(**config) -> Teacher)."""
    if name in BUILTIN or name in _EXTRA:
        raise ValueError(f"teacher {name!r} is registered twice")
    _EXTRA[name] = factory


def teacher_names() -> list[str]:
    return sorted({*BUILTIN, *_EXTRA})


def make_teacher(name: str, **config) -> Teacher:
    """Build a teacher by name; ValueError naming the known ones for an unknown name."""
    if name in _EXTRA:
        return _EXTRA[name](**config)
    if name not in BUILTIN:
        raise ValueError(f"teacher: unknown name {name!r}; known: {teacher_names()}")
    module, cls = BUILTIN[name]
    return getattr(import_module(module), cls)(**config)
