"""Authentication-Results fields (RFC 8601) as verdicts: SPF, DKIM, DMARC, ARC, ..."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from mailctl.mime.parse.decode import header_text
from mailctl.mime.parse.model import AuthVerdict

__all__ = ["auth_verdicts"]

MAX_FIELDS: Final = 50
MAX_VERDICTS: Final = 200
_COMMENT: Final = re.compile(r"\([^()]*\)")  # RFC 5322 CFWS; nested ones are peeled in turns
_QUOTED: Final = r'"(?:[^"\\]|\\.)*"'
# A token: a quoted string, the ';' between resinfo statements, key=value, or a bare word.
_TOKEN: Final = re.compile(
    rf'{_QUOTED}|;|[^\s;"=]+\s*=\s*(?:{_QUOTED}|[^\s;"]*)|[^\s;"]+'
)  # fmt: skip


def auth_verdicts(values: Sequence[str]) -> tuple[AuthVerdict, ...]:
    """The verdicts of each Authentication-Results value, in header order (newest first).

    Only the fields a server of the recipient added can be trusted (RFC 8601 5): check
    `authserv_id` against your own before relying on a verdict.
    """
    out: list[AuthVerdict] = []
    for raw in values[:MAX_FIELDS]:
        out.extend(_verdicts(header_text(raw)))
        if len(out) >= MAX_VERDICTS:
            return tuple(out[:MAX_VERDICTS])
    return tuple(out)


def _verdicts(text: str) -> list[AuthVerdict]:
    for _ in range(3):
        text = _COMMENT.sub(" ", text)
    statements: list[list[str]] = [[]]
    for word in _TOKEN.findall(text):
        if word == ";":
            statements.append([])
        else:
            statements[-1].append(word)
    head, *rest = statements
    if not head:
        return []
    authserv_id = head[0]
    out: list[AuthVerdict] = []
    for statement in rest:
        pairs = [_pair(token) for token in statement]
        if not pairs or pairs[0] is None:
            continue  # "none" (RFC 8601 2.2: no method was applied) or noise
        method, result = pairs[0]
        properties = {key: value for pair in pairs[1:] if pair is not None for key, value in [pair]}
        out.append(
            AuthVerdict(
                authserv_id=authserv_id,
                method=method.partition("/")[0].lower(),
                result=result.lower(),
                properties=properties,
            )
        )
    return out


def _pair(token: str) -> tuple[str, str] | None:
    key, equals, value = token.partition("=")
    if not equals:
        return None
    value = value.strip()
    if value.startswith('"') and value.endswith('"') and len(value) >= 2:
        value = re.sub(r"\\(.)", r"\1", value[1:-1])
    return key.strip(), value
