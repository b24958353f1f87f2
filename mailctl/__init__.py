"""mailctl: a command-line mail toolkit. Imports nothing so that start-up stays fast."""

__version__ = "0.1.0"
