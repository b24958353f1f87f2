"""The one exit-code table and the error tree every command raises from."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar, Final


class ExitCode(IntEnum):
    """Process exit codes, sysexits(3) values so that cron, git and MTAs understand them."""

    OK = 0
    FOUND = 1  # probe --fail-on: a finding at or above that severity (like grep, linters)
    USAGE = 64  # bad flags or arguments
    DATAERR = 65  # bad input data: header injection, invalid address, bad message
    NOINPUT = 66  # an input file does not exist or cannot be read
    NOHOST = 68  # a host name does not resolve
    UNAVAILABLE = 69  # permanent refusal (SMTP 5xx)
    SOFTWARE = 70  # a bug in mailctl
    CANTCREAT = 73  # an output file cannot be written
    IOERR = 74  # cannot connect (refused, unreachable, connect timeout)
    TEMPFAIL = 75  # temporary failure (SMTP 4xx, timeout, connection lost): try again later
    PROTOCOL = 76  # TLS failure or the server broke the protocol
    NOPERM = 77  # authentication failed or refused for safety
    CONFIG = 78  # bad or missing configuration or credentials
    REGRESSION = 79  # bench --baseline: QPS or p99 regressed beyond --max-regression
    INTERRUPTED = 130  # Ctrl-C


# Which exit code wins when several apply (DESIGN.md "Decisions"): Ctrl-C, then what only the
# user can fix in the command line or the configuration, then the failure least likely to go
# away by itself (a bug, credentials, TLS or protocol, a 5xx, bad data, the network, a 4xx),
# then a regression; success last.
_PRECEDENCE: Final = (
    ExitCode.INTERRUPTED,
    ExitCode.USAGE,
    ExitCode.CONFIG,
    ExitCode.SOFTWARE,
    ExitCode.NOPERM,
    ExitCode.PROTOCOL,
    ExitCode.UNAVAILABLE,
    ExitCode.DATAERR,
    ExitCode.NOINPUT,
    ExitCode.CANTCREAT,
    ExitCode.NOHOST,
    ExitCode.IOERR,
    ExitCode.TEMPFAIL,
    ExitCode.REGRESSION,
    ExitCode.FOUND,
    ExitCode.OK,
)


def worst_exit_code(codes: Iterable[ExitCode]) -> ExitCode:
    """The code a run exits with when several apply (OK for none): see _PRECEDENCE."""
    return min(codes, key=_PRECEDENCE.index, default=ExitCode.OK)


@dataclass(frozen=True)
class Fix:
    """A setting that would fix an error, named by what it changes rather than how to say it.

    Layers below cli do not know whether the server came from flags or an account block, nor
    which flags the running command has (sendmail mode has none): the command's context words
    each fix (cli/hints.py) as its flag, or as the key of the account block the server came
    from. Without a context, `key_words` says it as the config key.
    """

    setting: str  # a server-block key ("security", "tls_name", "username", ...) or a flag's name
    value: str | None = None  # the value to set; None: the user fills it in (NAME, FILE)
    when: str = ""  # the condition it depends on, read before it: "if the server speaks no TLS"
    protocol: str = "smtp"  # the account block the setting belongs to


FixWords = Callable[[Fix], str | None]  # how a fix reads; None: nothing this command can do


def key_words(fix: Fix) -> str | None:
    """A fix as the config key it sets (the wording when no command context is known)."""
    if fix.setting in ("verify", "allow_plaintext_auth"):
        return f"{fix.setting} = {fix.value or 'false'}"
    if fix.setting not in _SERVER_SETTINGS:
        return None
    value = fix.value if fix.value is not None else PLACEHOLDERS[fix.setting]
    return f'{fix.setting} = "{value}"'


# What the user fills in when a fix leaves the value open (`--tls-name NAME`, `ca_file = "FILE"`).
PLACEHOLDERS: Final = {
    "security": "SECURITY",
    "tls_name": "NAME",
    "username": "NAME",
    "ca_file": "FILE",
    "auth": "MECHANISM",
}
_SERVER_SETTINGS: Final = frozenset(PLACEHOLDERS)


def word_hint(note: str | None, fixes: Sequence[Fix], words: FixWords) -> str | None:
    """The hint a user reads: `note`, then each fix `words` can say, after its condition."""
    parts = [note] if note else []
    for fix in fixes:
        said = words(fix)
        if said:
            parts.append(f"{fix.when}: {said}" if fix.when else said)
    return "; ".join(parts) or None


class MailctlError(Exception):
    """Base of every error mailctl reports; knows its exit code and a stable `code` string.

    The message is one line naming the problem; `hint` names the fix. Neither may ever
    contain a secret: callers build messages from names and public values only. `fixes`
    are settings that would help, which the command's context words as its own flags or
    account keys (`reword`); `hint` then holds them, followed by the plain `note`.
    """

    exit_code: ClassVar[ExitCode] = ExitCode.SOFTWARE
    code: ClassVar[str] = "internal_error"
    # An entry of the envelope's `errors` (mailctl.serialize): always these four keys.
    JSON_ATTRS: ClassVar[tuple[str, ...]] = ("code", "message", "hint", "details")

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        details: dict[str, Any] | None = None,
        fixes: Sequence[Fix] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.note = hint
        self.fixes = tuple(fixes)
        self.hint = word_hint(hint, self.fixes, key_words) if self.fixes else hint
        self.details: dict[str, Any] = dict(details or {})

    def reword(self, words: FixWords) -> None:
        """Say the fixes in the words of the running command (its flags or account keys)."""
        if self.fixes:
            self.hint = word_hint(self.note, self.fixes, words)

    def one_line(self) -> str:
        """Render as the single line a user sees: problem, then fix."""
        text = self.message if not self.hint else f"{self.message} ({self.hint})"
        return " ".join(text.split())


class UsageError(MailctlError):
    exit_code = ExitCode.USAGE
    code = "usage"


class InputDataError(MailctlError):
    exit_code = ExitCode.DATAERR
    code = "invalid_input"


class HeaderInjectionError(InputDataError):
    code = "header_injection"


class UndefinedColumn(InputDataError):
    """A bulk template uses a column the CSV row does not have (details: `column`)."""

    code = "missing_column"


class AddressError(InputDataError):
    code = "invalid_address"


class MessageTooLargeError(InputDataError):
    code = "message_too_large"


class MessageParseError(InputDataError):
    """A message past a parse limit (mime.parse.ParseLimits: depth, parts, header size ...)."""

    code = "message_unparseable"


class InputTooLargeError(InputDataError):
    """A local input (file or stdin) over its size limit; refused before it is all read."""

    code = "input_too_large"


class NotRegularFileError(InputDataError):
    """A directory, FIFO, device or socket where a file with a size is needed."""

    code = "not_regular_file"


class TemplateChangedError(InputDataError):
    """The template differs from the last run's on this journal: goes on only when told."""

    code = "template_changed"


class NotAJournalError(InputDataError):
    """A journal file that is not a bulk-send journal (or one from a newer mailctl)."""

    code = "not_a_journal"


class NoInputError(MailctlError):
    exit_code = ExitCode.NOINPUT
    code = "no_input"


class FolderUnavailableError(NoInputError):
    """An IMAP folder the server will not open (SELECT/EXAMINE or MOVE/COPY answered NO)."""

    code = "folder_unavailable"


class CantCreateError(MailctlError):
    exit_code = ExitCode.CANTCREAT
    code = "cant_create"


class JournalError(CantCreateError):
    """The journal cannot be written (disk full, read-only, damaged): nothing is sent."""

    code = "journal_failed"


class HostNotFoundError(MailctlError):
    exit_code = ExitCode.NOHOST
    code = "host_not_found"


class ConnectError(MailctlError):
    exit_code = ExitCode.IOERR
    code = "connect_failed"


class TemporaryError(MailctlError):
    exit_code = ExitCode.TEMPFAIL
    code = "temporary_failure"


class SmtpTransientError(TemporaryError):
    """A 4xx reply (or 552 to RCPT, RFC 5321 4.5.3.1.10)."""

    code = "smtp_transient"


class TimeoutFailure(TemporaryError):
    code = "timeout"


class ConnectionLostError(TemporaryError):
    code = "connection_lost"


class OutcomeUnknownError(TemporaryError):
    """The connection dropped after the final dot: RFC 1047, it may have been delivered."""

    code = "outcome_unknown"


class JournalBusyError(TemporaryError):
    """Another bulk-send run holds the journal's lock: one run per journal at a time."""

    code = "journal_busy"


class SmtpPermanentError(MailctlError):
    exit_code = ExitCode.UNAVAILABLE
    code = "smtp_permanent"


class ServerUnsupportedError(MailctlError):
    """The server lacks what was asked for (IMAP UIDPLUS for --delete, MOVE/COPY, IDLE)."""

    exit_code = ExitCode.UNAVAILABLE
    code = "server_unsupported"


class ProtocolError(MailctlError):
    exit_code = ExitCode.PROTOCOL
    code = "protocol_error"


class ResponseLimitError(ProtocolError):
    """An IMAP/POP3 server sent more than a `ReadLimits` cap allows (size, count)."""

    code = "response_limit"


class TlsError(ProtocolError):
    code = "tls_failed"


class CertificateError(TlsError):
    code = "tls_certificate"


class StartTlsUnavailableError(TlsError):
    code = "starttls_unavailable"


class AuthError(MailctlError):
    exit_code = ExitCode.NOPERM
    code = "auth_failed"


class PlaintextAuthRefusedError(AuthError):
    code = "plaintext_auth_refused"


class AuthUnsupportedError(AuthError):
    code = "auth_unsupported"


class ConfigError(MailctlError):
    exit_code = ExitCode.CONFIG
    code = "config_error"


class ConfigInsecureError(ConfigError):
    """The config file, or a folder above it, can be changed by someone else: not trusted."""

    code = "config_insecure"


class CredentialError(ConfigError):
    code = "credentials_unavailable"


class KeyringUnavailableError(CredentialError):
    code = "keyring_unavailable"


class RegressionError(MailctlError):
    """A benchmark result is worse than its baseline allows; CI gates on exit code 79."""

    exit_code = ExitCode.REGRESSION
    code = "performance_regression"


class InterruptedByUser(MailctlError):
    exit_code = ExitCode.INTERRUPTED
    code = "interrupted"
