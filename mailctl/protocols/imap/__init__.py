"""IMAP sessions (imapclient under mailctl's bounded reads): `ImapSession`, `check_imap`."""

from mailctl.protocols.imap.session import ImapSession, check_imap

__all__ = ["ImapSession", "check_imap"]
