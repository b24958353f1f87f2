"""Name resolution without connecting: is a target host loopback-only (bench's safety check)."""

from __future__ import annotations

import ipaddress
import socket

from mailctl.errors import HostNotFoundError

__all__ = ["is_loopback_only", "resolve_addresses"]


def resolve_addresses(host: str, port: int) -> tuple[str, ...]:
    """Every address `host` resolves to (an IP literal resolves to itself, with no lookup).

    Uses getaddrinfo only: no socket is opened and the target is never contacted.
    Raises HostNotFoundError.
    """
    literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return (str(ipaddress.ip_address(literal)),)
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(literal, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as err:
        raise HostNotFoundError(
            f"cannot connect to {host!r}: host not found",
            hint="check the host name",
            details={"resolver": str(getattr(err, "strerror", None) or err)},
        ) from err
    return tuple(dict.fromkeys(str(info[4][0]) for info in infos))


def is_loopback_only(host: str, port: int) -> tuple[bool, tuple[str, ...]]:
    """Whether every address of `host` is loopback (127/8, ::1), with the addresses.

    A name alone ("localhost") proves nothing: a resolver or /etc/hosts may point it
    anywhere, so every resolved address is checked.
    """
    addresses = resolve_addresses(host, port)
    loopback = bool(addresses) and all(
        ipaddress.ip_address(address.split("%", 1)[0]).is_loopback for address in addresses
    )
    return loopback, addresses
