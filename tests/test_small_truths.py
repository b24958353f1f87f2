"""Small statements the README and the packaging make, checked: every error code has a hint
(or a reason it has none), bench's regression hint, `sink --listen localhost`, the SPDX
license string."""

from __future__ import annotations

import ast
import inspect
import json
import tomllib
from pathlib import Path

from servers.hostile import run_mailctl

from mailctl import errors

ROOT = Path(__file__).resolve().parent.parent

# Codes whose errors may be raised without a hint, and why. Every other code must have one
# at least where it is raised with a fixed cause (the scan below).
NO_HINT_NEEDED = {
    "internal_error": "the base class: its one use is the bug report, which has a hint",
    "temporary_failure": "a base class: its subclasses carry the cause-specific hints",
}
# Codes with one cause, hence one fix: every place that raises them must give a hint.
ALWAYS_HINTED = {
    "performance_regression",
    "plaintext_auth_refused",
    "config_insecure",
    "keyring_unavailable",
    "outcome_unknown",
    "input_too_large",
    "response_limit",
    "auth_unsupported",
}


def _error_classes() -> dict[str, type[errors.MailctlError]]:
    return {
        name: cls
        for name, cls in vars(errors).items()
        if inspect.isclass(cls) and issubclass(cls, errors.MailctlError)
    }


def _constructions() -> dict[str, list[tuple[str, bool]]]:
    """Each error class -> (where, gives a hint) for every `ClassName(...)` in mailctl/."""
    classes = _error_classes()
    found: dict[str, list[tuple[str, bool]]] = {name: [] for name in classes}
    for path in sorted((ROOT / "mailctl").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            if node.func.id in classes:
                # `fixes=` is a hint the command words (cli/hints.py); `**kwargs` may carry
                # either: counted as given
                hinted = any(k.arg in ("hint", "fixes", None) for k in node.keywords)
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                found[node.func.id].append((where, hinted))
    return found


def test_every_error_code_has_a_hint_or_a_reason_not_to() -> None:
    constructions = _constructions()
    missing = []
    for name, cls in _error_classes().items():
        sites = constructions[name]
        if cls.code in NO_HINT_NEEDED:
            continue
        if cls.code in ALWAYS_HINTED:
            missing += [f"{cls.code} at {where}" for where, hinted in sites if not hinted]
        elif sites and not any(hinted for _, hinted in sites):
            missing.append(f"{cls.code}: no place that raises it gives a hint")
    assert not missing, "errors without a hint:\n" + "\n".join(missing)


def test_bench_regression_names_the_fix(tmp_path: Path) -> None:
    env = {"MAILCTL_CONFIG": str(tmp_path / "none.toml")}
    bench = ["bench", "--messages", "20", "--mode", "reuse"]
    first = run_mailctl(*bench, "--json", env=env)
    assert first.returncode == 0, first.stderr
    saved = json.loads(first.stdout)
    for run in saved["data"]["runs"]:
        run["qps"] = run["qps"] * 1000  # a baseline no machine can meet
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps(saved))

    checked = run_mailctl(*bench, "--baseline", str(baseline), "--json", env=env)
    assert checked.returncode == 79, checked.stdout
    [error] = [e for e in json.loads(checked.stdout)["errors"] if e["code"] != "interrupted"]
    assert error["code"] == "performance_regression"
    assert error["hint"] and "baseline" in error["hint"]

    human = run_mailctl(*bench, "--baseline", str(baseline), "-q", env=env)
    assert human.returncode == 79 and human.stdout == ""
    [line] = human.stderr.splitlines()
    assert line.startswith("mailctl: performance regressed") and error["hint"] in line


def test_sink_listen_localhost_is_loopback(tmp_path: Path) -> None:
    """README: `localhost` is the one host name --listen takes; it means 127.0.0.1 (no lookup)."""
    env = {"MAILCTL_CONFIG": str(tmp_path / "none.toml")}
    for listen in ("localhost:0", "LocalHost:0"):
        run = run_mailctl("sink", "--listen", listen, "--duration", "0.2", "--json", env=env)
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)["data"]["listen"].startswith("127.0.0.1:")
    named = run_mailctl("sink", "--listen", "mail.example.com:0", "--json", env=env)
    assert named.returncode == 64
    assert "host name" in json.loads(named.stdout)["errors"][0]["message"]


def test_license_is_an_spdx_string_with_a_setuptools_that_reads_it() -> None:
    """PEP 639: a TOML-table license is deprecated in setuptools (removed after 2027-02-18);
    `license = "MIT"` needs setuptools 77 or later."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["license"] == "MIT"
    requires = project["build-system"]["requires"]
    floors = [r for r in requires if r.replace(" ", "").startswith("setuptools>=")]
    assert floors, requires
    version = floors[0].split(">=", 1)[1].split(",")[0]
    assert tuple(int(part) for part in version.split(".")[:1]) >= (77,)
    assert not any(
        c.startswith("License ::") for c in project["project"].get("classifiers", [])
    )  # PEP 639: license classifiers are deprecated beside an expression


def test_bench_message_size_is_the_size_sent(tmp_path: Path) -> None:
    """bench --message with an LF-only file: the report counts the CRLF bytes that are sent
    (what SIZE counts and the server stores), not the file's size."""
    message = tmp_path / "lf.eml"
    lf = b"From: a@example.org\nTo: b@example.org\nSubject: lf\n\nbody\n.dot line\n"
    message.write_bytes(lf)
    env = {"MAILCTL_CONFIG": str(tmp_path / "none.toml")}
    run = run_mailctl(
        "bench", "--messages", "5", "--mode", "reuse", "--message", str(message), "--json", env=env
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["data"]["workload"]["message_size"] == len(lf) + lf.count(b"\n")
