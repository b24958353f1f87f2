"""bulk-send: one personalised message per CSV row, fast, polite, and never losing a row.

`run` (`bulk_send`: validation, dry run, the send), `engine` (the send loop over the core
session pool), `models` (request, result, progress, the stop switch), `rows` (the CSV
stream) and `journal` (the SQLite journal of every row's state) are its parts.
"""
