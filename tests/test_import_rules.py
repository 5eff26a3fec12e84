"""The import rules of docs/architecture.md, read from the source (every `import`, `from ... import`, and
`importlib.import_module` / `__import__` with a literal name, at any depth: lazy imports inside functions count).

    cuda_ext     imports none of engine, viewer, distill, audioavatar
    engine       imports none of distill, viewer, audioavatar, diffusers, transformers
    viewer       imports none of distill, audioavatar, diffusers, transformers
    distill      imports none of viewer, audioavatar; diffusers and transformers only under distill/teachers/
    audioavatar  the composition root: may import everything, and no package imports it (tests and bench
                 may: they drive the commands as a user does)
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cuda_ext", "engine", "viewer", "distill", "audioavatar")
FORBIDDEN = {
    "cuda_ext": {"engine", "viewer", "distill", "audioavatar"},
    "engine": {"distill", "viewer", "audioavatar", "diffusers", "transformers"},
    "viewer": {"distill", "audioavatar", "diffusers", "transformers"},
    "distill": {"viewer", "audioavatar"},
}
ONLY_UNDER = {"diffusers": "distill/teachers/", "transformers": "distill/teachers/"}   # who alone may import it


def imported_modules(source: str) -> list[tuple[int, str]]:
    """(line, dotted module) for every absolute import in the source, at any depth."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__")))):
            found.append((node.lineno, node.args[0].value))
    return found


def violations(root: Path) -> list[str]:
    """Every broken rule under root, as 'path:line: package imports module'."""
    out = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            for line, module in imported_modules(path.read_text()):
                top = module.split(".")[0]
                bad = top in FORBIDDEN.get(package, set())
                bad |= top == "audioavatar" and package != "audioavatar"
                bad |= top in ONLY_UNDER and not rel.startswith(ONLY_UNDER[top])
                if bad:
                    out.append(f"{rel}:{line}: {package} imports {module}")
    return out


def test_the_tree_keeps_the_import_rules():
    assert violations(ROOT) == []


@pytest.mark.parametrize("package, file, source", [
    ("cuda_ext", "cuda_ext/x.py", "import engine.render.gaussians\n"),
    ("engine", "engine/render/x.py", "def f():\n    from distill.view import TeacherView\n"),
    ("engine", "engine/audio/x.py", "import importlib\nm = importlib.import_module('transformers')\n"),
    ("engine", "engine/x.py", "from viewer import server\n"),
    ("viewer", "viewer/x.py", "import diffusers\n"),
    ("distill", "distill/x.py", "from transformers import AutoModel\n"),   # outside distill/teachers/
    ("distill", "distill/x.py", "from audioavatar import cli\n"),
])
def test_a_broken_rule_is_caught(tmp_path, package, file, source):
    """The checker itself: one file breaking one rule in an otherwise empty tree is reported, with its line."""
    (tmp_path / file).parent.mkdir(parents=True)
    (tmp_path / file).write_text(source)
    found = violations(tmp_path)
    assert len(found) == 1 and found[0].startswith(f"{file}:") and f"{package} imports" in found[0]


def test_allowed_imports_pass(tmp_path):
    for file, source in {"distill/teachers/t.py": "import diffusers\n", "viewer/v.py": "import engine.runtime\n",
                         "audioavatar/c.py": "import distill.pipeline\nimport viewer.server\n",
                         "engine/e.py": "import cuda_ext\nfrom . import sibling\n",
                         "tests/t.py": "from audioavatar import cli\n"}.items():
        (tmp_path / file).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / file).write_text(source)
    assert violations(tmp_path) == []
