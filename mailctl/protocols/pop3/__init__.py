"""POP3 sessions (poplib under mailctl's bounded reads): `Pop3Session`, `check_pop3`."""

from mailctl.protocols.pop3.session import Pop3Session, check_pop3

__all__ = ["Pop3Session", "check_pop3"]
