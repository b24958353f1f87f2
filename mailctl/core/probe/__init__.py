"""`mailctl probe`: a mail server's TLS, STARTTLS, AUTH and DNS mail policy in one report."""
