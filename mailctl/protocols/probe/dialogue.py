"""What a mail server shows before login: one probe connection's SMTP, IMAP or POP3 dialogue.

The only commands sent are EHLO (HELO when EHLO is refused), STARTTLS and QUIT for SMTP;
CAPABILITY, STARTTLS and LOGOUT for IMAP; CAPA, STLS and QUIT for POP3. Never AUTH, LOGIN,
USER/PASS, MAIL, RCPT or DATA: a probe reads, it does not use the server.

Failures are recorded, not raised: a dialogue that stops early says where (`error`), and a
TLS handshake that failed keeps its ssl exception (`handshake_error`) so the caller can
tell a refused version from an unverifiable certificate.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mailctl.errors import MailctlError, ProtocolError
from mailctl.protocols.ehlo import default_ehlo_name
from mailctl.protocols.handshake import HandshakeFacts, handshake_facts
from mailctl.protocols.probe.link import LinkLimits, ProbeLink
from mailctl.text import excerpt

# How long to watch for bytes a server sends right after its "ready to start TLS" reply,
# before our ClientHello (the STARTTLS response injection class, CVE-2011-0411 and
# CVE-2021-33515): an honest server sends nothing until it reads the ClientHello.
INJECTION_GRACE = 0.03
_QUIT_SECONDS = 0.5


@dataclass
class DialogueFacts:
    """What one connection showed; `error` says what stopped it early (None: it finished)."""

    connected: bool = False
    banner: str | None = None
    busy: bool = False  # 421 / "* BYE" / "-ERR" greeting: the server sent us away
    preauth: bool = False  # IMAP "* PREAUTH": logged in without credentials
    esmtp: bool = True  # EHLO accepted (False: only HELO worked)
    before: tuple[str, ...] = ()  # capabilities before TLS (EHLO keywords with parameters)
    after: tuple[str, ...] = ()  # capabilities after TLS
    starttls_offered: bool | None = None  # None: not asked (implicit TLS)
    starttls_reply: str | None = None
    injected: str | None = None  # what the server sent after its STARTTLS reply, excerpted
    tls: HandshakeFacts | None = None
    handshake_error: ssl.SSLError | None = None
    error: MailctlError | None = None
    timings: dict[str, float] = field(default_factory=dict)
    sent: list[str] = field(default_factory=list)  # the commands we sent, verbs only

    @property
    def handshake_reason(self) -> str | None:
        """Why the handshake failed, in words (OpenSSL's reason, or the verify message)."""
        err = self.handshake_error
        if err is None:
            return None
        if isinstance(err, ssl.SSLCertVerificationError):
            return str(err.verify_message)
        return str(err.reason or type(err).__name__).replace("_", " ").lower()

    def lap(self, phase: str, started: float) -> None:
        self.timings[phase] = self.timings.get(phase, 0.0) + (time.perf_counter() - started)


def converse(
    family: str,
    host: str,
    port: int,
    *,
    implicit_tls: bool,
    context: ssl.SSLContext,
    server_hostname: str,
    ehlo_name: str | None,
    limits: LinkLimits,
    deadline: float,
    tls_only: bool = False,
    injection_grace: float = INJECTION_GRACE,
    where: str | None = None,
) -> DialogueFacts:
    """Run one connection's dialogue for `family` ("smtp", "imap" or "pop3").

    `tls_only` stops right after the handshake (a version scan's connection). The
    handshake's facts are read without judging them: `context` decides what fails. `where`
    names the server in errors (default: `host:port`; the probe passes the name it resolved).
    """
    if where is None:
        where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    facts = DialogueFacts()
    talk = _FAMILIES[family]
    started = time.perf_counter()
    try:
        link = ProbeLink.connect(host, port, where=where, limits=limits, deadline=deadline)
    except MailctlError as err:
        facts.error = err
        facts.lap("connect", started)
        return facts
    facts.connected = True
    facts.lap("connect", started)
    session = _Session(
        link,
        facts,
        context=context,
        server_hostname=server_hostname,
        ehlo_name=ehlo_name,
        grace=injection_grace,
    )
    try:
        if implicit_tls and (not session.handshake() or tls_only):
            return facts
        talk(session, implicit_tls, tls_only)
    except MailctlError as err:
        facts.error = err
    finally:
        link.close()
    return facts


class _Session:
    def __init__(
        self,
        link: ProbeLink,
        facts: DialogueFacts,
        *,
        context: ssl.SSLContext,
        server_hostname: str,
        ehlo_name: str | None,
        grace: float,
    ) -> None:
        self.link = link
        self.facts = facts
        self.context = context
        self.server_hostname = server_hostname
        # RFC 5321 4.1.4: our FQDN or an address literal, as `send` says it.
        self.ehlo_name = ehlo_name or default_ehlo_name(link.sock)
        self.grace = grace

    def command(self, line: str, *, verb: str | None = None) -> None:
        self.facts.sent.append(verb or line.split(" ", 1)[0].upper())
        self.link.send(line.encode("ascii") + b"\r\n")

    def handshake(self) -> bool:
        """TLS on the connection; False (facts say why) when it failed."""
        started = time.perf_counter()
        try:
            sock = self.link.start_tls(self.context, self.server_hostname)
        except ssl.SSLError as err:
            self.facts.handshake_error = err
            return False
        finally:
            self.facts.lap("handshake", started)
        verified = True if self.context.verify_mode == ssl.CERT_REQUIRED else None
        self.facts.tls = handshake_facts(sock, verified=verified, with_chain=True)
        return True

    def check_injection(self) -> None:
        extra = self.link.unread(self.grace)
        if extra:
            self.facts.injected = excerpt(extra)

    def goodbye(self, line: str, last: Callable[[bytes], bool]) -> None:
        """Say goodbye politely, waiting briefly for the answer; never raises."""
        if self.link.failed:
            return
        self.link.deadline = min(self.link.deadline, time.monotonic() + _QUIT_SECONDS)
        try:
            self.command(line)
            self.link.read_lines(last=last)
        except MailctlError:
            pass


def _text(lines: list[bytes], *, skip: int = 0) -> str:
    return excerpt(b"\n".join(line[skip:] for line in lines))


# SMTP (RFC 5321 4.2: "250-" continues a reply, "250 " ends it)


def _smtp_last(line: bytes) -> bool:
    return len(line) < 4 or line[3:4] != b"-"


def _smtp_reply(session: _Session, where: str) -> tuple[int, list[bytes]]:
    lines = session.link.read_lines(last=_smtp_last)
    codes = {line[:3] for line in lines}
    if len(codes) != 1 or not lines[0][:3].isdigit():
        raise ProtocolError(
            f"{session.link.where} sent something that is not an SMTP reply during {where}: "
            f"{_text(lines[:1])}",
            hint="check that the port speaks SMTP",
        )
    return int(lines[0][:3]), lines


def _smtp(session: _Session, implicit_tls: bool, tls_only: bool) -> None:
    facts = session.facts
    started = time.perf_counter()
    code, lines = _smtp_reply(session, "the banner")
    facts.lap("banner", started)
    facts.banner = _text(lines, skip=4)
    if code != 220:
        # RFC 5321 3.1: 554 "no service here", 421 "busy, try later".
        facts.busy = True
        session.goodbye("QUIT", _smtp_last)
        return

    def starttls() -> tuple[bool, str]:
        session.command("STARTTLS")
        code, lines = _smtp_reply(session, "STARTTLS")
        return code == 220, _text(lines)

    # RFC 3207 4.2: forget what was learned before TLS; ask again.
    _upgrade(
        session,
        _ehlo(session),
        implicit_tls,
        tls_only,
        keyword="STARTTLS",
        starttls=starttls,
        ask_again=lambda: _ehlo(session, phase="ehlo_tls"),
        goodbye=lambda: session.goodbye("QUIT", _smtp_last),
    )


def _upgrade(
    session: _Session,
    capabilities: tuple[str, ...],
    implicit_tls: bool,
    tls_only: bool,
    *,
    keyword: str,
    starttls: Callable[[], tuple[bool, str]],
    ask_again: Callable[[], tuple[str, ...]],
    goodbye: Callable[[], None],
) -> None:
    """The TLS step every family shares, after the greeting and the first capabilities:
    with implicit TLS those are the ones over TLS; else, when `keyword` is offered, send
    `starttls` (accepted?, reply text), hand over to TLS and ask again (every RFC says to
    discard what was learned in the clear). `goodbye` ends the dialogue politely, except
    after a failed handshake or with `tls_only` (a version scan: TLS was all it wanted)."""
    facts = session.facts
    if implicit_tls:
        facts.after = capabilities
    else:
        facts.before = capabilities
        facts.starttls_offered = keyword in (c.upper() for c in capabilities)
        if not facts.starttls_offered:
            goodbye()
            return
        started = time.perf_counter()
        accepted, facts.starttls_reply = starttls()
        if not accepted:
            facts.lap("starttls", started)
            goodbye()
            return
        session.check_injection()
        facts.lap("starttls", started)
        if not session.handshake() or tls_only:
            return
        facts.after = ask_again()
    goodbye()


def _ehlo(session: _Session, *, phase: str = "ehlo") -> tuple[str, ...]:
    facts = session.facts
    started = time.perf_counter()
    session.command(f"EHLO {session.ehlo_name}")
    code, lines = _smtp_reply(session, "EHLO")
    if code != 250:
        # RFC 5321 4.1.4: a server that does not know EHLO may still take HELO.
        facts.esmtp = False
        session.command(f"HELO {session.ehlo_name}")
        _smtp_reply(session, "HELO")
        facts.lap(phase, started)
        return ()
    facts.lap(phase, started)
    return tuple(excerpt(line[4:]) for line in lines[1:])


# IMAP (RFC 3501 / 9051: tagged completion, untagged "* CAPABILITY")


def _imap(session: _Session, implicit_tls: bool, tls_only: bool) -> None:
    facts = session.facts
    started = time.perf_counter()
    greeting = session.link.read_lines(last=lambda line: True)
    facts.lap("banner", started)
    facts.banner = _text(greeting)
    head = greeting[0].upper()
    if head.startswith(b"* BYE"):
        facts.busy = True
        return
    if head.startswith(b"* PREAUTH"):
        facts.preauth = True
    elif not head.startswith(b"* OK"):
        raise ProtocolError(
            f"{session.link.where} sent something that is not an IMAP greeting: {facts.banner}",
            hint="check that the port speaks IMAP",
        )

    def starttls() -> tuple[bool, str]:
        session.command("p2 STARTTLS", verb="STARTTLS")
        lines = session.link.read_lines(last=lambda line: line.startswith(b"p2 "))
        return lines[-1].upper().startswith(b"P2 OK"), _text(lines[-1:])

    # RFC 3501 6.2.1: capabilities learned before STARTTLS are discarded.
    _upgrade(
        session,
        _imap_capabilities(session, "p1"),
        implicit_tls,
        tls_only,
        keyword="STARTTLS",
        starttls=starttls,
        ask_again=lambda: _imap_capabilities(session, "p3", phase="capability_tls"),
        goodbye=lambda: _imap_logout(session),
    )


def _imap_capabilities(
    session: _Session, tag: str, *, phase: str = "capability"
) -> tuple[str, ...]:
    started = time.perf_counter()
    session.command(f"{tag} CAPABILITY", verb="CAPABILITY")
    prefix = f"{tag} ".encode()
    lines = session.link.read_lines(last=lambda line: line.startswith(prefix))
    session.facts.lap(phase, started)
    found: list[str] = []
    for line in lines:
        if line.upper().startswith(b"* CAPABILITY "):
            found += excerpt(line[13:]).split()
    return tuple(found)


def _imap_logout(session: _Session) -> None:
    session.goodbye("p9 LOGOUT", lambda line: line.startswith(b"p9 "))


# POP3 (RFC 1939, RFC 2449 CAPA, RFC 2595 STLS)


def _pop3(session: _Session, implicit_tls: bool, tls_only: bool) -> None:
    facts = session.facts
    started = time.perf_counter()
    greeting = session.link.read_lines(last=lambda line: True)
    facts.lap("banner", started)
    facts.banner = _text(greeting)
    if not greeting[0].startswith(b"+OK"):
        facts.busy = True
        return

    def stls() -> tuple[bool, str]:
        session.command("STLS")
        lines = session.link.read_lines(last=lambda line: True)
        return lines[0].startswith(b"+OK"), _text(lines)

    # RFC 2595 4: the client must discard what it learned before STLS.
    _upgrade(
        session,
        _capa(session),
        implicit_tls,
        tls_only,
        keyword="STLS",
        starttls=stls,
        ask_again=lambda: _capa(session, phase="capability_tls"),
        goodbye=lambda: _pop3_quit(session),
    )


def _capa(session: _Session, *, phase: str = "capability") -> tuple[str, ...]:
    started = time.perf_counter()
    session.command("CAPA")
    first = session.link.read_lines(last=lambda line: True)
    if not first[0].startswith(b"+OK"):
        session.facts.lap(phase, started)
        return ()  # RFC 2449 5: a server without CAPA answers -ERR
    lines = session.link.read_lines(last=lambda line: line == b".")
    session.facts.lap(phase, started)
    return tuple(excerpt(line) for line in lines[:-1])


def _pop3_quit(session: _Session) -> None:
    session.goodbye("QUIT", lambda line: True)


_FAMILIES: dict[str, Callable[[_Session, bool, bool], None]] = {
    "smtp": _smtp,
    "imap": _imap,
    "pop3": _pop3,
}
