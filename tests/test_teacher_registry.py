"""distill/teachers/registry.py: every built-in name builds its own class, names are listed, an unknown name and a
second registration are ValueErrors, and a registered factory is built with its config."""
import importlib

import pytest

from distill.teachers import make_teacher, register, teacher_names
from distill.teachers import registry


def test_every_builtin_entry_names_a_teacher_class_that_knows_its_name():
    for name, (module, cls) in registry.BUILTIN.items():
        teacher_class = getattr(importlib.import_module(module), cls)
        assert teacher_class.name == name
    assert set(registry.BUILTIN) <= set(teacher_names()) and teacher_names() == sorted(teacher_names())


def test_unknown_names_and_double_registration_are_value_errors(monkeypatch):
    monkeypatch.setattr(registry, "_EXTRA", {})
    with pytest.raises(ValueError, match=r"unknown name 'nope'; known: \['echomimic_v2'"):
        make_teacher("nope")
    with pytest.raises(ValueError, match="registered twice"):
        register("procedural", dict)
    register("mine", lambda **config: ("built", config))
    assert "mine" in teacher_names() and make_teacher("mine", a=1) == ("built", {"a": 1})
    with pytest.raises(ValueError, match="registered twice"):
        register("mine", dict)
