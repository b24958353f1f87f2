"""What a probe found (`Finding`, `Severity`): one stable code per problem, so monitoring
can match on `code` while people read `message` and `fix`."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Severity(IntEnum):
    """Ordered so a threshold of WARNING means "severity >= WARNING"."""

    INFO = 10
    WARNING = 20
    ERROR = 30

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Finding:
    """One problem (or notable fact) about one host or domain.

    `code` is stable and dotted (`tls.expired`, `starttls.missing`, `mta_sts.mx_mismatch`);
    `subject` names what it is about (`mx1.example.org:25`, `example.org`); `fix` is one
    line telling an admin what to change, or None for info.
    """

    severity: Severity
    code: str
    subject: str
    message: str
    fix: str | None = None
