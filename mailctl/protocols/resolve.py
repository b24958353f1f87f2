"""Host name lookups bounded in time, and whether a target is loopback-only (bench's check).

The system resolver (getaddrinfo) has no timeout a caller can set: resolv.conf's
``timeout:``/``attempts:`` and a silent name server can hold it for tens of seconds, and
socket.create_connection does the lookup before its own timeout starts. Every lookup
mailctl makes through the system resolver goes through `lookup`/`lookup_async`, which wait
at most the caller's budget. The lookup itself cannot be cancelled, so it runs in a daemon
thread that is left behind on timeout (a thread pool's worker would be joined at exit,
which is the very hang this avoids).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mailctl.errors import HostNotFoundError, TimeoutFailure

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "ResolverTimeout",
    "address_literal",
    "connect_within",
    "is_loopback_only",
    "lookup",
    "lookup_async",
    "resolve_addresses",
    "resolver_timeout_error",
]

AddrInfo = tuple[Any, ...]
# The budget of a lookup nobody gave one (bench's loopback check): glibc's own default
# (5 s per try, 2 tries) plus a margin.
DEFAULT_LOOKUP_SECONDS = 12.0


class ResolverTimeout(socket.gaierror):
    """The system resolver gave no answer within the caller's budget.

    A gaierror (EAI_AGAIN, what glibc itself says when its name servers time out), so every
    place that maps a failed lookup sees it; `resolver_timeout_error` words it as a timeout.
    """

    def __init__(self, host: str, seconds: float) -> None:
        super().__init__(
            socket.EAI_AGAIN, f"the system resolver gave no answer for {host} in {seconds:.3g} s"
        )
        self.host = host
        self.seconds = seconds


def resolver_timeout_error(err: ResolverTimeout, where: str) -> TimeoutFailure:
    """The one user-facing error for a lookup that ran out of time (exit 75: try again)."""
    return TimeoutFailure(
        f"cannot connect to {where}: {err.strerror}",
        hint="check the name servers in /etc/resolv.conf and the network, or use an IP address",
    )


def address_literal(host: str, port: int | None) -> list[AddrInfo] | None:
    """getaddrinfo for an IP address, which needs no resolver; None for a host name.

    AI_NUMERICHOST answers an address at once and refuses a name without asking DNS. The
    host goes as ASCII bytes: a str would be IDNA-encoded, importing that codec (~0.5 ms).
    """
    try:
        return socket.getaddrinfo(
            host.encode("ascii"), port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST
        )
    except (socket.gaierror, UnicodeError):
        return None


def _ask(
    host: str, port: int | None, done: Callable[[list[AddrInfo] | BaseException], None]
) -> None:
    try:
        infos: list[AddrInfo] | BaseException = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM
        )
    except BaseException as err:  # handed to the waiting caller, raised there
        infos = err
    done(infos)


def _start(
    host: str, port: int | None, done: Callable[[list[AddrInfo] | BaseException], None]
) -> None:
    threading.Thread(
        target=_ask, args=(host, port, done), name="mailctl-lookup", daemon=True
    ).start()


def _unpack(result: list[AddrInfo] | BaseException) -> list[AddrInfo]:
    if isinstance(result, BaseException):
        raise result
    return result


def lookup(host: str, port: int | None, timeout: float) -> list[AddrInfo]:
    """getaddrinfo(host, port, SOCK_STREAM) within `timeout` seconds.

    Raises socket.gaierror (ResolverTimeout when out of time) and UnicodeError (a name the
    IDNA codec refuses), as getaddrinfo does.
    """
    literal = address_literal(host, port)
    if literal is not None:
        return literal
    answered = threading.Event()
    box: list[list[AddrInfo] | BaseException] = []

    def done(result: list[AddrInfo] | BaseException) -> None:
        box.append(result)
        answered.set()

    _start(host, port, done)
    if not answered.wait(max(timeout, 0.0)):
        raise ResolverTimeout(host, timeout)
    return _unpack(box[0])


async def lookup_async(host: str, port: int | None, timeout: float) -> list[AddrInfo]:
    """`lookup` for the event loop: the loop keeps running while the resolver thinks."""
    import asyncio  # only async callers, which have it loaded: fetch's path does not

    literal = address_literal(host, port)
    if literal is not None:
        return literal
    loop = asyncio.get_running_loop()
    future: asyncio.Future[list[AddrInfo] | BaseException] = loop.create_future()

    def settle(result: list[AddrInfo] | BaseException) -> None:
        if not future.done():
            future.set_result(result)

    def done(result: list[AddrInfo] | BaseException) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed after giving up on it
            loop.call_soon_threadsafe(settle, result)

    _start(host, port, done)
    try:
        result = await asyncio.wait_for(future, max(timeout, 0.0))
    except TimeoutError as err:
        raise ResolverTimeout(host, timeout) from err
    return _unpack(result)


def connect_within(host: str, port: int, timeout: float) -> socket.socket:
    """socket.create_connection, with the lookup inside the same `timeout`.

    Each address gets what is left of the budget, in the resolver's order. Raises what
    create_connection raises: socket.gaierror (ResolverTimeout included), TimeoutError,
    OSError.
    """
    deadline = time.monotonic() + timeout
    infos = lookup(host, port, timeout)
    last_error: OSError | None = None
    for family, kind, proto, _, address in infos:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"timed out connecting to {host}:{port}")
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(left)
            sock.connect(address)
        except OSError as err:
            sock.close()
            if isinstance(err, TimeoutError):
                raise
            last_error = err
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise last_error or OSError(f"no address found for {host}")


def resolve_addresses(
    host: str, port: int, timeout: float = DEFAULT_LOOKUP_SECONDS
) -> tuple[str, ...]:
    """Every address `host` resolves to (an IP literal resolves to itself, with no lookup).

    Uses getaddrinfo only: no socket is opened and the target is never contacted.
    Raises HostNotFoundError, TimeoutFailure.
    """
    literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return (str(ipaddress.ip_address(literal)),)
    except ValueError:
        pass
    try:
        infos = lookup(literal, port, timeout)
    except ResolverTimeout as err:
        raise resolver_timeout_error(err, repr(host)) from err
    except (socket.gaierror, UnicodeError) as err:
        raise HostNotFoundError(
            f"cannot connect to {host!r}: host not found",
            hint="check the host name",
            details={"resolver": str(getattr(err, "strerror", None) or err)},
        ) from err
    return tuple(dict.fromkeys(str(info[4][0]) for info in infos))


def is_loopback_only(
    host: str, port: int, *, timeout: float = DEFAULT_LOOKUP_SECONDS
) -> tuple[bool, tuple[str, ...]]:
    """Whether every address of `host` is loopback (127/8, ::1), with the addresses.

    A name alone ("localhost") proves nothing: a resolver or /etc/hosts may point it
    anywhere, so every resolved address is checked.
    """
    addresses = resolve_addresses(host, port, timeout)
    loopback = bool(addresses) and all(
        ipaddress.ip_address(address.split("%", 1)[0]).is_loopback for address in addresses
    )
    return loopback, addresses
