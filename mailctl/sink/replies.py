"""What the sink says and the limits it enforces: reply lines, the banner and EHLO replies."""

from __future__ import annotations

from typing import Final

from mailctl.models import Security
from mailctl.sink.config import SinkConfig

COMMAND_LINE_LIMIT: Final = 512  # RFC 5321 4.5.3.1.4, CRLF included
AUTH_LINE_LIMIT: Final = 12288  # RFC 4954 4
MAX_RECIPIENTS: Final = 1000
HARD_ERROR_LIMIT: Final = 20
QUEUE_HIGH_WATER: Final = 256 * 1024  # delayed reply bytes before reading pauses
TLS_HANDSHAKE_TIMEOUT: Final = 10.0
READ_BUFFER_SIZE: Final = 64 * 1024

TERMINATOR: Final = b"\r\n.\r\n"
OK: Final = b"250 2.0.0 Ok\r\n"
MAIL_OK: Final = b"250 2.1.0 Ok\r\n"
RCPT_OK: Final = b"250 2.1.5 Ok\r\n"
GO_AHEAD: Final = b"354 End data with <CR><LF>.<CR><LF>\r\n"
QUEUED: Final = b"250 2.0.0 Ok: queued\r\n"
BYE: Final = b"221 2.0.0 Bye\r\n"
UNKNOWN: Final = b"500 5.5.2 Error: command not recognized\r\n"
BARE_EOL_COMMAND: Final = b"500 5.5.2 Error: bare CR or LF in command; use CRLF\r\n"
NUL_COMMAND: Final = b"500 5.5.2 Error: NUL character in command\r\n"
BARE_EOL_DATA: Final = b"550 5.5.2 Error: bare CR or LF in message; lines must end with CRLF\r\n"
TOO_LONG: Final = b"500 5.5.6 Error: line too long\r\n"
TOO_BIG: Final = b"552 5.3.4 Error: message exceeds fixed maximum message size\r\n"
NEED_HELO: Final = b"503 5.5.1 Error: send HELO/EHLO first\r\n"
NESTED_MAIL: Final = b"503 5.5.1 Error: nested MAIL command\r\n"
NEED_MAIL: Final = b"503 5.5.1 Error: need MAIL command\r\n"
NEED_RCPT: Final = b"503 5.5.1 Error: need RCPT command\r\n"
NO_RECIPIENTS: Final = b"554 5.5.1 Error: no valid recipients\r\n"
NEED_AUTH: Final = b"530 5.7.0 Authentication required\r\n"
NEED_TLS_AUTH: Final = b"538 5.7.11 Encryption required for requested authentication mechanism\r\n"
NEED_SMTPUTF8: Final = b"553 5.6.7 Error: non-ASCII address needs SMTPUTF8\r\n"
TOO_MANY_RCPTS: Final = b"452 4.5.3 Error: too many recipients\r\n"
TOO_MANY_ERRORS: Final = b"421 4.7.0 Error: too many errors\r\n"
TOO_MANY_MESSAGES: Final = b"421 4.7.0 Error: too many messages on this connection\r\n"
TOO_MANY_CONNECTIONS: Final = b"421 4.4.5 Error: too many connections; try again later\r\n"
IDLE: Final = b"421 4.4.2 Error: timeout exceeded\r\n"
SHUTDOWN: Final = b"421 4.3.2 Error: server shutting down\r\n"
STORE_FAILED: Final = b"451 4.3.0 Error: could not store the message; try again later\r\n"
NOT_IMPLEMENTED: Final = b"502 5.5.1 Error: command not implemented\r\n"

# Reply-after-write actions.
CLOSE_AFTER_REPLY: Final = 1
STARTTLS_AFTER_REPLY: Final = 2


def ehlo_replies(config: SinkConfig) -> tuple[bytes, bytes]:
    """The EHLO reply before TLS and with TLS active (RFC 5321 4.1.1.1, one keyword a line)."""

    def build(tls: bool) -> bytes:
        keywords = [
            "PIPELINING",  # RFC 2920
            f"SIZE {config.max_size}",  # RFC 1870
            "8BITMIME",  # RFC 6152
            "SMTPUTF8",  # RFC 6531
            "ENHANCEDSTATUSCODES",  # RFC 2034
        ]
        if config.security is Security.STARTTLS and not tls:
            keywords.append("STARTTLS")  # RFC 3207
        if config.auth and (config.security is not Security.STARTTLS or tls):
            keywords.append("AUTH PLAIN LOGIN")  # RFC 4954
        lines = [config.hostname, *keywords]
        text = "".join(f"250-{line}\r\n" for line in lines[:-1]) + f"250 {lines[-1]}\r\n"
        return text.encode()

    return build(False), build(True)


def banner(config: SinkConfig) -> bytes:
    """The 220 greeting sent when a connection opens (RFC 5321 4.2)."""
    return f"220 {config.hostname} ESMTP mailctl sink\r\n".encode()
