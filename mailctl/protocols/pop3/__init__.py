"""POP3 sessions under mailctl's bounded reads: `Pop3Session` (`.check` for `account test`)."""

from mailctl.protocols.pop3.session import Pop3Session

__all__ = ["Pop3Session"]
