"""MTA-STS (RFC 8461): the `_mta-sts` TXT record, the policy file, and MX pattern matching.

Pure functions over text: the lookups and the HTTPS fetch are `dns_policy`'s.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from mailctl.text import quote

# RFC 8461 3.1: sts-id = 1*32(ALPHA / DIGIT).
_ID = re.compile(r"[A-Za-z0-9]{1,32}")
# RFC 8461 3.2: max_age is at most 31557600 (about a year), 1 to 10 digits.
MAX_AGE_LIMIT = 31_557_600
# Below a day a policy protects little: a sender forgets it before the next visit (RFC 8461
# 3.2 recommends "weeks or greater").
MAX_AGE_SHORT = 86_400
# RFC 8461 3.3: senders may cap the policy body; at least 64 KiB, so that is ours.
POLICY_LIMIT = 64 * 1024
MODES = ("enforce", "testing", "none")
_POLICY_KEY = re.compile(r"[A-Za-z0-9_]{1,32}")


@dataclass(frozen=True)
class StsPolicy:
    """A parsed policy file (RFC 8461 3.2); `mx` are the patterns as written."""

    policy_id: str
    mode: str
    max_age: int
    mx: tuple[str, ...]


def sts_records(texts: Sequence[str]) -> list[str]:
    """The TXT records that are MTA-STS records: those starting "v=STSv1" (RFC 8461 3.1:
    others are ignored)."""
    return [t for t in texts if re.match(r"v=STSv1(;|\s|$)", t)]


def parse_sts_txt(text: str) -> tuple[str | None, str | None]:
    """Return (id, None) for a valid `v=STSv1; id=...;` record, or (None, why not)."""
    fields = [f.strip() for f in text.split(";")]
    if fields and fields[-1] == "":
        fields.pop()
    if not fields or fields[0] != "v=STSv1":
        return None, "the record must start with v=STSv1"
    policy_id = None
    for item in fields[1:]:
        key, sep, value = item.partition("=")
        if not sep or not key:
            return None, f"{quote(item)} is not key=value"
        if key == "id" and policy_id is None:
            if not _ID.fullmatch(value):
                return None, f"id {quote(value)} is not 1 to 32 letters and digits"
            policy_id = value
    if policy_id is None:
        return None, "the record has no id= field"
    return policy_id, None


def parse_policy(body: bytes, policy_id: str) -> tuple[StsPolicy | None, str | None]:
    """Parse a policy body (RFC 8461 3.2); return (policy, None) or (None, why not).

    Lines end in CRLF by the grammar; a bare LF is accepted as servers use it and a
    sender cannot be stricter than the big receivers without refusing working policies.
    """
    if len(body) > POLICY_LIMIT:
        return None, f"the policy is over {POLICY_LIMIT} bytes"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None, "the policy is not UTF-8 text"
    values: dict[str, str] = {}
    mx: list[str] = []
    for number, raw in enumerate(text.replace("\r\n", "\n").split("\n"), start=1):
        line = raw.strip()
        if not line:
            continue
        key, sep, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if not sep or not _POLICY_KEY.fullmatch(key):
            return None, f"line {number} is not 'key: value'"
        if key == "mx":
            mx.append(value)
        else:
            values.setdefault(key, value)
    return _policy_from(values, mx, policy_id)


def _policy_from(  # noqa: PLR0911 (one return per rule of RFC 8461 3.2)
    values: dict[str, str], mx: list[str], policy_id: str
) -> tuple[StsPolicy | None, str | None]:
    if values.get("version") != "STSv1":
        return None, "version must be STSv1"
    mode = values.get("mode")
    if mode not in MODES:
        return None, f"mode must be one of {', '.join(MODES)}"
    max_age_text = values.get("max_age", "")
    if not (max_age_text.isdigit() and len(max_age_text) <= 10):
        return None, "max_age must be a number of seconds"
    max_age = int(max_age_text)
    if max_age > MAX_AGE_LIMIT:
        return None, f"max_age {max_age} is over {MAX_AGE_LIMIT} (RFC 8461 3.2)"
    for pattern in mx:
        if not _valid_pattern(pattern):
            return None, f"mx {quote(pattern)} is not a host name or *.domain"
    if mode != "none" and not mx:
        return None, f"mode {mode} needs at least one mx: line"
    return StsPolicy(policy_id, mode, max_age, tuple(mx)), None


def _valid_pattern(pattern: str) -> bool:
    name = pattern[2:] if pattern.startswith("*.") else pattern
    labels = name.rstrip(".").split(".")
    return len(labels) >= 2 and all(
        re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", label) for label in labels
    )


def mx_matches(pattern: str, host: str) -> bool:
    """Whether MX `host` is allowed by policy `pattern` (RFC 8461 4.1).

    Case-insensitive, trailing dots ignored; "*.example.org" stands for exactly one
    leftmost label: it matches mx1.example.org, not example.org nor a.b.example.org.
    """
    pattern = pattern.rstrip(".").lower()
    host = host.rstrip(".").lower()
    if pattern.startswith("*."):
        label, dot, rest = host.partition(".")
        return bool(label) and bool(dot) and rest == pattern[2:]
    return pattern == host


def unmatched(policy: StsPolicy, hosts: Sequence[str]) -> list[str]:
    """The MX hosts no pattern of `policy` allows."""
    return [h for h in hosts if not any(mx_matches(p, h) for p in policy.mx)]
