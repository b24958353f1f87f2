"""The layer rules of DESIGN.md, checked by walking every module's imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mailctl"

# Which top-level mailctl parts a part may import (besides itself and the stdlib/third parties).
# Only edges some module uses: `test_every_allowance_is_used` fails on one nobody uses, so a
# layer that stops needing another loses the right to import it in the same change.
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
    "core": {"protocols", "mime", "store", "config", "credentials", "models", "errors"},
    "protocols": {"mime", "models", "errors"},
    "mime": {"models", "errors"},
    "store": {"errors"},
    "sink": {"mime", "store", "models", "errors"},
    "credentials": {"config", "models", "errors"},
    "config": {"models", "errors", "store"},
    "models": set(),
    "errors": set(),
    "__init__": set(),
    "__main__": {"cli", "__init__"},
}
# mailctl/inputs.py (bounded reads of local files and stdin) is a leaf beside models and errors:
# every layer that reads local input reads it through it.
ALLOWED["inputs"] = {"errors", "text"}
for _layer in ("cli", "core", "protocols", "mime", "sink", "credentials", "config"):
    ALLOWED[_layer].add("inputs")
# mailctl/hosts.py (the EHLO name, host:port text, the security of a port) sits beside them
# too: config checks its values with the same rules as flags and the protocol layer.
ALLOWED["hosts"] = {"models", "errors", "text"}
for _layer in ("cli", "core", "protocols", "mime", "sink", "config"):
    ALLOWED[_layer].add("hosts")
# mailctl/text.py (how text mailctl did not write is shown) and mailctl/serialize.py (results ->
# JSON data) are stdlib-only leaves.
ALLOWED["text"] = set()
ALLOWED["serialize"] = set()
for _layer in ("cli", "core", "protocols", "mime", "store", "sink", "credentials", "config"):
    ALLOWED[_layer].add("text")
for _layer in ("cli", "core", "protocols", "sink"):
    ALLOWED[_layer].add("serialize")

# cli -> protocols is banned: commands build a request, call core and render its result. Issue 7
# removes these last uses (SessionOptions, Transcript); empty the set when it has, and delete it.
CLI_MODULES_IMPORTING_PROTOCOLS: set[str] = set()

# Import cycles between modules (lazy and TYPE_CHECKING imports included) that exist today, each
# a set of module names. Issue 7 removes the cli one (cli/app.py <-> the command modules, which
# import app for the shared options and app imports them to register the commands); empty the
# list when it has. No new entry: break a new cycle instead (a `Protocol` in a small module
# both sides import, as sink/host.py does for the sink's server and connection).
KNOWN_CYCLES: list[frozenset[str]] = []

UI_LIBRARIES = {"typer", "rich", "click"}
SOCKET_LIBRARIES = {"aiosmtplib", "imapclient", "poplib", "smtplib", "imaplib", "socket", "ssl"}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _part(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py") if len(relative.parts) > 1 else relative.stem


def _module_name(path: Path) -> str:
    """mailctl/core/bench/__init__.py -> mailctl.core.bench; .../workers.py -> ...workers."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _shown(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


MODULES: dict[str, Path] = {_module_name(path): path for path in _modules()}


def _absolute(path: Path, node: ast.ImportFrom) -> str:
    """The module an ImportFrom names, relative ones ("from .x import y") resolved."""
    if node.level == 0:
        return node.module or ""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _imports(path: Path) -> list[str]:
    """Every module `path` imports anywhere: top level, in functions, under TYPE_CHECKING.

    `from package import name` counts the package and, when `name` is a module of it, that
    module too (importing a submodule through its package's face).
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(path, node)
            names.append(module)
            names.extend(
                f"{module}.{alias.name}"
                for alias in node.names
                if f"{module}.{alias.name}" in MODULES
            )
    return names


def _graph() -> dict[str, set[str]]:
    """Module -> the mailctl modules it imports (a package is its __init__, its face).

    Importing a.b.c also runs a and a.b first, but those edges are left out: a package's face
    importing its own modules is the face's job, not a cycle.
    """
    return {
        name: {target for target in _imports(path) if target in MODULES and target != name}
        for name, path in MODULES.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, targets = work[-1]
            for target in targets:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(frozenset(component))
    return found


@pytest.mark.parametrize("path", _modules(), ids=_shown)
def test_layer_rules(path: Path) -> None:
    part = _part(path)
    assert part in ALLOWED, f"{path}: unknown part {part!r}; add it to DESIGN.md and this test"
    for name in _imports(path):
        top = name.split(".")[0]
        if top == "mailctl":
            target = name.split(".")[1] if "." in name else "__init__"
            allowed = target == part or target in ALLOWED[part]
            if part == "cli" and target == "protocols":
                allowed = _shown(path) in CLI_MODULES_IMPORTING_PROTOCOLS
            assert allowed, f"{path} imports {name}"
        if top in UI_LIBRARIES:
            assert part == "cli", f"{path} imports {name}: only mailctl/cli may use {top}"
        if top in SOCKET_LIBRARIES:
            assert part in ("protocols", "sink"), (
                f"{path} imports {name}: sockets live in protocols/"
            )


@pytest.mark.parametrize("path", _modules(), ids=_shown)
def test_no_relative_imports(path: Path) -> None:
    """Absolute imports only: one spelling per module, the one the layer rules and the
    cycle check read (they resolve relative ones too, so a lifted ban stays checked)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    relative = [
        f"line {node.lineno}: from {'.' * node.level}{node.module or ''} import ..."
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level > 0
    ]
    assert not relative, f"{path}: write these as mailctl.* imports: {relative}"


def test_every_allowance_is_used() -> None:
    used: dict[str, set[str]] = {part: set() for part in ALLOWED}
    cli_protocols: set[str] = set()
    for path in _modules():
        part = _part(path)
        for name in _imports(path):
            if name.split(".")[0] == "mailctl":
                target = name.split(".")[1] if "." in name else "__init__"
                used[part].add(target)
                if part == "cli" and target == "protocols":
                    cli_protocols.add(_shown(path))
    unused = {part: sorted(ALLOWED[part] - used[part]) for part in ALLOWED}
    assert not {part: edges for part, edges in unused.items() if edges}, (
        f"allowed imports nobody uses (drop them from ALLOWED): {unused}"
    )
    stale = CLI_MODULES_IMPORTING_PROTOCOLS - cli_protocols
    assert not stale, f"{sorted(stale)} no longer import protocols: drop them from the list"


def test_no_import_cycles() -> None:
    """No two modules import each other, directly or around a loop, lazily or not."""
    cycles = _cycles(_graph())
    new = [sorted(cycle) for cycle in cycles if cycle not in KNOWN_CYCLES]
    assert not new, f"import cycles: {new}"
    gone = [sorted(cycle) for cycle in KNOWN_CYCLES if cycle not in cycles]
    assert not gone, f"these KNOWN_CYCLES are gone (or changed): drop or update them: {gone}"


def test_cycle_finder_sees_lazy_and_face_cycles() -> None:
    """The checker itself: a loop through a function-level import and a face is found."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert _cycles(graph) == [frozenset({"a", "b", "c"})]
    lazy = ast.parse("def f():\n    from mailctl.sink import config\n")
    node = next(node for node in ast.walk(lazy) if isinstance(node, ast.ImportFrom))
    assert _absolute(PACKAGE / "cli" / "x.py", node) == "mailctl.sink"
    relative = ast.parse("from ..errors import X").body[0]
    assert isinstance(relative, ast.ImportFrom)
    assert _absolute(PACKAGE / "core" / "bench" / "__init__.py", relative) == "mailctl.core.errors"
    assert _absolute(PACKAGE / "core" / "send.py", relative) == "mailctl.errors"


def _package(module: str) -> str:
    """The package a module belongs to (a package's face belongs to the package itself)."""
    path = MODULES.get(module)
    return module if path is None or path.name == "__init__.py" else module.rpartition(".")[0]


def _private_uses(path: Path) -> list[str]:
    """Private names (`_x`) `path` takes from mailctl modules: imported, or read off a
    module it imported (`mod._x`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[str] = []
    aliases: dict[str, str] = {}  # local name -> the mailctl module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = _absolute(path, node)
            if not module.startswith("mailctl"):
                continue
            for alias in node.names:
                full = f"{module}.{alias.name}"
                if full in MODULES:
                    aliases[alias.asname or alias.name] = full
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{module}.{alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("mailctl.") and alias.asname:
                    aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{aliases[node.value.id]}.{node.attr}")
    return found


@pytest.mark.parametrize("path", _modules(), ids=_shown)
def test_private_names_stay_in_their_package(path: Path) -> None:
    """A `_name` is its package's business: a module of another package never takes one."""
    package = _package(_module_name(path))
    outside = [name for name in _private_uses(path) if _package(name.rpartition(".")[0]) != package]
    assert not outside, f"{path} uses private names of another package: {outside}"


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
