"""The README's `mailctl probe` walk-through, run as written from a fresh HOME: mailctl's sink
with its kept certificate nobody trusts yet, the probe naming that problem with its fix, the
probe trusting the sink's CA (no findings), and `--json --fail-on error` in a shell `if`.

Helpers (fresh HOME and XDG folders, a `mailctl` shim, a bounded run) come from
tests/test_readme_walkthrough.py; only the port (2525) is swapped for a free one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from test_readme_walkthrough import ROOT, _environment, _free_port, _run

MARK = "mailctl probe 127.0.0.1:2525 --protocol submission\n"


def probe_block() -> str:
    """The ```sh block of README.md that starts the sink and probes it."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```sh\n(.*?)^```$", readme, flags=re.MULTILINE | re.DOTALL)
    found = [block for block in blocks if MARK in block and "mailctl sink" in block]
    assert len(found) == 1, "README.md must hold exactly one probe walk-through block"
    return found[0]


def test_the_readme_probe_walkthrough_runs_as_written(tmp_path: Path) -> None:
    block = probe_block()
    assert "--json --fail-on error" in block and "if " in block, "show it in a shell if"
    script = block.replace("2525", str(_free_port()))
    env = _environment(tmp_path)
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    result = _run(script, cwd=checkout, env=env)
    out = result.stdout
    assert result.returncode == 0, f"{out}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    # The untrusted certificate, named with its fix, as the README shows it.
    # Every output line the README shows ("# " + the line) is printed as shown (at 80
    # columns: no terminal, no $COLUMNS).
    lines = out.splitlines()
    shown = [line[2:] for line in block.splitlines() if line.startswith("#  ")]
    assert len(shown) >= 5
    for line in shown:
        assert line in lines, (line, out)
    assert "fix: use a certificate from a public CA" in out
    assert "  no findings" in out  # the second probe, trusting the sink's CA
    # The shell `if` took the branch --fail-on error gives for the untrusted certificate,
    # and the JSON it wrote is the envelope.
    assert "probe found errors (exit 1)" in out, out
    written = next((tmp_path / "tmp").glob("*/probe.json"))
    envelope = json.loads(written.read_text())
    assert (envelope["status"], envelope["exit_code"]) == ("partial", 1)
    codes = {f["code"] for h in envelope["data"]["hosts"] for f in h["findings"]}
    assert "cert.self_signed" in codes
    assert "mailctl sink:" in result.stderr  # stopped at the end of the block
    assert list(checkout.iterdir()) == []
