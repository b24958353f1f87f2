"""The embedded SMTP server: `mailctl sink`, `bench`'s default target, and tests' fault injector."""
