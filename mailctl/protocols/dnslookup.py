"""DNS lookups for the probe's mail policy checks (dnspython): one query each, bounded in
time and size, answered as data (`Answer`), never as an exception."""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.resolver

from mailctl.errors import UsageError
from mailctl.hosts import to_ascii_domain
from mailctl.protocols.resolve import ResolverTimeout, lookup
from mailctl.text import quote

T = TypeVar("T")

# A DNS message is at most 65,535 bytes (RFC 1035 4.2.2's length prefix), so one answer is
# bounded by the wire; these caps bound what we keep of it.
MAX_VALUES = 64
# One TXT record's strings joined (RFC 7208 3.3, RFC 8461 3.1). Mail policy records are a few
# hundred bytes; a value longer than this is kept cut at TXT_LIMIT + 1 so callers can tell.
TXT_LIMIT = 4096
# EDNS(0) payload size of the DNS flag day 2020: larger answers come back truncated over UDP
# and dnspython asks again over TCP (RFC 7766).
EDNS_PAYLOAD = 1232


class Status(StrEnum):
    """How a lookup ended."""

    OK = "ok"  # records of the type asked for
    NXDOMAIN = "nxdomain"  # the name does not exist
    NODATA = "nodata"  # the name exists, no records of that type
    TIMEOUT = "timeout"  # no answer within the time given
    FAILED = "failed"  # SERVFAIL, REFUSED, a CNAME loop, a malformed answer


@dataclass(frozen=True)
class Answer(Generic[T]):
    """One lookup: its values (at most MAX_VALUES) and the AD bit as the resolver set it.

    `ad` is what the resolver said (RFC 4035 3.2.3, RFC 6840 5.7): mailctl validates no
    signatures itself, so it is only as good as the path to a validating resolver.
    `canonical` is the name the answer is for once CNAMEs are followed (dnspython's
    canonical_name, no final dot): `name` itself when it is no alias, None when the lookup
    got no answer (NXDOMAIN, a timeout, a failure).
    """

    name: str
    rdtype: str
    status: Status
    values: tuple[T, ...] = ()
    ad: bool = False
    detail: str | None = None
    canonical: str | None = None

    @property
    def found(self) -> bool:
        return self.status is Status.OK and bool(self.values)


@dataclass(frozen=True)
class MxValue:
    preference: int
    exchange: str  # "." for a null MX (RFC 7505)


@dataclass(frozen=True)
class TlsaValue:
    usage: int
    selector: int
    matching: int
    data: bytes


def check_nameserver(nameserver: str) -> str:
    """Return `nameserver` as an IP address string; raise UsageError for anything else.

    A host name would need a resolver to find the resolver; the system's would then decide
    where every lookup goes, which is what naming a nameserver exists to override.
    """
    try:
        return str(ipaddress.ip_address(nameserver))
    except ValueError:
        raise UsageError(
            f"nameserver {quote(nameserver)} is not an IP address",
            hint="give the DNS server's IP address, such as 127.0.0.1",
        ) from None


class Resolver:
    """Lookups against one nameserver (or the system's), each bounded by `timeout` seconds."""

    def __init__(self, *, nameserver: str | None, port: int = 53, timeout: float = 5.0) -> None:
        if nameserver is None:
            resolver = dns.resolver.Resolver(configure=True)
        else:
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = [check_nameserver(nameserver)]
            resolver.port = port
        resolver.cache = None
        # RFC 6840 5.7: a query with AD set asks the resolver to report whether it validated.
        resolver.flags = dns.flags.RD | dns.flags.AD
        resolver.use_edns(0, 0, EDNS_PAYLOAD)
        resolver.retry_servfail = False
        self._resolver = resolver
        self.timeout = timeout

    def mx(self, name: str, *, timeout: float | None = None) -> Answer[MxValue]:
        answer, records = self._query(name, "MX", timeout)
        values = tuple(
            MxValue(int(r.preference), r.exchange.to_text(omit_final_dot=True) or ".")
            for r in records
        )
        return _with(answer, values)

    def txt(self, name: str, *, timeout: float | None = None) -> Answer[bytes]:
        """TXT records, each one's strings joined without spaces (RFC 7208 3.3)."""
        answer, records = self._query(name, "TXT", timeout)
        values = tuple(_join_strings(r.strings) for r in records)
        return _with(answer, values)

    def addresses(self, name: str, *, timeout: float | None = None) -> Answer[str]:
        """A then AAAA records; OK when either has one. Bounded by one `timeout` in all."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        first, v4 = self._query(name, "A", timeout)
        if first.status in (Status.NXDOMAIN, Status.TIMEOUT):
            return first
        left = max(0.05, deadline - time.monotonic())
        second, v6 = self._query(name, "AAAA", left)
        values = tuple(r.address for r in (*v4, *v6))[:MAX_VALUES]
        canonical = first.canonical or second.canonical
        if values:
            return Answer(
                name, "A/AAAA", Status.OK, values, first.ad and second.ad, canonical=canonical
            )
        worst = second if second.status is not Status.NODATA else first
        return Answer(name, "A/AAAA", worst.status, (), worst.ad, worst.detail, canonical)

    def tlsa(self, name: str, *, timeout: float | None = None) -> Answer[TlsaValue]:
        answer, records = self._query(name, "TLSA", timeout)
        values = tuple(
            TlsaValue(int(r.usage), int(r.selector), int(r.mtype), bytes(r.cert)) for r in records
        )
        return _with(answer, values)

    def _query(  # noqa: PLR0911 - one return per way a lookup ends
        self, name: str, rdtype: str, timeout: float | None
    ) -> tuple[Answer[Any], list[Any]]:
        lifetime = self.timeout if timeout is None else timeout
        try:
            qname = dns.name.from_text(to_ascii_domain(name.rstrip(".")) + ".")
        except (UnicodeError, dns.exception.DNSException) as err:
            return Answer(name, rdtype, Status.FAILED, detail=f"not a domain name: {err}"), []
        try:
            result = self._resolver.resolve(
                qname, rdtype, search=False, raise_on_no_answer=False, lifetime=lifetime
            )
        except dns.resolver.NXDOMAIN:
            return Answer(name, rdtype, Status.NXDOMAIN), []
        except dns.exception.Timeout:
            where = self._where()
            return Answer(
                name, rdtype, Status.TIMEOUT, detail=f"no answer from {where} in {lifetime:g} s"
            ), []
        except dns.resolver.NoNameservers as err:
            return Answer(name, rdtype, Status.FAILED, detail=_no_nameservers(err)), []
        except dns.message.ChainTooLong:
            return Answer(name, rdtype, Status.FAILED, detail="CNAME chain too long (a loop?)"), []
        except dns.exception.DNSException as err:
            text = " ".join(str(err).split())[:200] or type(err).__name__
            return Answer(name, rdtype, Status.FAILED, detail=text), []
        ad = bool(result.response.flags & dns.flags.AD)
        canonical = result.canonical_name.to_text(omit_final_dot=True)
        if result.rrset is None:
            return Answer(name, rdtype, Status.NODATA, ad=ad, canonical=canonical), []
        found = list(result.rrset)[:MAX_VALUES]
        return Answer(name, rdtype, Status.OK, ad=ad, canonical=canonical), found

    def _where(self) -> str:
        servers = self._resolver.nameservers
        return ", ".join(str(s) for s in servers[:3]) or "the system resolver"


def _with(answer: Answer[Any], values: tuple[T, ...]) -> Answer[T]:
    return Answer(
        answer.name,
        answer.rdtype,
        answer.status,
        values,
        answer.ad,
        answer.detail,
        answer.canonical,
    )


def _join_strings(strings: Any) -> bytes:
    joined = b""
    for part in strings:
        joined += bytes(part)
        if len(joined) > TXT_LIMIT:
            return joined[: TXT_LIMIT + 1]
    return joined


def _no_nameservers(err: Any) -> str:
    """SERVFAIL/REFUSED or a CNAME loop in a few words, not dnspython's paragraph.

    dnspython lists (server, tcp, port, error, response) per server it tried.
    """
    errors = err.kwargs.get("errors", []) if hasattr(err, "kwargs") else []
    for entry in errors:
        problem = entry[3] if isinstance(entry, tuple) and len(entry) > 4 else None
        response = entry[4] if isinstance(entry, tuple) and len(entry) > 4 else None
        if isinstance(problem, dns.message.ChainTooLong):
            return "CNAME chain too long (a loop?)"
        if isinstance(response, dns.message.Message) and response.rcode() != dns.rcode.NOERROR:
            return f"the server answered {dns.rcode.to_text(response.rcode())}"
        if problem is not None:
            return " ".join(str(problem).split())[:200] or type(problem).__name__
    return "no server could answer"


def host_addresses(
    name: str, *, resolver: Resolver | None, timeout: float
) -> tuple[tuple[str, ...], str | None, bool]:
    """The addresses of host `name` (A then AAAA), through `resolver` when given (--nameserver),
    else the system's (getaddrinfo, so /etc/hosts counts), within `timeout` either way:
    (addresses, None, False), or ((), why, whether the lookup ran out of time).

    The probe resolves a host once and connects to the address, timing the lookup as its own
    phase; the name stays the certificate's name and the SNI.
    """
    if resolver is not None:
        answer = resolver.addresses(name, timeout=timeout)
        if answer.found:
            return answer.values, None, False
        why = {
            Status.NXDOMAIN: "no such name",
            Status.NODATA: "no address records",
            Status.TIMEOUT: answer.detail or "no answer",
        }.get(answer.status, answer.detail or "the lookup failed")
        return (), why, answer.status is Status.TIMEOUT
    try:
        infos = lookup(name, None, timeout)
    except ResolverTimeout as err:
        return (), str(err.strerror), True
    except (socket.gaierror, UnicodeError) as err:
        return (), str(getattr(err, "strerror", None) or err), False
    found: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in found:
            found.append(address)
    return tuple(found[:MAX_VALUES]), None, False
