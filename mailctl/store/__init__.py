"""Atomic writers for .eml, Maildir and mbox: temp file, fsync, rename."""
