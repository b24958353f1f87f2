"""The EHLO name mailctl gives when none is configured (RFC 5321 4.1.4), for every SMTP client.

Its own module, outside protocols/smtp, so the probe's dialogue can use it without importing
aiosmtplib.
"""

from __future__ import annotations

import socket

from mailctl.hosts import ehlo_problem


def default_ehlo_name(sock: socket.socket) -> str:
    """RFC 5321 4.1.4: our FQDN, or an address literal when the host has none.

    socket.getfqdn() can block for seconds on a broken resolver; the host name plus a
    dot check is instant and an address literal is always acceptable.
    """
    name = socket.gethostname()
    if "." in name.strip(".") and ehlo_problem(name) is None and not name.endswith(".localdomain"):
        return name
    try:
        local = str(sock.getsockname()[0])
    except OSError:
        return "localhost"  # the connection is already gone; EHLO will fail anyway
    # RFC 5321 4.1.3: IPv6 literals carry an "IPv6:" tag.
    return f"[IPv6:{local}]" if ":" in local else f"[{local}]"
