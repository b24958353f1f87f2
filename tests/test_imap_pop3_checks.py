"""ImapSession.check / Pop3Session.check against a real Dovecot; scripted servers for failures."""

from __future__ import annotations

import json
import socket
import threading
import traceback
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
from servers.dovecot import DISCONNECTED, DovecotServer

from mailctl.errors import (
    AuthError,
    AuthUnsupportedError,
    CertificateError,
    ConnectError,
    ConnectionLostError,
    CredentialError,
    HeaderInjectionError,
    HostNotFoundError,
    MailctlError,
    PlaintextAuthRefusedError,
    ProtocolError,
    StartTlsUnavailableError,
    TemporaryError,
    TimeoutFailure,
    TlsError,
)
from mailctl.models import AuthMechanism, Protocol, Security, ServerSettings, Timeouts
from mailctl.protocols.checks import LoginCheck
from mailctl.protocols.imap import ImapSession
from mailctl.protocols.pop3 import Pop3Session
from mailctl.serialize import to_data

Check = Callable[..., LoginCheck]
CHECKS: dict[Protocol, Check] = {Protocol.IMAP: ImapSession.check, Protocol.POP3: Pop3Session.check}
BOTH = pytest.mark.parametrize("protocol", [Protocol.IMAP, Protocol.POP3], ids=["imap", "pop3"])
SECURED = pytest.mark.parametrize(
    "security", [Security.TLS, Security.STARTTLS], ids=["tls", "starttls"]
)


class Secret:
    """A secret provider that counts its calls (the contract: at most once, after TLS)."""

    def __init__(self, value: str) -> None:
        self.value = value
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return self.value


def everything_said(err: BaseException) -> str:
    """Every text a user could see of an error: message, repr, JSON, chained traceback."""
    parts = [str(err), repr(err), "".join(traceback.format_exception(err))]
    if isinstance(err, MailctlError):
        parts += [err.one_line(), json.dumps(to_data(err), default=str)]
    return "\n".join(parts)


def assert_secret_free(err: BaseException, password: str) -> None:
    said = everything_said(err)
    assert password not in said, said


# -- success over TLS and STARTTLS ----------------------------------------------------------


@BOTH
@SECURED
def test_login_succeeds_with_the_ca_file(
    dovecot: DovecotServer,
    protocol: Protocol,
    security: Security,
) -> None:
    secret = Secret(dovecot.password)
    mark = dovecot.log_mark()
    result = CHECKS[protocol](dovecot.settings(protocol, security), secret=secret)

    assert result.authenticated
    assert secret.calls == 1
    assert (result.protocol, result.host, result.security) == (protocol, dovecot.host, security)
    assert result.port == dovecot.port(protocol, security)
    assert result.tls is not None
    assert result.tls.version in {"TLSv1.2", "TLSv1.3"}
    assert result.tls.peer_issuer  # the trustme CA
    assert set(result.timings) == {"connect", "tls", "capability", "login"}
    assert all(value >= 0 for value in result.timings.values())
    caps = result.capabilities
    if protocol is Protocol.IMAP:
        assert "IMAP4REV1" in caps and "AUTH=PLAIN" in caps
        assert "STARTTLS" not in caps  # asked again after TLS (RFC 3501 6.2.1)
    else:
        assert "USER" in caps and "SASL PLAIN LOGIN" in caps
        assert "STLS" not in caps  # asked again after STLS (RFC 2595 4)
    rendered = json.dumps(to_data(result))
    assert dovecot.password not in rendered and dovecot.password not in repr(result)
    assert json.loads(rendered)["tls"]["version"] == result.tls.version
    dovecot.wait_log(rf"Login: user=<{dovecot.user}>", since=mark)


@BOTH
def test_without_username_only_connects(dovecot: DovecotServer, protocol: Protocol) -> None:
    secret = Secret("unused")
    settings = dovecot.settings(protocol, Security.STARTTLS, username=None)
    result = CHECKS[protocol](settings, secret=secret)
    assert not result.authenticated
    assert secret.calls == 0
    assert "login" not in result.timings
    assert result.tls is not None


@BOTH
@pytest.mark.parametrize("mechanism", [AuthMechanism.PLAIN, AuthMechanism.LOGIN])
def test_each_supported_mechanism_logs_in(
    dovecot: DovecotServer,
    protocol: Protocol,
    mechanism: AuthMechanism,
) -> None:
    # Quotes and backslashes must survive IMAP quoting; the LOGIN command sends them quoted.
    user = dovecot.add_user(password='q"uo\\te d-pw')
    settings = dovecot.settings(protocol, Security.TLS, user=user.name, auth=mechanism)
    mark = dovecot.log_mark()
    result = CHECKS[protocol](settings, secret=Secret(user.password))
    assert result.authenticated
    dovecot.wait_log(rf"Login: user=<{user.name}>", since=mark)


@BOTH
def test_non_ascii_password_logs_in(dovecot: DovecotServer, protocol: Protocol) -> None:
    user = dovecot.add_user(password="pässwörd-ñ")
    settings = dovecot.settings(protocol, Security.TLS, user=user.name)
    assert CHECKS[protocol](settings, secret=Secret(user.password)).authenticated


def test_imap_login_command_refuses_non_ascii_before_sending(dovecot: DovecotServer) -> None:
    user = dovecot.add_user(password="pässwörd-ñ")
    settings = dovecot.settings(
        Protocol.IMAP, Security.TLS, user=user.name, auth=AuthMechanism.LOGIN
    )
    mark = dovecot.log_mark()
    with pytest.raises(AuthUnsupportedError) as caught:
        ImapSession.check(settings, secret=Secret(user.password))
    assert_secret_free(caught.value, user.password)
    assert f"user=<{user.name}>" not in dovecot.wait_log(DISCONNECTED, since=mark)


@BOTH
def test_unsupported_mechanism_fails_before_asking_for_the_secret(
    dovecot: DovecotServer,
    protocol: Protocol,
) -> None:
    secret = Secret(dovecot.password)
    settings = dovecot.settings(protocol, Security.TLS, auth=AuthMechanism.XOAUTH2)
    with pytest.raises(AuthUnsupportedError, match="xoauth2"):
        CHECKS[protocol](settings, secret=secret)
    assert secret.calls == 0


# -- authentication failures ----------------------------------------------------------------


@BOTH
@SECURED
def test_wrong_password_is_auth_error_without_the_password(
    dovecot: DovecotServer,
    protocol: Protocol,
    security: Security,
) -> None:
    wrong = "Wr0ng-pa55word-XYZ"
    with pytest.raises(AuthError) as caught:
        CHECKS[protocol](dovecot.settings(protocol, security), secret=Secret(wrong))
    err = caught.value
    assert type(err) is AuthError
    assert err.exit_code == 77
    assert f"{dovecot.host}:{dovecot.port(protocol, security)}" in err.message
    assert "\n" not in err.message
    assert "Authentication failed" in err.message
    assert_secret_free(err, wrong)
    assert_secret_free(err, dovecot.password)


@BOTH
def test_unknown_user_is_auth_error(dovecot: DovecotServer, protocol: Protocol) -> None:
    settings = dovecot.settings(protocol, Security.TLS, user="nobody-here")
    with pytest.raises(AuthError):
        CHECKS[protocol](settings, secret=Secret("whatever-pw"))


# -- certificates and TLS --------------------------------------------------------------------


@BOTH
@SECURED
def test_untrusted_certificate_is_refused_before_the_password(
    dovecot: DovecotServer,
    protocol: Protocol,
    security: Security,
) -> None:
    secret = Secret(dovecot.password)
    settings = dovecot.settings(protocol, security, ca_file=None)  # system CAs only
    with pytest.raises(CertificateError) as caught:
        CHECKS[protocol](settings, secret=secret)
    assert secret.calls == 0
    assert "untrusted" in caught.value.message
    assert f"{dovecot.host}:{settings.port}" in caught.value.message
    assert_secret_free(caught.value, dovecot.password)


@BOTH
def test_insecure_skips_verification(dovecot: DovecotServer, protocol: Protocol) -> None:
    settings = dovecot.settings(protocol, Security.TLS, ca_file=None, verify=False)
    result = CHECKS[protocol](settings, secret=Secret(dovecot.password))
    assert result.authenticated and result.tls is not None


@BOTH
def test_implicit_tls_against_a_plain_port_is_tls_error(
    dovecot: DovecotServer,
    protocol: Protocol,
) -> None:
    settings = dovecot.settings(
        protocol, Security.TLS, port=dovecot.port(protocol, Security.STARTTLS)
    )
    with pytest.raises(TlsError) as caught:
        CHECKS[protocol](settings, secret=Secret(dovecot.password))
    assert not isinstance(caught.value, CertificateError)


@BOTH
def test_starttls_not_offered_is_refused(
    dovecot_plain: DovecotServer,
    protocol: Protocol,
) -> None:
    user = dovecot_plain.add_user()  # its own name: no other test's late log line has it
    secret = Secret(user.password)
    settings = dovecot_plain.settings(protocol, Security.STARTTLS, user=user.name)
    mark = dovecot_plain.log_mark()
    with pytest.raises(StartTlsUnavailableError) as caught:
        CHECKS[protocol](settings, secret=secret)
    assert secret.calls == 0
    assert f"{dovecot_plain.host}:{settings.port}" in caught.value.message
    assert f"user=<{user.name}>" not in dovecot_plain.wait_log(DISCONNECTED, since=mark)


# -- plaintext -------------------------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A listening socket nobody answers on: a connection attempt would queue in its backlog."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(5)
    sock.setblocking(False)
    yield sock
    sock.close()


def assert_never_connected(sock: socket.socket) -> None:
    with pytest.raises(BlockingIOError):
        conn, _ = sock.accept()
        conn.close()


@BOTH
def test_plaintext_login_is_refused_before_connecting(
    listener: socket.socket, protocol: Protocol
) -> None:
    secret = Secret("plain-text-pw")
    settings = ServerSettings(
        host="127.0.0.1",
        port=listener.getsockname()[1],
        security=Security.NONE,
        username="alice",
    )
    with pytest.raises(PlaintextAuthRefusedError) as caught:
        CHECKS[protocol](settings, secret=secret)
    assert secret.calls == 0
    assert caught.value.exit_code == 77
    assert_never_connected(listener)


@BOTH
def test_plaintext_login_when_explicitly_allowed(
    dovecot_plain: DovecotServer,
    protocol: Protocol,
) -> None:
    settings = dovecot_plain.settings(protocol, Security.NONE, allow_plaintext_auth=True)
    result = CHECKS[protocol](settings, secret=Secret(dovecot_plain.password))
    assert result.authenticated
    assert result.tls is None
    assert "tls" not in result.timings


@BOTH
@pytest.mark.parametrize("bad", ["al\r\nice", "alice\n", "al\0ice"])
def test_control_characters_in_username_refused_before_connecting(
    listener: socket.socket, protocol: Protocol, bad: str
) -> None:
    settings = ServerSettings(
        host="127.0.0.1", port=listener.getsockname()[1], security=Security.TLS, username=bad
    )
    with pytest.raises(HeaderInjectionError):
        CHECKS[protocol](settings, secret=Secret("pw"))
    assert_never_connected(listener)


@BOTH
def test_control_characters_in_password_never_sent(
    dovecot: DovecotServer,
    protocol: Protocol,
) -> None:
    bad = "pw\r\nA1 LOGOUT-injected"
    with pytest.raises(HeaderInjectionError) as caught:
        CHECKS[protocol](dovecot.settings(protocol, Security.TLS), secret=Secret(bad))
    assert_secret_free(caught.value, bad)
    assert_secret_free(caught.value, "LOGOUT-injected")


@BOTH
def test_username_without_secret_is_credential_error(
    listener: socket.socket, protocol: Protocol
) -> None:
    settings = ServerSettings(
        host="127.0.0.1", port=listener.getsockname()[1], security=Security.TLS, username="a"
    )
    with pytest.raises(CredentialError):
        CHECKS[protocol](settings, secret=None)
    assert_never_connected(listener)


# -- network failures ------------------------------------------------------------------------


@BOTH
def test_refused_connection_is_connect_error(protocol: Protocol) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = ServerSettings(host="127.0.0.1", port=port, security=Security.TLS)
    with pytest.raises(ConnectError, match=f"127.0.0.1:{port}"):
        CHECKS[protocol](settings, secret=None)


@BOTH
@pytest.mark.parametrize("host", ["nonexistent.invalid", "bad..name"])
def test_unknown_host_is_host_not_found(protocol: Protocol, host: str) -> None:
    settings = ServerSettings(host=host, port=993, security=Security.TLS)
    with pytest.raises(HostNotFoundError, match=r"bad\.\.name|nonexistent\.invalid"):
        CHECKS[protocol](settings, secret=None)


class ScriptedServer:
    """One-connection TCP server: sends a greeting, then answers each line from `replies`.

    A line no entry matches gets no answer (the server stalls); `close_on` closes instead.
    """

    def __init__(
        self, greeting: bytes | None, replies: dict[str, bytes], *, close_on: str | None = None
    ) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port: int = self.sock.getsockname()[1]
        self.received: list[str] = []
        self._greeting = greeting
        self._replies = replies
        self._close_on = close_on
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(5)
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn, conn.makefile("rb") as lines:
            if self._greeting is not None:
                conn.sendall(self._greeting)
            for raw in lines:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                self.received.append(line)
                # IMAP lines start with a tag, POP3 lines with the command: try both.
                candidates = (line.upper(), line.partition(" ")[2].upper())
                if self._close_on and any(c.startswith(self._close_on) for c in candidates):
                    return
                for prefix, reply in self._replies.items():
                    if any(c.startswith(prefix) for c in candidates):
                        conn.sendall(reply.replace(b"TAG", line.split(" ")[0].encode()))
                        break
                else:
                    self._done.wait(5)  # stall until the test ends
                    return

    def close(self) -> None:
        self._done.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def scripted() -> Iterator[Callable[..., ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def make(
        greeting: bytes | None, replies: dict[str, bytes], **kwargs: str | None
    ) -> ScriptedServer:
        server = ScriptedServer(greeting, replies, **kwargs)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


IMAP_GREETING = b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] scripted\r\n"
IMAP_CAPS = {"CAPABILITY": b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\nTAG OK done\r\n"}
POP3_GREETING = b"+OK scripted\r\n"
POP3_CAPS = {"CAPA": b"+OK\r\nUSER\r\n.\r\n", "USER": b"+OK\r\n"}
FAST = Timeouts(connect=0.5, command=0.5)


def plain_settings(port: int) -> ServerSettings:
    return ServerSettings(
        host="127.0.0.1",
        port=port,
        security=Security.NONE,
        username="alice",
        allow_plaintext_auth=True,
        timeouts=FAST,
    )


@BOTH
def test_silent_server_is_connect_error(
    scripted: Callable[..., ScriptedServer], protocol: Protocol
) -> None:
    server = scripted(None, {})  # accepts, never greets (like a TLS port spoken to in plain)
    with pytest.raises(ConnectError) as caught:
        CHECKS[protocol](replace(plain_settings(server.port), username=None), secret=None)
    assert "implicit TLS" in caught.value.one_line()


@pytest.mark.parametrize(
    ("protocol", "greeting", "replies"),
    [(Protocol.IMAP, IMAP_GREETING, IMAP_CAPS), (Protocol.POP3, POP3_GREETING, POP3_CAPS)],
    ids=["imap", "pop3"],
)
def test_stall_during_login_is_timeout(
    scripted: Callable[..., ScriptedServer],
    protocol: Protocol,
    greeting: bytes,
    replies: dict[str, bytes],
) -> None:
    server = scripted(greeting, replies)
    password = "stalled-pw-123"
    with pytest.raises(TimeoutFailure, match="during login") as caught:
        CHECKS[protocol](plain_settings(server.port), secret=Secret(password))
    assert caught.value.exit_code == 75
    assert_secret_free(caught.value, password)


@pytest.mark.parametrize(
    ("protocol", "greeting", "replies", "close_on"),
    [
        (Protocol.IMAP, IMAP_GREETING, IMAP_CAPS, "AUTHENTICATE"),
        (Protocol.POP3, POP3_GREETING, POP3_CAPS, "PASS"),
    ],
    ids=["imap", "pop3"],
)
def test_connection_dropped_during_login_is_connection_lost(
    scripted: Callable[..., ScriptedServer],
    protocol: Protocol,
    greeting: bytes,
    replies: dict[str, bytes],
    close_on: str,
) -> None:
    server = scripted(greeting, replies, close_on=close_on)
    password = "dropped-pw-456"
    with pytest.raises(ConnectionLostError) as caught:
        CHECKS[protocol](plain_settings(server.port), secret=Secret(password))
    assert_secret_free(caught.value, password)


@pytest.mark.parametrize(
    ("protocol", "greeting"),
    [(Protocol.IMAP, b"* BAD not an imap server\r\n"), (Protocol.POP3, b"-ERR go away\r\n")],
    ids=["imap", "pop3"],
)
def test_bad_greeting_is_protocol_error(
    scripted: Callable[..., ScriptedServer], protocol: Protocol, greeting: bytes
) -> None:
    server = scripted(greeting, {})
    with pytest.raises(ProtocolError) as caught:
        CHECKS[protocol](replace(plain_settings(server.port), username=None), secret=None)
    assert type(caught.value) is ProtocolError
    assert f"127.0.0.1:{server.port}" in caught.value.message


@pytest.mark.parametrize(
    ("protocol", "greeting", "replies"),
    [
        (
            Protocol.IMAP,
            IMAP_GREETING,
            {**IMAP_CAPS, "AUTHENTICATE": b"TAG NO [UNAVAILABLE] busy, echo ECHOED-pw-789\r\n"},
        ),
        (
            Protocol.POP3,
            POP3_GREETING,
            {**POP3_CAPS, "PASS": b"-ERR [IN-USE] locked, echo ECHOED-pw-789\r\n"},
        ),
    ],
    ids=["imap", "pop3"],
)
def test_transient_login_refusal_is_temporary_and_masks_an_echo(
    scripted: Callable[..., ScriptedServer],
    protocol: Protocol,
    greeting: bytes,
    replies: dict[str, bytes],
) -> None:
    password = "ECHOED-pw-789"
    server = scripted(greeting, replies)
    with pytest.raises(TemporaryError) as caught:
        CHECKS[protocol](plain_settings(server.port), secret=Secret(password))
    assert caught.value.exit_code == 75
    assert "<redacted>" in caught.value.message
    assert_secret_free(caught.value, password)


@pytest.mark.parametrize(
    ("protocol", "greeting", "replies", "goodbye"),
    [
        (
            Protocol.IMAP,
            IMAP_GREETING,
            {
                "CAPABILITY": b"* CAPABILITY IMAP4rev1 LOGINDISABLED\r\nTAG OK done\r\n",
                "LOGOUT": b"* BYE bye\r\nTAG OK done\r\n",
            },
            "LOGOUT",
        ),
        (
            Protocol.POP3,
            POP3_GREETING,
            {"CAPA": b"+OK\r\nUSER\r\nSASL LOGIN\r\n.\r\n", "QUIT": b"+OK bye\r\n"},
            "QUIT",
        ),
    ],
    ids=["imap", "pop3"],
)
def test_mechanism_not_offered_is_refused_before_the_secret(
    scripted: Callable[..., ScriptedServer],
    protocol: Protocol,
    greeting: bytes,
    replies: dict[str, bytes],
    goodbye: str,
) -> None:
    """auth = plain where the server lists no PLAIN: one rule for both protocols (the
    shared skeleton) refuses before the password is asked for, naming what was offered,
    and still says goodbye (a refusal leaves the session in step)."""
    server = scripted(greeting, replies)
    secret = Secret("never-asked")
    settings = replace(plain_settings(server.port), auth=AuthMechanism.PLAIN)
    with pytest.raises(AuthUnsupportedError, match="does not allow plain") as caught:
        CHECKS[protocol](settings, secret=secret)
    assert secret.calls == 0
    assert "capabilities: " in caught.value.message
    assert caught.value.exit_code == AuthUnsupportedError.exit_code
    server.close()
    assert server.received[-1].upper().endswith(goodbye)
