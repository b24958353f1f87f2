"""IMAP sessions under mailctl's bounded reads: `ImapSession` (`.check` for `account test`)."""

from mailctl.protocols.imap.session import ImapSession

__all__ = ["ImapSession"]
