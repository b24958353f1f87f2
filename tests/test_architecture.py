"""The layer rules of DESIGN.md, checked by walking every module's imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mailctl"

# Which top-level mailctl parts a part may import (besides itself and the stdlib/third parties).
ALLOWED: dict[str, set[str]] = {
    # Not protocols: commands hand core plain values (ResolvedServer, a transcript callback
    # taking models.TranscriptLine) and never build sessions themselves.
    "cli": {
        "core",
        "sink",
        "mime",
        "store",
        "config",
        "credentials",
        "models",
        "errors",
        "__init__",
    },
    "core": {"protocols", "mime", "store", "config", "credentials", "models", "errors", "sink"},
    "protocols": {"mime", "models", "errors"},
    "mime": {"models", "errors"},
    "store": {"mime", "models", "errors"},
    "sink": {"protocols", "mime", "store", "models", "errors"},
    "credentials": {"config", "models", "errors"},
    "config": {"models", "errors", "store"},
    "models": set(),
    "errors": set(),
    "__init__": set(),
    "__main__": {"cli", "__init__"},
}
# mailctl/inputs.py (bounded reads of local files and stdin) is a leaf beside models and errors:
# every layer reads its inputs through it.
ALLOWED["inputs"] = {"errors"}
# mailctl/hosts.py (the EHLO name, host:port text, the security of a port) sits beside them
# too: config checks its values with the same rules as flags and the protocol layer.
ALLOWED["hosts"] = {"models", "errors"}
for _part in ("cli", "core", "protocols", "mime", "store", "sink", "credentials", "config"):
    ALLOWED[_part] |= {"inputs", "hosts"}
UI_LIBRARIES = {"typer", "rich", "click"}
SOCKET_LIBRARIES = {"aiosmtplib", "imapclient", "poplib", "smtplib", "imaplib", "socket", "ssl"}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _part(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py") if len(relative.parts) > 1 else relative.stem


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_layer_rules(path: Path) -> None:
    part = _part(path)
    assert part in ALLOWED, f"{path}: unknown part {part!r}; add it to DESIGN.md and this test"
    for name in _imports(path):
        top = name.split(".")[0]
        if top == "mailctl":
            target = name.split(".")[1] if "." in name else "__init__"
            assert target == part or target in ALLOWED[part], f"{path} imports {name}"
        if top in UI_LIBRARIES:
            assert part == "cli", f"{path} imports {name}: only mailctl/cli may use {top}"
        if top in SOCKET_LIBRARIES:
            assert part in ("protocols", "sink"), (
                f"{path} imports {name}: sockets live in protocols/"
            )


def test_package_import_is_cheap() -> None:
    """TAB completion runs the program: importing mailctl must not pull in heavy libraries."""
    code = (
        "import sys, mailctl, mailctl.__main__; "
        "heavy = {'rich', 'aiosmtplib', 'imapclient', 'keyring', 'jinja2', 'typer'}; "
        "heavy &= set(sys.modules); "
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
