"""IMAP SEARCH criteria (`SearchCriteria`): validated values -> the argument list of UID SEARCH.

imapclient sends a criteria value inline, CR and LF included (its issue #657), so one value
could carry a second IMAP command: every value is checked here before anything is sent.
Non-ASCII values go with `CHARSET UTF-8` (RFC 3501 6.4.4), which imapclient sends as
literals, so they are never quoted inline either.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date

from mailctl.errors import HeaderInjectionError, UsageError
from mailctl.text import quote

_FORBIDDEN = "\r\n\0"


@dataclass(frozen=True)
class SearchCriteria:
    """What to select in a folder; the fields are ANDed (RFC 3501 6.4.4). Nothing set: ALL.

    `uid_range`: an IMAP sequence set of UIDs ("100:200", "5,9,12:*"). `raw`: a SEARCH
    expression given as is (ASCII only), ANDed with the rest.
    """

    unseen: bool = False
    since: date | None = None
    before: date | None = None
    from_: str | None = None
    to: str | None = None
    subject: str | None = None
    text: str | None = None
    larger: int | None = None
    smaller: int | None = None
    uid_range: str | None = None
    raw: str | None = None

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, str) and any(char in value for char in _FORBIDDEN):
                raise HeaderInjectionError(
                    f"the search value for {_flag(item.name)} contains a CR, LF or NUL "
                    f"character: {quote(value)}",
                    hint="a search value is one line of text",
                )
        for name in ("larger", "smaller"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise UsageError(f"{_flag(name)} must not be negative", hint="give octets")
        if self.uid_range is not None and not _is_sequence_set(self.uid_range):
            raise UsageError(
                f"--uid {quote(self.uid_range)} is not a UID set",
                hint="write N, N:M, N:* or a comma list of those",
            )
        if self.raw is not None and not self.raw.isascii():
            raise UsageError(
                "--search takes an ASCII IMAP expression",
                hint="use --from/--to/--subject/--text for non-ASCII values",
            )

    @property
    def charset(self) -> str | None:
        """ "UTF-8" when a value is not ASCII (sent with CHARSET), else None."""
        values = (self.from_, self.to, self.subject, self.text)
        return "UTF-8" if any(v is not None and not v.isascii() for v in values) else None

    def words(self) -> list[bytes]:
        """The arguments of UID SEARCH, each one IMAP word (RFC 3501 6.4.4, 9).

        Keywords, numbers and UID sets as they are, dates as RFC 3501 dates, ASCII text as
        a quoted string (never an atom, which `{5}` or `(` would turn into a literal or a
        list), non-ASCII text as raw UTF-8 that imapclient sends as a literal after
        `CHARSET UTF-8`; `raw` last, in parentheses.
        """
        words: list[bytes] = [b"CHARSET", b"UTF-8"] if self.charset else []
        for key, value in self._pairs():
            words.append(key.encode("ascii"))
            if isinstance(value, date):
                words.append(f"{value.day}-{_MONTHS[value.month - 1]}-{value.year}".encode())
            elif isinstance(value, int) or key == "UID":
                words.append(str(value).encode("ascii"))
            elif value is not None and value.isascii():
                escaped = value.replace("\\", "\\\\").replace('"', '\\"')
                words.append(f'"{escaped}"'.encode("ascii"))
            elif value is not None:
                words.append(value.encode("utf-8"))
        if self.raw is not None:
            words.append(f"({self.raw})".encode("ascii"))
        return words if len(words) > (2 if self.charset else 0) else [b"ALL"]

    def _pairs(self) -> list[tuple[str, str | int | date | None]]:
        pairs: list[tuple[str, str | int | date | None]] = []
        if self.uid_range is not None:
            pairs.append(("UID", self.uid_range))
        if self.unseen:
            pairs.append(("UNSEEN", None))
        for key, value in (
            ("SINCE", self.since),
            ("BEFORE", self.before),
            ("FROM", self.from_),
            ("TO", self.to),
            ("SUBJECT", self.subject),
            ("TEXT", self.text),
            ("LARGER", self.larger),
            ("SMALLER", self.smaller),
        ):
            if value is not None:
                pairs.append((key, value))
        return pairs


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def require_folder_name(folder: str) -> None:
    """Refuse a folder name imapclient would send with a line break in it (its issue
    #657: CR/LF would end the command and start another). Raises HeaderInjectionError."""
    if any(char in folder for char in _FORBIDDEN):
        raise HeaderInjectionError(
            f"the IMAP folder name contains a CR, LF or NUL character: {quote(folder)}",
            hint="remove line breaks and NUL characters from the folder name",
        )


def in_set(numbers: list[int], sequence_set: str) -> list[int]:
    """The `numbers` (ascending) inside an RFC 3501 sequence set, "*" being the largest."""
    top = max(numbers, default=0)
    ranges = []
    for part in sequence_set.split(","):
        ends = [top if end == "*" else int(end) for end in part.split(":")]
        ranges.append((min(ends), max(ends)))
    return [n for n in numbers if any(low <= n <= high for low, high in ranges)]


def _flag(name: str) -> str:
    return {"from_": "--from", "uid_range": "--uid", "raw": "--search"}.get(name, f"--{name}")


def _is_sequence_set(value: str) -> bool:
    """RFC 3501 9 sequence-set: ranges of numbers or "*", comma separated."""
    if not value:
        return False
    for part in value.split(","):
        ends = part.split(":")
        if len(ends) > 2 or not all(
            end == "*" or (end.isdigit() and end.isascii()) for end in ends
        ):
            return False
    return True
