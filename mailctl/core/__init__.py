"""Use cases, one per command: typed requests in, models out, MailctlError on failure."""
