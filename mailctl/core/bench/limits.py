"""The descriptor budget of a bench run: RLIMIT_NOFILE against the concurrency, checked first.

Every connection is a file descriptor in mailctl and, with the embedded sink, another one in
the sink's process, which inherits this process's limits. Running out halfway makes socket()
fail with EMFILE in hundreds of connections at once, so the limit is checked before any
socket exists: the soft limit is raised toward the hard one when that is enough (what a
shell's `ulimit -n` would do), else the run is refused with the largest concurrency that fits.
Lowering the concurrency silently instead would measure a different benchmark than asked.
"""

from __future__ import annotations

from mailctl.errors import UsageError

__all__ = ["DESCRIPTOR_RESERVE", "ensure_descriptors"]

# Descriptors besides the connections: stdio, the event loop (epoll, self-pipe), the
# listening socket and log file of the embedded sink, TLS files, a --csv or profile file,
# and a connection still closing while its successor opens.
DESCRIPTOR_RESERVE = 64


def ensure_descriptors(concurrency: int) -> None:
    """Make room for `concurrency` connections, raising the soft RLIMIT_NOFILE if needed.

    Raises UsageError naming the limit and the fix when the hard limit is too low.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX (Windows): nothing to check here
        return
    need = concurrency + DESCRIPTOR_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return
    if hard == resource.RLIM_INFINITY or hard >= need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
            return
        except (ValueError, OSError):  # e.g. macOS caps it below an "unlimited" hard limit
            pass
    ceiling = soft if hard == resource.RLIM_INFINITY else max(soft, hard)
    fits = max(ceiling - DESCRIPTOR_RESERVE, 0)
    raise UsageError(
        f"--concurrency {concurrency} needs about {need} open files, but ulimit -n allows "
        f"{ceiling} here",
        hint=(f"use -c {fits} or less, or " if fits else "")
        + f"raise the limit with ulimit -n {need}; above the hard limit ({ceiling}) that "
        "needs root or /etc/security/limits.conf",
    )
