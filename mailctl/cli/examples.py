"""The Examples section of every command's --help: what each example shows, and the command.

Keyed by command path as Click names it (`mailctl account add`). Every command has an entry
(tests/test_help.py checks it, parses every example with the real parser and runs those that
need no server in --dry-run or against a temp config). An example is one shell line; a long
one is split into `\\`-continued lines (`Example.lines`), so a terminal 80 columns wide never
wraps it in the middle of a word and it can be copied as is. In a narrower terminal
cli/helptext.py breaks the command anew between shell words (and wraps the comment), so it
still pastes as the same command. The files the examples name (notes.txt, report.pdf,
message.eml, baseline.json) are the reader's own.
"""

from __future__ import annotations

from typing import Final, NamedTuple

# Columns an example line may take: 80, minus the three-space indent and a trailing " \"
# (in a narrower terminal cli/helptext.py breaks the command anew).
WIDTH: Final = 75


class Example(NamedTuple):
    what: str  # printed as a shell comment above the command
    parts: tuple[str, ...]  # the command line, in pieces that each fit WIDTH
    terminal: bool = False  # asks questions: needs a person at a terminal (tests only parse it)

    @property
    def command(self) -> str:
        """The example as one line (what a shell runs)."""
        return " ".join(self.parts)

    @property
    def lines(self) -> list[str]:
        """The example as printed: every piece but the last ends in a continuation."""
        last = len(self.parts) - 1
        return [
            ("  " if i else "") + part + (" \\" if i < last else "")
            for i, part in enumerate(self.parts)
        ]


def _ex(what: str, *parts: str, terminal: bool = False) -> Example:
    return Example(what, parts, terminal)


EXAMPLES: Final[dict[str, tuple[Example, ...]]] = {
    "mailctl": (
        _ex("Benchmark SMTP sending against the embedded sink", "mailctl bench --compare"),
        _ex(
            "See a message without sending it",
            "mailctl send --dry-run --from me@example.org --to you@example.org",
            "--subject Hello --body Hi",
        ),
        _ex("Run a local dev mail server that keeps what arrives", "mailctl sink --maildir inbox"),
        _ex(
            "Add an account; on a terminal, mailctl asks for the rest",
            "mailctl account add work",
            terminal=True,
        ),
        _ex("Help on one command", "mailctl send --help"),
    ),
    "mailctl send": (
        _ex(
            "Through the default account",
            "mailctl send --to bob@example.org --subject Hello --body 'See you at 5.'",
        ),
        _ex(
            "With an attachment, the body from a file, through account work",
            "mailctl send -A work --to bob@example.org --subject Report",
            "--body-file notes.txt --attach report.pdf",
        ),
        _ex(
            "Print the exact bytes and envelope; connect to nothing",
            "mailctl send --dry-run --from me@example.org --to bob@example.org --body Hi",
        ),
        _ex(
            "An existing message as is, to the recipients given here",
            "mailctl send --eml message.eml --to bob@example.org",
        ),
        _ex(
            "Without an account, to a local sink that speaks no TLS",
            "mailctl send --server 127.0.0.1:2525 --no-tls --from me@example.org",
            "--to bob@example.org --body Hi",
        ),
    ),
    "mailctl sendmail": (
        _ex(
            "Recipients from the message's To/Cc/Bcc (-t), as cron and mutt do",
            "printf 'To: bob@example.org\\nSubject: hi\\n\\nhello\\n' | mailctl sendmail -t",
        ),
        _ex(
            "Through account work, sender and recipient as arguments",
            "mailctl sendmail -a work -f me@example.org bob@example.org < message.eml",
        ),
        _ex(
            "As git send-email and mutt call it (-oi: a lone dot is text)",
            "mailctl sendmail -oi -t -f me@example.org < message.eml",
        ),
    ),
    "mailctl parse": (
        _ex(
            "Read a saved message: headers, hops, verdicts, attachments, text",
            "mailctl parse message.eml",
        ),
        _ex(
            "Save its attachments (safe names, never over a file)",
            "mailctl parse message.eml --attachments files",
        ),
        _ex(
            "The whole message as JSON, from standard input", "mailctl parse --json - < message.eml"
        ),
    ),
    "mailctl sink": (
        _ex("Discard and count on 127.0.0.1:2525 until Ctrl-C", "mailctl sink"),
        _ex("A catch-all dev mail server that keeps a Maildir", "mailctl sink --maildir inbox"),
        _ex(
            "STARTTLS and AUTH (mailctl/mailctl), any free port, written to sink.json",
            "mailctl sink --starttls --auth --listen 127.0.0.1:0 --ready-file sink.json",
        ),
        _ex(
            "Refuse 10% of recipients with 451, reproducibly",
            "mailctl sink --reject-rate 0.1 --reject-code 451 --reject-on rcpt --seed 1",
        ),
    ),
    "mailctl bench": (
        _ex("2000 messages, 10 connections, pipelined, into the embedded sink", "mailctl bench"),
        _ex("Connection per message vs pool vs pipelining", "mailctl bench --compare"),
        _ex(
            "30 s at an offered 2000 msg/s against a server of your own",
            "mailctl bench --server 127.0.0.1:2525 --no-tls --duration 30 --rate 2000",
        ),
        _ex(
            "Save a baseline; later, exit 79 if QPS or p99 got worse",
            "mailctl bench --json > baseline.json",
        ),
        _ex(
            "Compare with the saved baseline",
            "mailctl bench --baseline baseline.json --max-regression 10%",
        ),
    ),
    "mailctl bulk-send": (
        _ex(
            "Dry run: check every row, print the first message, send nothing",
            "mailctl bulk-send contacts.csv letter.txt",
        ),
        _ex(
            "Send for real through the account's server, 4 connections, 20 msg/s",
            "mailctl bulk-send contacts.csv letter.txt --send --rate 20/s",
        ),
        _ex(
            "Try it on a local sink first (mailctl sink --maildir inbox elsewhere)",
            "mailctl bulk-send contacts.csv letter.txt --send --server 127.0.0.1:2525",
            "--no-tls",
        ),
        _ex(
            "Resume after Ctrl-C or a crash: the same command; nothing is sent twice",
            "mailctl bulk-send contacts.csv letter.txt --send",
        ),
    ),
    "mailctl fetch": (
        _ex("List the unseen messages of the default account's INBOX", "mailctl fetch --unseen"),
        _ex(
            "Keep new mail in a Maildir with attachments saved; again: only what is new",
            "mailctl fetch --new --maildir ~/Mail/inbox --attachments ~/Mail/files",
        ),
        _ex(
            "Over POP3, deleting each message once it is on disk",
            "mailctl fetch --pop3 --new --maildir ~/Mail/inbox --delete",
        ),
        _ex(
            "One JSON object per message from a folder, for a script",
            "mailctl fetch --folder Lists --since 2026-01-01 --from alice --jsonl",
        ),
        _ex(
            "Wait for new mail (IMAP IDLE) and keep it as it arrives",
            "mailctl fetch --new --maildir ~/Mail/inbox --watch",
        ),
    ),
    "mailctl folders": (
        _ex("The folders of the default account with their counts", "mailctl folders"),
        _ex(
            "Without an account, from a local Dovecot",
            "mailctl folders --server 127.0.0.1:993 --user alice --ca-file ca.pem",
        ),
    ),
    "mailctl probe": (
        _ex(
            "Check a submission server's STARTTLS, TLS and AUTH",
            "mailctl probe mail.example.org:587",
        ),
        _ex(
            "Monitoring: exit 1 when anything at warning or worse is found",
            "mailctl probe mail.example.org:993 --json --fail-on warning",
        ),
        _ex(
            "A local test server on another port, its private CA trusted",
            "mailctl probe 127.0.0.1:2525 --protocol submission --ca-file ca.pem",
        ),
    ),
    "mailctl completion": (
        _ex(
            "Install for bash (new shells complete mailctl)",
            "mailctl completion bash > ~/.local/share/bash-completion/completions/mailctl",
        ),
        _ex(
            "Install for zsh (a folder on your $fpath)",
            "mailctl completion zsh > ~/.zfunc/_mailctl",
        ),
        _ex(
            "Install for fish",
            "mailctl completion fish > ~/.config/fish/completions/mailctl.fish",
        ),
    ),
    "mailctl account": (
        _ex("List the accounts", "mailctl account list"),
        _ex(
            "Add one from flags, password in the keyring from stdin",
            "printf '%s\\n' \"$PASS\" | mailctl account add work --from me@example.com",
            "--smtp-host smtp.example.com --smtp-user me --password-stdin",
        ),
        _ex("Log in to each of its servers", "mailctl account test work"),
    ),
    "mailctl account add": (
        _ex(
            "On a terminal: asks for whatever is missing", "mailctl account add work", terminal=True
        ),
        _ex(
            "From flags: SMTP with STARTTLS on 587, the default account",
            'mailctl account add work --from "Alice <alice@example.com>"',
            "--smtp-host smtp.example.com --smtp-user alice --default",
        ),
        _ex(
            "A local sink: its certificate, a password command",
            "mailctl account add local --smtp-host 127.0.0.1 --smtp-port 2525",
            "--smtp-user mailctl --smtp-password-command 'echo mailctl'",
            "--ca-file cert.pem",
        ),
    ),
    "mailctl account set": (
        _ex("Change one setting, keep the rest", "mailctl account set work --smtp-port 2525"),
        _ex(
            "Add an IMAP server to an account",
            "mailctl account set work --imap-host imap.example.com --imap-user alice",
        ),
        _ex(
            "Connect by IP, check the certificate's name",
            "mailctl account set work --smtp-host 192.0.2.7",
            "--smtp-tls-name smtp.example.com",
        ),
        _ex("Send without logging in", "mailctl account set work --smtp-user -"),
    ),
    "mailctl account list": (
        _ex("The accounts; * marks the default", "mailctl account list"),
        _ex("As JSON", "mailctl account list --json"),
    ),
    "mailctl account show": (
        _ex("Every setting of the default account", "mailctl account show"),
        _ex("Of account work, as JSON", "mailctl account show work --json"),
    ),
    "mailctl account remove": (
        _ex("Asks first on a terminal", "mailctl account remove work", terminal=True),
        _ex("In a script", "mailctl account remove work --yes"),
    ),
    "mailctl account set-password": (
        _ex(
            "Asks twice on a terminal; stored for every server",
            "mailctl account set-password work",
            terminal=True,
        ),
        _ex(
            "From a password manager, for SMTP only",
            "pass show mail/work | mailctl account set-password work -p smtp --stdin",
        ),
    ),
    "mailctl account test": (
        _ex("Log in to every server of the default account", "mailctl account test"),
        _ex("Only the IMAP server of account work", "mailctl account test work -p imap"),
    ),
}
