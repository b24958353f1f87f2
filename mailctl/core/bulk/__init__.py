"""bulk-send: one personalised message per CSV row, through the session pool, never losing a row."""
