"""The validation pass's rendered messages, reused by the send loop (core/bulk/cache.py): the
bytes kept are exactly what rendering the row with its own Message-ID gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailctl.core.bulk.cache import RenderCache, stand_in_id
from mailctl.mime.template import MessageTemplate

DATE = "Fri, 27 Nov 2026 17:00:00 +0000"
TEMPLATE = (
    "From: {{ name }} <sender@{{ domain }}>\n"
    "To: <{{ email }}>\n"
    "Subject: {{ subject }}\n"
    "\n"
    "Body {{ subject }}\n"
)


@pytest.mark.parametrize(
    ("domain", "subject"),
    [
        ("example.org", "plain"),
        ("a" * 60 + ".example.org", "a long domain, so the Message-ID line is over 78 octets"),
        ("example.org", "<00000000000000000000000000000000@example.org>"),  # the stand-in
        ("example.org", "Message-ID: <00000000000000000000000000000000@example.org>"),
        ("example.org", "Grüße, ünïcode"),
    ],
)
def test_kept_bytes_equal_a_render_with_the_real_id(
    tmp_path: Path, domain: str, subject: str
) -> None:
    path = tmp_path / "t.txt"
    path.write_text(TEMPLATE, encoding="utf-8")
    template = MessageTemplate.load(path)
    fields = {"name": "Ann", "domain": domain, "email": "ann@example.net", "subject": subject}
    stand_in = stand_in_id(domain)
    real = f"<{'ab12' * 8}@{domain}>"
    cache = RenderCache()
    rendered = template.render(fields, message_id=stand_in, date=DATE)
    assert cache.put("row", rendered, stand_in, real)
    kept = cache.pop("row")
    assert kept is not None
    expected = template.render(fields, message_id=real, date=DATE)
    assert kept.data == expected.data
    assert kept.recipients == ("ann@example.net",)
    assert cache.size == 0 and cache.pop("row") is None


def test_a_length_mismatch_or_no_room_is_not_kept(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text(TEMPLATE, encoding="utf-8")
    template = MessageTemplate.load(path)
    fields = {"name": "Ann", "domain": "example.org", "email": "a@example.net", "subject": "s"}
    rendered = template.render(fields, message_id=stand_in_id("example.org"), date=DATE)
    cache = RenderCache()
    assert not cache.put("a", rendered, stand_in_id("example.org"), "<1@example.org>")
    small = RenderCache(budget=10)
    assert not small.put("a", rendered, stand_in_id("example.org"), f"<{'1' * 32}@example.org>")
    assert len(cache) == len(small) == 0
