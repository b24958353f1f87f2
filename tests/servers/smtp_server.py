"""Real SMTP test servers: aiosmtpd on 127.0.0.1, port 0, in a thread, recording what arrived.

Registered as a pytest plugin by tests/conftest.py, so every test can use these fixtures.

Fixtures
--------
``smtp_certificates`` (session)
    A :class:`ServerCertificates`: a trusted test CA generated with trustme once per
    session, and server certificates for each :class:`CertKind` (TRUSTED, UNTRUSTED:
    from a CA nobody trusts, WRONG_HOST: for ``wrong-host.example``, EXPIRED).
    ``write_ca_pem(path)`` writes the trusted CA to a PEM file.
``smtp_ca_file`` (session)
    Path of a PEM file holding the trusted CA: what a CLI test passes to ``--ca-file``.
``smtp_server_factory``
    ``smtp_server_factory(*, security=Security.STARTTLS, auth=True, starttls_offered=True,
    require_starttls=False, cert=CertKind.TRUSTED, require_auth=False,
    data_size_limit=DATA_SIZE_LIMIT, smtputf8=True, mechanisms=("PLAIN", "LOGIN"))
    -> SmtpTestServer``.
    ``security`` uses mailctl's enum: STARTTLS (offered unless ``starttls_offered=False``,
    which makes a plain server), TLS (implicit TLS, like port 465) or NONE (plain).
    ``auth`` offers AUTH (``mechanisms``, any of PLAIN LOGIN CRAM-MD5 XOAUTH2) for
    ``TEST_USER`` / ``password`` (XOAUTH2: bearer token ``TEST_TOKEN``); the password is
    compared as UTF-8 (RFC 4616 for PLAIN, RFC 2195's shared secret for CRAM-MD5); with
    STARTTLS it is offered only after STARTTLS, like real submission servers.
    ``require_auth`` answers MAIL with 530 until the client authenticated.
    Every server started by the factory is stopped when the test ends.
``smtp_server``
    STARTTLS + AUTH, trusted certificate (a typical port-587 submission server).
``smtps_server``
    Implicit TLS + AUTH, trusted certificate (port 465 style).
``plain_smtp_server``
    No TLS, no AUTH (a local relay).

SmtpTestServer
--------------
``host`` ("127.0.0.1"), ``port``, ``security``, ``ca_file``;
``settings(**overrides) -> ServerSettings`` ready for mailctl (trusted ``ca_file``,
``username=TEST_USER`` when AUTH is on, short timeouts);
``messages: list[ReceivedMessage]`` (mail_from, rcpt_tos, mail_options, rcpt_options,
``data``: the exact bytes received after dot-unstuffing, ``tls``, ``authenticated_as``);
``auth_attempts: list[AuthAttempt]`` (every AUTH command: mechanism, raw argument,
``tls`` active at that moment, login/password as decoded by the server, success);
``connections``: how many TCP connections the server accepted;
``ehlo_names``: the name given with every EHLO, in order;
``reject(address, code=550, text=None)``: refuse that RCPT (550, 450, 552, ...);
``final_reply``: a reply string to send after the final dot instead of 250;
``data_delay``: seconds to wait before the final reply;
``drop_after_data``: close the connection after the final dot without any reply;
``ehlo_supported = False``: answer EHLO with 502, like a pre-ESMTP server.
Attributes can be changed while the server runs; the handler reads them per command.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hmac
import itertools
import json
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session, syntax

from mailctl.models import Security, ServerSettings, Timeouts

TEST_USER = "alice"
# Distinctive so a leak is easy to find in any output; contains no base64-looking run.
TEST_PASSWORD = "pw-Sekr3t!correct horse"
TEST_TOKEN = "ya29.test-bearer-token"  # the XOAUTH2 bearer token the server accepts
ALL_MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2")
SERVER_NAME = "mail.test"
DATA_SIZE_LIMIT = 10 * 1024 * 1024
# Short enough that a hung test fails fast, long enough for a busy 2-core machine.
TEST_TIMEOUTS = Timeouts(connect=5.0, command=5.0, data=5.0)


class CertKind(StrEnum):
    TRUSTED = "trusted"
    UNTRUSTED = "untrusted"
    WRONG_HOST = "wrong-host"
    EXPIRED = "expired"


@dataclass
class ReceivedMessage:
    mail_from: str
    rcpt_tos: list[str]
    mail_options: list[str]
    rcpt_options: list[str]
    data: bytes  # envelope.original_content: the bytes as received, dot-unstuffed
    tls: bool
    authenticated_as: str | None


@dataclass
class AuthAttempt:
    mechanism: str
    raw_argument: str  # the AUTH command's argument as received (may hold credentials)
    tls: bool  # whether TLS was active when the AUTH command arrived
    login: str | None = None
    password: str | None = None
    success: bool | None = None  # None: the server refused before checking credentials


class ServerCertificates:
    """A trusted CA and server certificates for each CertKind, made once per session."""

    def __init__(self, directory: Path) -> None:
        self.ca = trustme.CA(organization_name="mailctl test CA")
        self._untrusted_ca = trustme.CA(organization_name="untrusted CA")
        now = datetime.datetime.now(datetime.UTC)
        self._certs = {
            CertKind.TRUSTED: self.ca.issue_cert("127.0.0.1", "localhost", SERVER_NAME),
            CertKind.UNTRUSTED: self._untrusted_ca.issue_cert("127.0.0.1", "localhost"),
            CertKind.WRONG_HOST: self.ca.issue_cert("wrong-host.example"),
            CertKind.EXPIRED: self.ca.issue_cert(
                "127.0.0.1",
                "localhost",
                not_before=now - datetime.timedelta(days=30),
                not_after=now - datetime.timedelta(days=1),
            ),
        }
        self.ca_file = self.write_ca_pem(directory / "test-ca.pem")
        self.untrusted_ca_file = directory / "untrusted-ca.pem"
        self._untrusted_ca.cert_pem.write_to_path(str(self.untrusted_ca_file))

    def write_ca_pem(self, path: Path) -> Path:
        """Write the trusted CA certificate as PEM (for --ca-file) and return the path."""
        self.ca.cert_pem.write_to_path(str(path))
        return path

    def server_context(self, kind: CertKind) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._certs[kind].configure_cert(context)
        return context


class RecordingHandler:
    """aiosmtpd handler hooks that record everything and apply the configured faults."""

    def __init__(self, *, auth: bool, require_auth: bool, password: str = TEST_PASSWORD) -> None:
        self.auth = auth
        self.require_auth = require_auth
        self.password = password
        self.messages: list[ReceivedMessage] = []
        # Not "auth_attempts": aiosmtpd treats every handler attribute named auth_* as
        # an AUTH mechanism and would advertise "AUTH ... ATTEMPTS".
        self.recorded_auth: list[AuthAttempt] = []
        self.rejections: dict[str, str] = {}
        self.final_reply: str | None = None
        self.data_delay = 0.0
        self.drop_after_data = False
        self.ehlo_supported = True
        self.ehlo_names: list[str] = []
        self.connections = 0
        self.active: set[_RecordingSMTP] = set()
        self._queue_ids = itertools.count(1)

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        self.ehlo_names.append(hostname)
        if not self.ehlo_supported:  # a pre-ESMTP server (RFC 821): only HELO works
            return ["502 5.5.1 EHLO not implemented"]
        # With the 5-argument hook aiosmtpd leaves remembering the name to us.
        session.host_name = hostname
        if not self.auth:
            responses = [line for line in responses if not line[4:].upper().startswith("AUTH")]
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        # aiosmtpd's own auth_required needs auth_require_tls or it warns; do it here.
        if self.require_auth and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        refusal = self.rejections.get(address.lower())
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert envelope.original_content is not None
        self.messages.append(
            ReceivedMessage(
                mail_from=envelope.mail_from or "",
                rcpt_tos=list(envelope.rcpt_tos),
                mail_options=list(envelope.mail_options),
                rcpt_options=list(envelope.rcpt_options),
                data=envelope.original_content,
                tls=_tls_active(server),
                authenticated_as=_login(session),
            )
        )
        if self.data_delay:
            await asyncio.sleep(self.data_delay)
        if self.drop_after_data:
            assert server.transport is not None
            server.transport.abort()
            # connection_lost cancels this coroutine; aiosmtpd handles that quietly.
            await asyncio.Event().wait()
        if self.final_reply is not None:
            return self.final_reply
        return f"250 2.0.0 Ok: queued as Q{next(self._queue_ids):06d}"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        """aiosmtpd `authenticator` for PLAIN and LOGIN: check TEST_USER/TEST_PASSWORD."""
        assert isinstance(data, LoginPassword)
        login = data.login.decode("utf-8", "replace")
        password = data.password.decode("utf-8", "replace")
        success = login == TEST_USER and password == self.password
        self._note(login, password, success)
        # handled=False: aiosmtpd sends "535 5.7.8 Authentication credentials invalid".
        return AuthResult(success=success, handled=False, auth_data=login if success else None)

    # aiosmtpd turns handler methods named auth_<NAME> into mechanisms ("__" -> "-").
    async def auth_CRAM__MD5(self, server: SMTP, args: list[str]) -> AuthResult:
        """RFC 2195 CRAM-MD5, which aiosmtpd does not ship."""
        challenge = f"<{time.time_ns()}@{SERVER_NAME}>".encode()
        response = await server.challenge_auth(challenge)
        if not isinstance(response, bytes):  # "*" or bad base64: already answered
            return AuthResult(success=False, handled=True)
        login, _, digest = response.decode("utf-8", "replace").rpartition(" ")
        expected = hmac.new(self.password.encode(), challenge, "md5").hexdigest()
        success = login == TEST_USER and hmac.compare_digest(digest, expected)
        self._note(login, None, success)
        return AuthResult(success=success, handled=False, auth_data=login if success else None)

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        """Google/Microsoft XOAUTH2: user=...^Aauth=Bearer TOKEN^A^A, token TEST_TOKEN."""
        if len(args) < 2:
            return AuthResult(success=False, handled=False, message="501 5.5.2 Missing response")
        fields = base64.b64decode(args[1]).split(b"\x01")
        login = fields[0].decode().removeprefix("user=")
        token = fields[1].decode().removeprefix("auth=Bearer ") if len(fields) > 1 else ""
        success = login == TEST_USER and token == TEST_TOKEN
        self._note(login, token, success)
        if success:
            return AuthResult(success=True, auth_data=login)
        # The error arrives as a 334 challenge; the client must answer with an empty line.
        error = json.dumps({"status": "401", "schemes": "bearer"}).encode()
        await server.challenge_auth(base64.b64encode(error), encode_to_b64=False)
        return AuthResult(
            success=False, handled=False, message="535 5.7.8 Username and Password not accepted"
        )

    def _note(self, login: str, password: str | None, success: bool) -> None:
        if self.recorded_auth:
            attempt = self.recorded_auth[-1]
            attempt.login, attempt.password, attempt.success = login, password, success


def _tls_active(server: SMTP) -> bool:
    transport = server.transport
    return transport is not None and transport.get_extra_info("ssl_object") is not None


def _login(session: Session) -> str | None:
    return session.auth_data if session.authenticated else None  # type: ignore[no-any-return]


class _RecordingSMTP(SMTP):
    """aiosmtpd's SMTP, plus a record of every AUTH command and of open connections."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        handler: RecordingHandler = self.event_handler
        if self.transport is None:  # a new connection, not the STARTTLS re-entry
            handler.connections += 1
            handler.active.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        handler: RecordingHandler = self.event_handler
        try:
            super().connection_lost(error)
        finally:
            handler.active.discard(self)

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg: str) -> None:
        handler: RecordingHandler = self.event_handler
        mechanism = arg.split(maxsplit=1)[0].upper() if arg else ""
        handler.recorded_auth.append(
            AuthAttempt(mechanism=mechanism, raw_argument=arg or "", tls=_tls_active(self))
        )
        await super().smtp_AUTH(arg)


class _Controller(Controller):
    """A Controller that binds port 0 and builds _RecordingSMTP with the server's loop."""

    def factory(self) -> SMTP:
        # Passing loop= keeps aiosmtpd from calling asyncio.get_event_loop() under
        # warnings.catch_warnings() in this thread, which is not thread-safe and could
        # race with pytest's own warning filters in the main thread.
        return _RecordingSMTP(self.handler, loop=self.loop, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        # aiosmtpd 1.4.6 connects to self.port to wake the server; with port 0 that
        # must be the port the OS actually picked.
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@dataclass
class SmtpTestServer:
    """A running test server; see the module docstring for what it records."""

    host: str
    port: int
    security: Security
    auth: bool
    ca_file: Path
    handler: RecordingHandler = field(repr=False)
    _controller: _Controller = field(repr=False)

    @property
    def messages(self) -> list[ReceivedMessage]:
        return self.handler.messages

    @property
    def auth_attempts(self) -> list[AuthAttempt]:
        return self.handler.recorded_auth

    @property
    def connections(self) -> int:
        return self.handler.connections

    @property
    def ehlo_names(self) -> list[str]:
        """The name given with every EHLO, in order (twice per STARTTLS session)."""
        return self.handler.ehlo_names

    @property
    def final_reply(self) -> str | None:
        return self.handler.final_reply

    @final_reply.setter
    def final_reply(self, value: str | None) -> None:
        self.handler.final_reply = value

    @property
    def data_delay(self) -> float:
        return self.handler.data_delay

    @data_delay.setter
    def data_delay(self, value: float) -> None:
        self.handler.data_delay = value

    @property
    def drop_after_data(self) -> bool:
        return self.handler.drop_after_data

    @drop_after_data.setter
    def drop_after_data(self, value: bool) -> None:
        self.handler.drop_after_data = value

    @property
    def ehlo_supported(self) -> bool:
        return self.handler.ehlo_supported

    @ehlo_supported.setter
    def ehlo_supported(self, value: bool) -> None:
        self.handler.ehlo_supported = value

    def reject(self, address: str, code: int = 550, text: str | None = None) -> None:
        """Refuse RCPT TO for `address` with `code` (e.g. 550, 450, 552)."""
        default = {5: "5.1.1 No such user here", 4: "4.2.1 Mailbox busy, try later"}
        reply_text = text or default.get(code // 100, "Refused")
        self.handler.rejections[address.lower()] = f"{code} {reply_text}"

    def settings(self, **overrides: Any) -> ServerSettings:
        """ServerSettings for this server, trusting the test CA, with short timeouts."""
        values: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "security": self.security,
            "username": TEST_USER if self.auth else None,
            "ca_file": self.ca_file,
            "timeouts": TEST_TIMEOUTS,
        }
        values.update(overrides)
        return ServerSettings(**values)

    def stop(self) -> None:
        """Close open connections, then stop the server thread (idempotent)."""
        controller = self._controller
        if controller._thread is None:
            return
        loop = controller.loop
        for smtp in list(self.handler.active):
            if smtp.transport is not None:
                loop.call_soon_threadsafe(smtp.transport.close)
        # Let the server loop finish those closes before it stops, so no transport is
        # left for the garbage collector to warn about (filterwarnings = error).
        deadline = time.monotonic() + 2.0
        while self.handler.active and time.monotonic() < deadline:
            time.sleep(0.005)
        controller.stop()


def start_smtp_server(
    certificates: ServerCertificates,
    *,
    security: Security = Security.STARTTLS,
    auth: bool = True,
    starttls_offered: bool = True,
    require_starttls: bool = False,
    cert: CertKind = CertKind.TRUSTED,
    require_auth: bool = False,
    data_size_limit: int | None = DATA_SIZE_LIMIT,
    smtputf8: bool = True,
    mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN"),
    password: str = TEST_PASSWORD,
    host: str = "127.0.0.1",
) -> SmtpTestServer:
    """Start a server (prefer the smtp_server_factory fixture, which also stops it).

    `host` is a loopback address: 127.0.0.1, or ::1 for the IPv6 cases (the certificates
    name 127.0.0.1 and localhost only, so use ::1 with a plain server).
    """
    handler = RecordingHandler(auth=auth, require_auth=require_auth, password=password)
    context = certificates.server_context(cert)
    starttls = security is Security.STARTTLS and starttls_offered
    kwargs: dict[str, Any] = {
        "server_hostname": SERVER_NAME,
        "enable_SMTPUTF8": smtputf8,
        "data_size_limit": data_size_limit,
        "authenticator": handler.authenticate,
        "auth_exclude_mechanism": [m for m in ALL_MECHANISMS if m not in mechanisms],
        # aiosmtpd only counts STARTTLS as TLS, so implicit-TLS and plain servers must
        # not require it for AUTH; with STARTTLS, AUTH appears only after the upgrade.
        "auth_require_tls": starttls,
    }
    if starttls:
        kwargs["tls_context"] = context
        kwargs["require_starttls"] = require_starttls
    controller = _Controller(
        handler,
        hostname=host,  # loopback only
        port=0,
        ssl_context=context if security is Security.TLS else None,
        ready_timeout=10.0,
        **kwargs,
    )
    controller.start()
    # The Controller's own wake-up connection is not one of the test's.
    handler.connections = 0
    return SmtpTestServer(
        host=host,
        port=controller.port,
        security=security,
        auth=auth,
        ca_file=certificates.ca_file,
        handler=handler,
        _controller=controller,
    )


SmtpServerFactory = Callable[..., SmtpTestServer]


@pytest.fixture(scope="session")
def smtp_certificates(tmp_path_factory: pytest.TempPathFactory) -> ServerCertificates:
    return ServerCertificates(tmp_path_factory.mktemp("smtp-certs"))


@pytest.fixture(scope="session")
def smtp_ca_file(smtp_certificates: ServerCertificates) -> Path:
    return smtp_certificates.ca_file


@pytest.fixture
def smtp_server_factory(smtp_certificates: ServerCertificates) -> Iterator[SmtpServerFactory]:
    servers: list[SmtpTestServer] = []

    def factory(**kwargs: Any) -> SmtpTestServer:
        server = start_smtp_server(smtp_certificates, **kwargs)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()


@pytest.fixture
def smtp_server(smtp_server_factory: SmtpServerFactory) -> SmtpTestServer:
    return smtp_server_factory(security=Security.STARTTLS, auth=True)


@pytest.fixture
def smtps_server(smtp_server_factory: SmtpServerFactory) -> SmtpTestServer:
    return smtp_server_factory(security=Security.TLS, auth=True)


@pytest.fixture
def plain_smtp_server(smtp_server_factory: SmtpServerFactory) -> SmtpTestServer:
    return smtp_server_factory(security=Security.NONE, auth=False)


__all__ = [
    "DATA_SIZE_LIMIT",
    "SERVER_NAME",
    "TEST_PASSWORD",
    "TEST_TIMEOUTS",
    "TEST_TOKEN",
    "TEST_USER",
    "AuthAttempt",
    "CertKind",
    "ReceivedMessage",
    "ServerCertificates",
    "SmtpServerFactory",
    "SmtpTestServer",
    "start_smtp_server",
]


def write_account_config(
    path: Path,
    server: SmtpTestServer,
    *,
    from_value: str | None = "main@example.org",
    extra_lines: tuple[str, ...] = (),
) -> Path:
    """A config whose default account `main` submits to `server` (STARTTLS, AUTH as TEST_USER).

    `from_value` None leaves the account without `from`; `extra_lines` append more TOML.
    The file is 0600, as mailctl refuses a config that others can change.
    """
    lines = ['default_account = "main"', "[accounts.main]"]
    if from_value is not None:
        lines.append(f"from = {json.dumps(from_value)}")
    lines += [
        "[accounts.main.smtp]",
        'host = "127.0.0.1"',
        f"port = {server.port}",
        'security = "starttls"',
        f'username = "{TEST_USER}"',
        f"ca_file = {json.dumps(str(server.ca_file))}",
        *extra_lines,
    ]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path
