"""MIME bombs and oversized headers (issue 10, hostile input): each stops with one clear
per-message error, in bounded time and memory; never RecursionError, never a traceback.

Each bomb is built and parsed in a child process under an address-space limit
(RLIMIT_AS), so "bounded memory" is checked by the kernel rather than estimated, and a
parser that blew up would die with MemoryError instead of taking the test machine down.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mailctl.errors import MessageParseError
from mailctl.mime.parse import ParseLimits, attachment_parts, parse_message, summarize

ROOT = Path(__file__).resolve().parent.parent
MEMORY_CAP = 1536 * 1024 * 1024  # 1.5 GiB of address space for the child, interpreter included
TIME_CAP = 60.0

# Builders, run in the child: each returns the bomb's bytes.
BUILDERS = {
    "deep_multipart": """
        head = b"From: a@x.org\\r\\n"
        for level in range(10_000):
            head += b"Content-Type: multipart/mixed; boundary=b%d\\r\\n\\r\\n--b%d\\r\\n" % (
                level, level)
        data = head + b"Content-Type: text/plain\\r\\n\\r\\nhi\\r\\n"
    """,
    "deep_rfc822": """
        data = b"From: a@x.org\\r\\nContent-Type: message/rfc822\\r\\n\\r\\n" * 10_000
        data += b"Subject: bottom\\r\\n\\r\\nhi\\r\\n"
    """,
    "million_parts": """
        data = (b"From: a@x.org\\r\\nContent-Type: multipart/mixed; boundary=b\\r\\n\\r\\n"
                + b"--b\\r\\n\\r\\nx\\r\\n" * 1_000_000 + b"--b--\\r\\n")
    """,
    "huge_base64": """
        import base64, os
        payload = os.urandom(30 * 1024 * 1024)
        data = (b"From: a@x.org\\r\\nContent-Type: application/octet-stream\\r\\n"
                b"Content-Transfer-Encoding: base64\\r\\n\\r\\n" + base64.encodebytes(payload))
    """,
    "megabyte_header_line": """
        data = b"From: a@x.org\\r\\nSubject: " + b"x" * (1024 * 1024) + b"\\r\\n\\r\\nhi\\r\\n"
    """,
    "megabyte_folded_header": """
        data = b"From: a@x.org\\r\\nSubject: x" + b"\\r\\n " + b"y" * 70 * 15_000
        data = data.replace(b"y" * 70, b"y" * 70 + b"\\r\\n ") + b"\\r\\n\\r\\nhi\\r\\n"
    """,
    "megabyte_header_in_a_part": """
        data = (b"From: a@x.org\\r\\nContent-Type: multipart/mixed; boundary=b\\r\\n\\r\\n"
                b"--b\\r\\nContent-Type: text/plain; name=" + b"n" * (1024 * 1024)
                + b"\\r\\n\\r\\nx\\r\\n--b--\\r\\n")
    """,
    "million_short_lines": """
        data = b"From: a@x.org\\r\\n\\r\\n" + b"a\\r\\n" * 5_000_000
    """,
}

CHILD = """
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))
{builder}
from mailctl.errors import MailctlError
from mailctl.mime.parse import ParseLimits, parse_message, summarize
limits = ParseLimits(**json.loads(sys.argv[1]))
started = time.perf_counter()
out = {{"size": len(data)}}
try:
    parsed = parse_message(data, limits=limits)
    out["parsed"] = {{"attachments": [[a.size, a.sha256] for a in parsed.attachments]}}
except MailctlError as err:
    out["error"] = [type(err).__name__, err.code, err.exit_code.value, err.message]
summary = summarize(data, limits=limits)
out["summary_problem"] = summary.problem
out["summary_from"] = summary.from_
out["seconds"] = time.perf_counter() - started
out["maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(out))
"""


def run_bomb(name: str, **limits: int) -> dict[str, object]:
    code = CHILD.format(cap=MEMORY_CAP, builder=textwrap.dedent(BUILDERS[name]))
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(limits)],
        capture_output=True,
        text=True,
        timeout=TIME_CAP,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize(
    ("bomb", "limits", "limit_name", "message"),
    [
        ("deep_multipart", {}, "max_depth", "nests more than 50 levels deep"),
        ("deep_rfc822", {}, "max_depth", "nests more than 50 levels deep"),
        ("million_parts", {}, "max_lines", "lines, more than 1000000"),
        # With the line count allowed, the part count stops it after 1000 parts.
        ("million_parts", {"max_lines": 10_000_000}, "max_parts", "more than 1000 MIME parts"),
        ("megabyte_header_line", {}, "max_header_line", "header line longer than 64 KiB"),
        ("megabyte_folded_header", {}, "max_headers_bytes", "header block larger than 512 KiB"),
        ("megabyte_header_in_a_part", {}, "max_header_line", "header line longer than 64 KiB"),
        ("million_short_lines", {}, "max_lines", "lines, more than 1000000"),
        ("huge_base64", {"max_part_bytes": 16 * 1024 * 1024}, "max_part_bytes", "over 16 MiB"),
    ],
)
def test_bombs_stop_with_one_clear_error(
    bomb: str, limits: dict[str, int], limit_name: str, message: str
) -> None:
    result = run_bomb(bomb, **limits)
    kind, code, exit_code, text = result["error"]  # type: ignore[misc]
    assert (kind, code, exit_code) == ("MessageParseError", "message_unparseable", 65)
    assert message in text and f"ParseLimits.{limit_name}" in text, text
    assert "\n" not in text
    # summarize never raises: the problem is named, the header fields it could read are there.
    assert result["summary_problem"] == text or limit_name == "max_part_bytes"
    if limit_name not in ("max_header_line", "max_headers_bytes", "max_part_bytes"):
        assert result["summary_from"] == "a@x.org"
    assert float(result["seconds"]) < 20  # type: ignore[arg-type]


def test_a_huge_base64_part_within_the_limits_parses_in_bounded_memory() -> None:
    result = run_bomb("huge_base64")
    assert "error" not in result, result
    (size, _sha), *_ = result["parsed"]["attachments"]  # type: ignore[index]
    assert size == 30 * 1024 * 1024
    # A 41 MiB message: the parser holds its bytes, lines and decoded payload a few times over.
    assert int(result["maxrss_kib"]) < 12 * int(result["size"]) // 1024, result  # type: ignore[arg-type]


def test_a_message_over_the_size_limit_is_refused_before_parsing() -> None:
    data = b"From: a@x.org\r\n\r\n" + b"x" * 2048
    started = time.perf_counter()
    with pytest.raises(MessageParseError, match=r"over 1 KiB \(ParseLimits.max_message_bytes\)"):
        parse_message(data, limits=ParseLimits(max_message_bytes=1024))
    with pytest.raises(MessageParseError):
        list(attachment_parts(data, limits=ParseLimits(max_message_bytes=1024)))
    summary = summarize(data, limits=ParseLimits(max_message_bytes=1024))
    assert summary.problem is not None and "max_message_bytes" in summary.problem
    assert summary.from_ == "a@x.org"
    assert time.perf_counter() - started < 1


def test_deep_nesting_in_process_raises_no_recursion_error() -> None:
    """In this process too (the recursion limit applies here): the depth limit, not a crash."""
    head = b"From: a@x.org\n"
    for level in range(10_000):
        head += b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (level, level)
    with pytest.raises(MessageParseError, match="max_depth"):
        parse_message(head + b"\nx\n")
    assert summarize(head).problem is not None
