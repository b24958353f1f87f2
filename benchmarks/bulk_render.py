"""Per-message cost of bulk-send's fast builder against the email package, same rows, one run.

`MessageTemplate.render` (mime/compiled.py: the template's MIME skeleton compiled once, each
row's parts put in as bytes) against `MessageTemplate.reference` (the same message built as
an `EmailMessage` by mime/compose.py and serialised), for two templates:

- plain: a ~2 KB text/plain message, To/Subject/body personalised per row;
- multipart: the same text plus an HTML alternative, a static 4 KB PDF and a per-row 2 KB
  attachment (multipart/mixed around multipart/alternative).

Each figure is the median of --runs runs of --rows distinct rows; the rows cycle through
names with and without non-ASCII so both quoted-printable and 7bit bodies are exercised.
DESIGN.md: an EmailMessage costs ~3,500 us; the goal is under ~100 us (plain) and well under
1 ms (multipart). The per-row header check `render` runs is timed on its own too.

    python benchmarks/bulk_render.py
    python benchmarks/bulk_render.py --rows 500 --runs 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from mailctl.mime.compiled import check_header_block
from mailctl.mime.template import MessageTemplate

PARAGRAPH = (
    "Thank you for your order {{ order }}. We are writing to let you know that it has "
    "shipped and should arrive within three to five working days.\n"
)
TEXT = (
    "From: Example Shop <shop@example.org>\n"
    "To: {{ mailbox(name, email) }}\n"
    "Subject: Your order {{ order }} has shipped, {{ name }}\n"
    "X-Campaign: autumn-2025\n"
    "{attach}\n"
    "Dear {{ name }},\n\n" + PARAGRAPH * 13 + "\nKind regards,\nThe Example Shop\n"
)
HTML = "<html><body><p>Dear {{ name }},</p>\n" + ("<p>" + PARAGRAPH + "</p>\n") * 13 + "</body>"
NAMES = ["Bob Smith", "Zoë Ünal", "Smith, John", "Ann"]


def rows(count: int) -> list[dict[str, str]]:
    return [
        {
            "name": NAMES[i % len(NAMES)],
            "email": f"user{i}@example.com",
            "order": str(10000 + i),
            "invoice": f"inv-{i % 10}.pdf",
        }
        for i in range(count)
    ]


def per_message(build: Callable[..., object], data: list[dict[str, str]], runs: int) -> float:
    """Median over runs of the mean microseconds per message."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        for number, fields in enumerate(data):
            build(fields, message_id=f"<{number}.bench@example.org>")
        samples.append((time.perf_counter() - start) / len(data) * 1e6)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "brochure.pdf").write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 16)
        (folder / "invoices").mkdir()
        for i in range(10):
            (folder / "invoices" / f"inv-{i}.pdf").write_bytes(b"%PDF" + bytes([i]) * 2048)
        (folder / "plain.txt").write_text(TEXT.replace("{attach}", ""), encoding="utf-8")
        attach = "Attachment: brochure.pdf\nAttachment: invoices/{{ invoice }}\n"
        (folder / "multi.txt").write_text(TEXT.replace("{attach}", attach), encoding="utf-8")
        (folder / "multi.html").write_text(HTML, encoding="utf-8")
        plain = MessageTemplate.load(folder / "plain.txt")
        multi = MessageTemplate.load(folder / "multi.txt", html_path=folder / "multi.html")
        data = rows(args.rows)
        few = data[: max(args.rows // 10, 20)]  # the reference is slow; fewer rows suffice
        size = len(plain.render(data[0], message_id="<x@example.org>").data)
        print(f"rows: {args.rows} (reference: {len(few)}), runs: {args.runs}, median us/message")
        print(f"{'template':<28}{'render':>10}{'reference':>12}{'ratio':>9}")
        for label, template in ((f"plain ({size} bytes)", plain), ("multipart + 2 files", multi)):
            fast = per_message(template.render, data, args.runs)
            slow = per_message(template.reference, few, args.runs)
            print(f"{label:<28}{fast:>10.1f}{slow:>12.1f}{slow / fast:>8.1f}x")
        head = plain.render(data[1], message_id="<x@example.org>").data.split(b"\r\n\r\n")[0]
        head += b"\r\n"
        fields = head.count(b"\r\n") - head.count(b"\r\n ")
        loops = 20000
        start = time.perf_counter()
        for _ in range(loops):
            check_header_block(head, fields=fields)
        check_us = (time.perf_counter() - start) / loops * 1e6
        print(f"per-row header check (part of render): {check_us:.1f} us")


if __name__ == "__main__":
    main()
