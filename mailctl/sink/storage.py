"""Where accepted messages go: the Maildir or mbox writer a SinkConfig asks for, trace included."""

from __future__ import annotations

from collections.abc import Callable

from mailctl.sink.config import SinkConfig, StoreKind

MessageStore = Callable[[bytes, bytes, list[bytes]], None]
"""Keeps one accepted message: (dot-stuffed wire content, envelope sender, recipients)."""


def open_store(config: SinkConfig) -> tuple[MessageStore | None, Callable[[], None] | None]:
    """Open the configured store; return its writer (None: discard) and its closer, if any.

    Raises what the Maildir/mbox constructors raise (CantCreateError) when the folder or file
    cannot be made.
    """
    if config.store is StoreKind.DISCARD or config.store_path is None:
        return None, None
    from mailctl.mime.compose import dot_unstuff

    if config.store is StoreKind.MAILDIR:
        from mailctl.store.maildir import Maildir

        maildir = Maildir(config.store_path)

        def to_maildir(wire: bytes, sender: bytes, rcpts: list[bytes]) -> None:
            maildir.deliver(_trace(sender, rcpts) + dot_unstuff(wire))

        return to_maildir, None

    from mailctl.store.mbox import Mbox

    mbox = Mbox(config.store_path)

    def to_mbox(wire: bytes, sender: bytes, rcpts: list[bytes]) -> None:
        mbox.deliver(
            _trace(sender, rcpts) + dot_unstuff(wire),
            sender=sender.decode("utf-8", "replace"),
        )

    return to_mbox, mbox.close


def _trace(sender: bytes, rcpts: list[bytes]) -> bytes:
    """The trace header block prepended to a stored message.

    RFC 5321 4.4: the final delivery adds Return-Path with the envelope sender. The envelope
    recipients are kept as one X-Mailctl-Rcpt header each, since the headers of a Bcc'd or
    forwarded message do not name them. Both values came through command lines, which
    cannot hold CR or LF, so they cannot inject headers.
    """
    lines = [b"Return-Path: <", sender, b">\r\n"]
    for rcpt in rcpts:
        lines += (b"X-Mailctl-Rcpt: <", rcpt, b">\r\n")
    return b"".join(lines)
