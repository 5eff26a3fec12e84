"""Dataclass configs loaded from YAML with strict keys: an unknown key, a missing required key or a value of
the wrong type is a ValueError that names the file, the key and the valid keys (nanoGPT/gsplat style)."""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import TypeVar

import yaml

C = TypeVar("C")


def from_dict(cls: type[C], data: dict, source: str = "config") -> C:
    """Build dataclass `cls` from `data`, rejecting unknown keys and mistyped values."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a mapping of keys to values, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {unknown} for {cls.__name__}; valid keys: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    data = {k: _float_text(v) if hints[k] is float else v for k, v in data.items()}
    for key, value in data.items():
        want = hints[key]
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool)) if want is float else \
            isinstance(value, want) if isinstance(want, type) else True
        if want is int and isinstance(value, bool):
            ok = False
        if not ok:
            raise ValueError(f"{source}: key {key!r} expects {getattr(want, '__name__', want)}, got {value!r}")
    try:
        return cls(**data)
    except TypeError as e:  # a required key is missing
        raise ValueError(f"{source}: {e}") from e


def _float_text(value):
    """PyYAML follows YAML 1.1, which reads 1e-5 (an exponent without a dot) as the string '1e-5': such a
    string, where a float is expected, is taken as the number it spells. Anything else is returned as is."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def read_yaml(path: str | Path):
    """The YAML file's content ({} when empty); ValueError for a missing file or invalid YAML."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file not found: {path}")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML: {e}") from e


def load_config(cls: type[C], path: str | Path) -> C:
    """Read a YAML file into dataclass `cls` (strict keys)."""
    return from_dict(cls, read_yaml(path), str(path))
