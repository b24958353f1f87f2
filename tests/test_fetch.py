"""`mailctl folders` and `mailctl fetch` against a real Dovecot: listings, destinations,
--new across runs (IMAP and POP3), a UIDVALIDITY change, server changes only when asked."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from servers.dovecot import DovecotServer, DovecotUser
from typer.testing import CliRunner, Result

from mailctl.cli.app import app
from mailctl.models import Protocol, Security
from mailctl.protocols.imap import ImapSession
from mailctl.protocols.imap.search import SearchCriteria


def mail(
    subject: str, *, attachment: tuple[str, bytes] | None = None, sender: str = "a@example.org"
) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "alice@example.org"
    message["Subject"] = subject
    message["Message-ID"] = f"<{subject.replace(' ', '.')}.{time.monotonic_ns()}@example.org>"
    message["Date"] = "Fri, 27 Nov 2026 10:00:00 +0000"
    message.set_content(f"Body of {subject}\n")
    if attachment is not None:
        name, payload = attachment
        message.add_attachment(
            payload, maintype="application", subtype="octet-stream", filename=name
        )
    return message.as_bytes().replace(b"\n", b"\r\n")


def run(
    dovecot: DovecotServer,
    user: DovecotUser,
    *args: str,
    protocol: Protocol = Protocol.IMAP,
    security: Security = Security.TLS,
    extra_env: dict[str, str] | None = None,
) -> Result:
    port = dovecot.port(protocol, security)
    flag = {Security.TLS: "--tls", Security.STARTTLS: "--starttls", Security.NONE: "--no-tls"}
    command = [
        "fetch" if args[:1] != ("folders",) else "folders",
        *args[1 if args[:1] == ("folders",) else 0 :],
        "--server", f"{dovecot.host}:{port}", flag[security],
        "--user", user.name, "--ca-file", str(dovecot.ca_pem),
    ]  # fmt: skip
    if protocol is Protocol.POP3:
        command.append("--pop3")
    env = {"MAILCTL_PASSWORD": user.password, "NO_COLOR": "1", **(extra_env or {})}
    return CliRunner().invoke(app, command, env=env)


def envelope(result: Result) -> dict[str, Any]:
    assert result.stdout, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def on_server(dovecot: DovecotServer, user: DovecotUser, folder: str = "INBOX") -> int:
    settings = dovecot.settings(Protocol.IMAP, Security.TLS, user=user.name)
    with ImapSession.open(settings, secret=lambda: user.password) as session:
        return session.select(folder).exists


def maildir_files(path: Path) -> list[Path]:
    return sorted((path / "new").iterdir())


# -- folders ------------------------------------------------------------------------------------


def test_folders_lists_counts(dovecot: DovecotServer) -> None:
    user = dovecot.add_user()
    dovecot.seed(mail("one"), user=user.name)
    dovecot.seed(mail("two"), user=user.name, flags="S")
    dovecot.seed(mail("old"), user=user.name, folder="Archive")
    result = run(dovecot, user, "folders", "--json")
    assert result.exit_code == 0, result.output
    data = envelope(result)
    assert data["command"] == ["folders"]
    folders = {f["name"]: f for f in data["data"]["folders"]}
    assert folders["INBOX"]["messages"] == 2 and folders["INBOX"]["unseen"] == 1
    assert folders["Archive"]["messages"] == 1
    human = run(dovecot, user, "folders")
    assert human.exit_code == 0 and "Archive" in human.stdout and "INBOX" in human.stdout


# -- fetch: listing, Maildir, attachments, --new -------------------------------------------------


def test_listing_shows_envelopes_newest_first_and_changes_nothing(dovecot: DovecotServer) -> None:
    user = dovecot.add_user()
    dovecot.seed(mail("first"), user=user.name)
    dovecot.seed(mail("second", attachment=("a.bin", b"x" * 100)), user=user.name)
    result = run(dovecot, user, "--json")
    assert result.exit_code == 0, result.output
    data = envelope(result)["data"]
    subjects = [m["subject"] for m in data["messages"]]
    assert subjects == ["second", "first"]
    assert data["messages"][0]["attachment_count"] == 1
    assert data["messages"][0]["from"] == "a@example.org"
    assert all("\\Seen" not in m["flags"] for m in data["messages"])
    again = envelope(run(dovecot, user, "--json", "--unseen"))["data"]
    assert again["fetched"] == 2  # BODY.PEEK: still unseen


def test_fetch_unseen_into_maildir_with_attachments_then_only_new(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    user = dovecot.add_user()
    dovecot.seed(mail("seen already"), user=user.name, flags="S")
    dovecot.seed(mail("report", attachment=("report.pdf", b"%PDF-1.4 fake")), user=user.name)
    dovecot.seed(mail("hello"), user=user.name)
    box, files = tmp_path / "Mail", tmp_path / "files"
    args = ("--unseen", "--new", "--maildir", str(box), "--attachments", str(files))
    first = run(dovecot, user, *args, "--json")
    assert first.exit_code == 0, first.output
    assert envelope(first)["data"]["fetched"] == 2
    assert len(maildir_files(box)) == 2
    assert (files / "report.pdf").read_bytes() == b"%PDF-1.4 fake"

    second = run(dovecot, user, *args, "--json")
    assert envelope(second)["data"]["fetched"] == 0
    assert envelope(second)["data"]["already_fetched"] == 2
    dovecot.seed(mail("later"), user=user.name)
    third = envelope(run(dovecot, user, *args, "--json"))["data"]
    assert third["fetched"] == 1 and third["messages"][0]["subject"] == "later"
    assert len(maildir_files(box)) == 3
    assert on_server(dovecot, user) == 4  # nothing deleted


@pytest.mark.parametrize("security", [Security.TLS, Security.STARTTLS], ids=["pop3s", "stls"])
def test_pop3_fetch_then_only_new(
    dovecot: DovecotServer, tmp_path: Path, security: Security
) -> None:
    user = dovecot.add_user()
    dovecot.seed(mail("p1", attachment=("p.txt", b"pop3 attachment")), user=user.name)
    dovecot.seed(mail("p2"), user=user.name)
    box, files = tmp_path / "Mail", tmp_path / "files"
    args = ("--new", "--maildir", str(box), "--attachments", str(files), "--json")
    first = run(dovecot, user, *args, protocol=Protocol.POP3, security=security)
    assert first.exit_code == 0, first.output
    data = envelope(first)["data"]
    assert data["fetched"] == 2 and data["protocol"] == "pop3"
    assert {m["uidl"] is not None for m in data["messages"]} == {True}
    assert (files / "p.txt").read_bytes() == b"pop3 attachment"
    second = envelope(run(dovecot, user, *args, protocol=Protocol.POP3, security=security))
    assert second["data"]["fetched"] == 0 and second["data"]["already_fetched"] == 2
    dovecot.seed(mail("p3"), user=user.name)
    third = envelope(run(dovecot, user, *args, protocol=Protocol.POP3, security=security))
    assert third["data"]["fetched"] == 1
    assert len(maildir_files(box)) == 3


def test_pop3_delete_after_keeping(dovecot: DovecotServer, tmp_path: Path) -> None:
    user = dovecot.add_user()
    dovecot.seed(mail("d1"), user=user.name)
    dovecot.seed(mail("d2"), user=user.name)
    result = run(
        dovecot, user, "--maildir", str(tmp_path / "M"), "--delete", "--json",
        protocol=Protocol.POP3,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert envelope(result)["data"]["deleted"] == 2
    assert len(maildir_files(tmp_path / "M")) == 2
    assert on_server(dovecot, user) == 0


def test_imap_delete_and_move_after_keeping(dovecot: DovecotServer, tmp_path: Path) -> None:
    user = dovecot.add_user()
    dovecot.seed(mail("m1"), user=user.name)
    dovecot.seed(mail("keep"), user=user.name, folder="Archive")
    moved = run(dovecot, user, "--eml-dir", str(tmp_path / "eml"), "--move", "Archive", "--json")
    assert moved.exit_code == 0, moved.output
    assert envelope(moved)["data"]["moved"] == 1
    assert on_server(dovecot, user) == 0 and on_server(dovecot, user, "Archive") == 2
    [eml] = (tmp_path / "eml").iterdir()
    assert eml.suffix == ".eml" and b"Subject: m1" in eml.read_bytes()
    deleted = run(dovecot, user, "--folder", "Archive", "--mbox", str(tmp_path / "box"), "--delete")
    assert deleted.exit_code == 0, deleted.output
    assert on_server(dovecot, user, "Archive") == 0
    assert (tmp_path / "box").read_bytes().count(b"\nFrom ") + 1 == 2


def test_uidvalidity_change_rekeys_by_message_id(dovecot: DovecotServer, tmp_path: Path) -> None:
    """Recreate the folder (new UIDVALIDITY, new UIDs): only the new message is fetched."""
    user = dovecot.add_user()
    messages = [mail("r1"), mail("r2")]
    for raw in messages:
        dovecot.seed(raw, user=user.name, folder="Lists")
    args = ("--folder", "Lists", "--new", "--maildir", str(tmp_path / "M"), "--json")
    first = envelope(run(dovecot, user, *args))["data"]
    assert first["fetched"] == 2
    # Recreate the folder: Dovecot gives it a new UIDVALIDITY.
    shutil.rmtree(dovecot.maildir(user.name, "Lists"))
    (dovecot.users[user.name].maildir / "dovecot-uidlist").unlink(missing_ok=True)
    time.sleep(1.1)  # UIDVALIDITY is a time stamp in Dovecot's Maildir
    for raw in [*reversed(messages), mail("r3")]:
        dovecot.seed(raw, user=user.name, folder="Lists")
    second = run(dovecot, user, *args)
    assert second.exit_code == 0, second.output
    data = envelope(second)["data"]
    assert data["uidvalidity"] != first["uidvalidity"]
    assert data["rekeyed"] is True
    assert data["fetched"] == 1 and data["messages"][0]["subject"] == "r3"
    assert data["already_fetched"] == 2
    assert len(maildir_files(tmp_path / "M")) == 3
    third = envelope(run(dovecot, user, *args))["data"]
    assert third["fetched"] == 0 and third["rekeyed"] is False


def test_jsonl_streams_one_object_per_message(dovecot: DovecotServer) -> None:
    user = dovecot.add_user()
    for n in range(3):
        dovecot.seed(mail(f"j{n}"), user=user.name)
    result = run(dovecot, user, "--jsonl")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["subject"] for line in lines] == ["j2", "j1", "j0"]
    assert {"uid", "uidvalidity", "message_id", "from", "subject", "size", "flags"} <= set(lines[0])


def test_manifest_lines_name_the_message_and_attachments(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    user = dovecot.add_user()
    dovecot.seed(mail("with file", attachment=("data.csv", b"a,b\n1,2\n")), user=user.name)
    manifest = tmp_path / "m.jsonl"
    result = run(
        dovecot, user, "--maildir", str(tmp_path / "M"), "--attachments", str(tmp_path / "a"),
        "--manifest", str(manifest),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [line] = [json.loads(x) for x in manifest.read_text().splitlines()]
    assert line["subject"] == "with file" and line["uidvalidity"] and line["uid"]
    [saved] = line["attachments"]
    assert saved["name"] == "data.csv" and saved["size"] == 8 and len(saved["sha256"]) == 64
    assert Path(line["path"]).exists()


# -- hostile values and TLS rules ---------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("--folder", "INBOX\r\nA1 DELETE INBOX"),
        ("--subject", "x\r\nA1 DELETE INBOX"),
        ("--from", "x\nA1 LOGOUT"),
        ("--search", "ALL\r\nA1 DELETE INBOX"),
        ("--move", "Trash\r\nA1 DELETE INBOX", "--maildir", "MAILDIR"),
    ],
    ids=["folder", "subject", "from", "search", "move"],
)
def test_line_breaks_in_folder_or_search_values_are_refused(
    dovecot: DovecotServer, args: tuple[str, ...], tmp_path: Path
) -> None:
    user = dovecot.add_user()
    dovecot.seed(mail("stays"), user=user.name)
    box = tmp_path / "never-created"
    result = run(dovecot, user, *(str(box) if a == "MAILDIR" else a for a in args), "--json")
    assert result.exit_code == 65, result.output
    assert envelope(result)["errors"][0]["code"] == "header_injection"
    assert on_server(dovecot, user) == 1
    assert not box.exists()


@pytest.mark.parametrize("protocol", [Protocol.IMAP, Protocol.POP3], ids=["imap", "pop3"])
def test_no_password_without_tls_unless_allowed(dovecot: DovecotServer, protocol: Protocol) -> None:
    user = dovecot.add_user()
    refused = run(dovecot, user, "--json", protocol=protocol, security=Security.NONE)
    assert refused.exit_code == 77, refused.output
    assert envelope(refused)["errors"][0]["code"] == "plaintext_auth_refused"
    allowed = run(
        dovecot, user, "--json", "--allow-plaintext-auth", protocol=protocol, security=Security.NONE
    )
    assert allowed.exit_code == 0, allowed.output


def test_pop3_refuses_imap_only_options(dovecot: DovecotServer) -> None:
    user = dovecot.add_user()
    result = run(dovecot, user, "--unseen", protocol=Protocol.POP3)
    assert result.exit_code == 64 and "IMAP only" in result.stderr


def test_delete_needs_a_destination(dovecot: DovecotServer, tmp_path: Path) -> None:
    user = dovecot.add_user()
    dovecot.seed(mail("stays"), user=user.name)
    result = run(dovecot, user, "--delete")
    assert result.exit_code == 64 and "--maildir" in result.stderr
    same = run(dovecot, user, "--maildir", str(tmp_path / "M"), "--move", "inbox")
    assert same.exit_code == 64 and "folder being fetched" in same.stderr
    assert on_server(dovecot, user) == 1


def test_subjects_with_escapes_print_inert(dovecot: DovecotServer) -> None:
    user = dovecot.add_user()
    raw = mail("plain").replace(
        b"Subject: plain", b"Subject: \x1b[31mred\x1b]0;title\x07 [bold]x[/]"
    )
    dovecot.seed(raw, user=user.name)
    result = run(dovecot, user)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "[bold]x[/]" in result.stdout  # no markup interpretation


def test_state_lives_in_the_xdg_state_dir(dovecot: DovecotServer, tmp_path: Path) -> None:
    user = dovecot.add_user()
    dovecot.seed(mail("s"), user=user.name)
    state_home = tmp_path / "state"
    result = run(
        dovecot, user, "--new", "--maildir", str(tmp_path / "M"), "--json",
        extra_env={"XDG_STATE_HOME": str(state_home)},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    state_file = Path(envelope(result)["data"]["state_file"])
    assert state_file.parent == state_home / "mailctl" / "fetch"
    assert oct(state_file.stat().st_mode & 0o777) == "0o600"
    assert json.loads(state_file.read_text())["uidvalidity"] is not None
    assert os.stat(state_file.parent).st_mode & 0o777 == 0o700


# -- --trace and --watch ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("protocol", "security"),
    [
        (Protocol.IMAP, Security.TLS),
        (Protocol.IMAP, Security.STARTTLS),
        (Protocol.POP3, Security.TLS),
        (Protocol.POP3, Security.STARTTLS),
    ],
    ids=["imaps", "imap-starttls", "pop3s", "pop3-stls"],
)
def test_trace_shows_the_dialogue_without_the_password(
    dovecot: DovecotServer, protocol: Protocol, security: Security
) -> None:
    user = dovecot.add_user()
    dovecot.seed(mail("traced " + "x" * 10), user=user.name)
    result = run(dovecot, user, "--trace", protocol=protocol, security=security)
    assert result.exit_code == 0, result.output
    err = result.stderr
    assert user.password not in result.output
    import base64

    token = base64.b64encode(f"\0{user.name}\0{user.password}".encode()).decode()
    assert token not in result.output and token[:20] not in result.output
    assert "<redacted" in err
    if protocol is Protocol.IMAP:
        assert "UID FETCH" in err and "<literal:" in err
    else:
        assert "RETR 1" in err and "<message:" in err
    assert "Body of traced" not in err  # messages are summarised, not printed


def test_watch_fetches_mail_arriving_during_idle(dovecot: DovecotServer, tmp_path: Path) -> None:
    import threading

    user = dovecot.add_user()
    dovecot.seed(mail("before"), user=user.name)
    box = tmp_path / "M"
    timer = threading.Timer(1.0, lambda: dovecot.seed(mail("during"), user=user.name))
    timer.start()
    started = time.monotonic()
    try:
        result = run(dovecot, user, "--new", "--maildir", str(box), "--watch", "--watch-for", "4",
                     "--json")  # fmt: skip
    finally:
        timer.cancel()
    assert result.exit_code == 0, result.output
    data = envelope(result)["data"]
    assert [m["subject"] for m in data["messages"]] == ["before", "during"]
    assert 3.5 < time.monotonic() - started < 15  # bounded by --watch-for
    assert data["watched_ms"] >= 3500
    assert len(maildir_files(box)) == 2


def test_a_message_over_max_message_is_skipped_alone(dovecot: DovecotServer) -> None:
    """fetch_bodies leaves out what exceeds max_message and yields the rest; POP3 too."""
    from mailctl.protocols.limits import ReadLimits
    from mailctl.protocols.pop3 import Pop3Session

    user = dovecot.add_user()
    dovecot.seed(mail("small 1"), user=user.name)
    dovecot.seed(mail("big") + b"y" * 5000 + b"\r\n", user=user.name)
    dovecot.seed(mail("small 2"), user=user.name)
    limits = ReadLimits(max_message=3000)
    imap = dovecot.settings(Protocol.IMAP, Security.TLS, user=user.name)
    with ImapSession.open(imap, secret=lambda: user.password, limits=limits) as session:
        session.select("INBOX")
        uids = session.search(SearchCriteria())
        got = list(session.fetch_bodies(uids, batch=2))
    assert [m.uid for m in got] == [uids[0], uids[2]]
    assert all(b"Subject: small" in m.data for m in got)
    pop3 = dovecot.settings(Protocol.POP3, Security.TLS, user=user.name)
    with Pop3Session.open(pop3, secret=lambda: user.password, limits=limits) as pop:
        assert [m.number for m in pop.retrieve([1, 2, 3])] == [1, 3]


def test_a_broken_message_is_kept_with_the_rest(dovecot: DovecotServer, tmp_path: Path) -> None:
    user = dovecot.add_user()
    dovecot.seed(mail("fine 1"), user=user.name)
    dovecot.seed(
        b"Subject: =?bogus-charset?Q?=FF?=\r\nContent-Type: multipart/mixed; boundary=\r\n"
        b"\r\n--\r\n\xff\xfe garbage\r\n",
        user=user.name,
    )
    dovecot.seed(mail("fine 2"), user=user.name)
    result = run(dovecot, user, "--maildir", str(tmp_path / "M"), "--json")
    assert result.exit_code == 0, result.output
    assert envelope(result)["data"]["fetched"] == 3
    assert len(maildir_files(tmp_path / "M")) == 3


def test_listings_of_a_big_mailbox_fit_the_caps_sized_from_exists(dovecot: DovecotServer) -> None:
    """12,000 messages: the UID SEARCH line (> 64 KiB) and the UIDL/LIST answers (> 10,000
    lines) exceed the default caps, which grow with the count the server announced."""
    from mailctl.protocols.pop3 import Pop3Session

    user = dovecot.add_user()
    new = dovecot.maildir(user.name) / "new"
    for n in range(12_000):
        (new / f"{n}.M1P1Q{n}.test").write_bytes(b"Subject: n\r\n\r\nx\r\n")
        if os.geteuid() == 0:
            os.chown(new / f"{n}.M1P1Q{n}.test", dovecot.mail_uid, dovecot.mail_gid)
    imap = dovecot.settings(Protocol.IMAP, Security.TLS, user=user.name)
    with ImapSession.open(imap, secret=lambda: user.password) as session:
        assert session.select("INBOX").exists == 12_000
        assert len(session.search(SearchCriteria())) == 12_000
    pop3 = dovecot.settings(Protocol.POP3, Security.TLS, user=user.name)
    with Pop3Session.open(pop3, secret=lambda: user.password) as pop:
        sizes, uidls = pop.listing()
        assert len(sizes) == len(uidls) == 12_000


def test_pop3_selects_by_message_number_and_mark_seen_marks(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    user = dovecot.add_user()
    for n in range(4):
        dovecot.seed(mail(f"n{n}"), user=user.name)
    popped = envelope(run(dovecot, user, "--uid", "2:3", "--json", protocol=Protocol.POP3))
    assert sorted(m["number"] for m in popped["data"]["messages"]) == [2, 3]
    starred = envelope(run(dovecot, user, "--uid", "3:*", "--json", protocol=Protocol.POP3))
    assert sorted(m["number"] for m in starred["data"]["messages"]) == [3, 4]
    # IMAP: --mark-seen sets \Seen (BODY[] in a read-write SELECT); without it nothing changes.
    user = dovecot.add_user()  # Dovecot's POP3 RETR marks messages seen itself
    for n in range(4):
        dovecot.seed(mail(f"i{n}"), user=user.name)
    assert envelope(run(dovecot, user, "--unseen", "--json"))["data"]["fetched"] == 4
    seen = run(dovecot, user, "--unseen", "--limit", "1", "--mark-seen", "--json")
    assert envelope(seen)["data"]["fetched"] == 1
    assert envelope(run(dovecot, user, "--unseen", "--json"))["data"]["fetched"] == 3


def test_a_missing_folder_is_named(dovecot: DovecotServer, tmp_path: Path) -> None:
    user = dovecot.add_user()
    dovecot.seed(mail("m"), user=user.name)
    result = run(dovecot, user, "--folder", "Nope", "--json")
    assert result.exit_code == 66, result.output
    [error] = envelope(result)["errors"]
    assert error["code"] == "folder_unavailable" and "'Nope'" in error["message"]
    moved = run(dovecot, user, "--maildir", str(tmp_path / "M"), "--move", "Nope", "--json")
    assert moved.exit_code == 66 and envelope(moved)["errors"][0]["code"] == "folder_unavailable"
    assert on_server(dovecot, user) == 1  # kept here, still there
    assert len(maildir_files(tmp_path / "M")) == 1


def test_hostile_attachment_names_stay_inside_the_folder(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    user = dovecot.add_user()
    names = ["../../x", "/etc/passwd", "..\\x", "a\0b", "CON", "n" * 300 + ".txt", "planted"]
    parts = b"".join(
        b'--b\r\nContent-Disposition: attachment; filename="' + n.encode("utf-8", "replace")
        + b'"\r\n\r\npayload\r\n'
        for n in names
    )  # fmt: skip
    raw = (
        b"From: a@example.org\r\nSubject: names\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + parts + b"--b--\r\n"
    )
    dovecot.seed(raw, user=user.name)
    files = tmp_path / "files"
    files.mkdir()
    outside = tmp_path / "outside"
    (files / "planted").symlink_to(outside)
    result = run(dovecot, user, "--maildir", str(tmp_path / "M"), "--attachments", str(files))
    assert result.exit_code == 0, result.output
    assert not outside.exists() and not (tmp_path / "x").exists()
    saved = sorted(p.name for p in files.iterdir())
    assert len(saved) == len(names) + 1  # the symlink stays, untouched
    assert (files / "planted").is_symlink() and (files / "planted (1)").read_bytes() == b"payload"
    assert all("/" not in n and "\0" not in n and len(n.encode()) <= 255 for n in saved)
    assert "CON" not in saved


def test_new_with_another_selection_neither_skips_nor_deletes_what_was_never_fetched(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    """Run 1 takes the unseen messages around a seen one; run 2 (--new --delete, no
    --unseen) must fetch the seen one (never fetched) and delete only what is kept."""
    user = dovecot.add_user()
    dovecot.seed(mail("u1"), user=user.name)
    dovecot.seed(mail("seen"), user=user.name, flags="S")
    dovecot.seed(mail("u2"), user=user.name)
    box = tmp_path / "M"
    first = envelope(run(dovecot, user, "--unseen", "--new", "--maildir", str(box), "--json"))
    assert sorted(m["subject"] for m in first["data"]["messages"]) == ["u1", "u2"]
    second = run(dovecot, user, "--new", "--maildir", str(box), "--delete", "--json")
    assert second.exit_code == 0, second.output
    data = envelope(second)["data"]
    assert [m["subject"] for m in data["messages"]] == ["seen"]
    assert data["already_fetched"] == 2 and data["deleted"] == 3
    kept = sorted(
        p.read_bytes().split(b"Subject: ")[1].split(b"\r\n")[0] for p in maildir_files(box)
    )
    assert kept == [b"seen", b"u1", b"u2"]
    assert on_server(dovecot, user) == 0


def test_fetch_does_not_describe_the_chain(dovecot: DovecotServer, tmp_path: Path) -> None:
    """The certificate chain (cryptography, ~16 ms to import) is account test's and probe's:
    a fetch over IMAPS and POP3S never imports it, while account test still shows it."""
    import subprocess
    import sys

    user = dovecot.add_user()
    dovecot.seed(b"Subject: x\r\nMessage-ID: <x@y>\r\n\r\nbody\r\n", user=user.name)
    script = (
        "import sys\n"
        "from mailctl.cli.app import run\n"
        "try:\n    run()\nexcept SystemExit as done:\n    code = done.code\n"
        "print(code, 'cryptography' in sys.modules)\n"
    )
    env = {**os.environ, "MAILCTL_PASSWORD": user.password, "HOME": str(tmp_path)}
    for protocol, extra in ((Protocol.IMAP, []), (Protocol.POP3, ["--pop3"])):
        port = dovecot.port(protocol, Security.TLS)
        argv = ["fetch", *extra, "--server", f"{dovecot.host}:{port}", "--tls", "--user",
                user.name, "--ca-file", str(dovecot.ca_pem),
                "--maildir", str(tmp_path / "M")]  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-c", script, *argv], env=env, capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip
        assert done.stdout.split()[-2:] == ["0", "False"], done.stdout + done.stderr
    settings = dovecot.settings(Protocol.IMAP, Security.TLS, user=user.name)
    info = ImapSession.check(settings, secret=lambda: user.password)
    assert info.tls is not None and info.tls.chain  # account test still gets the chain


def test_pop3_selects_by_uidl(dovecot: DovecotServer) -> None:
    """RFC 1939 7: --uidl picks messages by unique-id (numbers change between sessions)."""
    user = dovecot.add_user()
    for subject in ("u1", "u2", "u3"):
        dovecot.seed(mail(subject), user=user.name)
    listing = envelope(run(dovecot, user, "--json", protocol=Protocol.POP3))["data"]["messages"]
    by_subject = {m["subject"]: m["uidl"] for m in listing}
    picked = run(
        dovecot, user, "--uidl", by_subject["u1"], "--uidl", by_subject["u3"], "--json",
        protocol=Protocol.POP3,
    )  # fmt: skip
    assert picked.exit_code == 0, picked.output
    assert sorted(m["subject"] for m in envelope(picked)["data"]["messages"]) == ["u1", "u3"]
    for bad, hint in ((["--uidl", "has space"], "unique-id"), (["--uidl", "x"], "POP3")):
        refused = run(
            dovecot, user, *bad, protocol=Protocol.POP3 if hint != "POP3" else Protocol.IMAP
        )
        assert refused.exit_code == 64 and hint in refused.output, refused.output


# -- the per-message work a run does -------------------------------------------------------------


def test_a_quiet_run_reads_no_headers_unless_something_shows_them(
    dovecot: DovecotServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`-q` into a Maildir shows no envelope, so no header block is read (most of fetch's own
    work per message); --json, --jsonl, the progress lines and --manifest still read them."""
    from mailctl.core.fetch import run as fetch_run

    user = dovecot.add_user()
    for index in range(3):
        dovecot.seed(mail(f"quiet {index}"), user=user.name)
    read: list[int] = []
    real = fetch_run.summarize_headers
    monkeypatch.setattr(fetch_run, "summarize_headers", lambda data: read.append(1) or real(data))
    port = dovecot.port(Protocol.IMAP, Security.TLS)
    where = ["--server", f"{dovecot.host}:{port}", "--tls", "--user", user.name,
             "--ca-file", str(dovecot.ca_pem)]  # fmt: skip
    env = {"MAILCTL_PASSWORD": user.password, "NO_COLOR": "1"}

    def fetch(*args: str, quiet: bool = True) -> Result:
        command = ["-q"] * quiet + ["fetch", *args, *where]
        return CliRunner().invoke(app, command, env=env)

    quiet = fetch("--maildir", str(tmp_path / "q"))
    assert quiet.exit_code == 0, quiet.output
    assert len(maildir_files(tmp_path / "q")) == 3 and read == []
    manifest = tmp_path / "m.jsonl"
    kept = fetch("--maildir", str(tmp_path / "m"), "--manifest", str(manifest))
    assert kept.exit_code == 0, kept.output
    subjects = {json.loads(line)["subject"] for line in manifest.read_text().splitlines()}
    assert subjects == {"quiet 0", "quiet 1", "quiet 2"} and len(read) == 3
    listed = fetch("--json", "--maildir", str(tmp_path / "j"), quiet=False)
    assert {m["subject"] for m in envelope(listed)["data"]["messages"]} == subjects
    shown = fetch("--maildir", str(tmp_path / "v"), quiet=False)
    assert shown.exit_code == 0 and "quiet 2" in shown.stdout, shown.output


def test_the_renames_are_durable_before_the_state_says_so(
    dovecot: DovecotServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One fsync of new/ covers a batch of deliveries (mbsync does none per message): it
    comes after the batch's last rename into new/ and before the state file that records
    the batch is renamed into place, so a power cut between them loses nothing."""
    user = dovecot.add_user()
    for index in range(4):
        dovecot.seed(mail(f"durable {index}"), user=user.name)
    events: list[tuple[str, str]] = []
    real_fsync, real_rename, real_replace = os.fsync, os.rename, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def rename(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        events.append(("rename", str(dst)))
        real_rename(src, dst, *args, **kwargs)

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        events.append(("rename", str(dst)))
        real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "replace", replace)
    maildir = tmp_path / "M"
    state = tmp_path / "state"
    result = run(dovecot, user, "--maildir", str(maildir), extra_env={"XDG_STATE_HOME": str(state)})
    assert result.exit_code == 0, result.output
    new = str((maildir / "new").resolve())
    delivered = [
        i for i, (kind, path) in enumerate(events) if kind == "rename" and path.startswith(new)
    ]
    synced = [i for i, (kind, path) in enumerate(events) if kind == "fsync" and path == new]
    saved = [
        i
        for i, (kind, path) in enumerate(events)
        if kind == "rename" and path.startswith(str(state))
    ]
    assert len(delivered) == 4 and saved, events
    assert len(synced) == 1, events  # one for the batch, not one per message
    assert delivered[-1] < synced[0] < saved[0], events


def test_state_writes_wait_for_their_cost_so_big_folders_stay_linear(
    dovecot: DovecotServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A state write rewrites the whole state, which grows with the folder: a write per batch
    would make a big fetch quadratic. After a write that took T, the next waits 8T; every
    message is still recorded (the last write), and --delete still removes them all."""
    from mailctl.core.fetch.state import FetchState

    user = dovecot.add_user()
    for index in range(12):
        dovecot.seed(mail(f"linear {index}"), user=user.name)
    writes: list[float] = []
    real_save = FetchState.save

    def slow_save(self: FetchState) -> None:
        time.sleep(0.05)  # a state as big as a huge folder's
        writes.append(time.monotonic())
        real_save(self)

    monkeypatch.setattr(FetchState, "save", slow_save)
    from mailctl.core.fetch import Destinations, FetchRequest, fetch
    from mailctl.models import ResolvedServer

    settings = dovecot.settings(Protocol.IMAP, Security.TLS, user=user.name)
    request = FetchRequest(
        server=ResolvedServer(settings=settings, secret=lambda: user.password),
        destinations=Destinations(maildir=tmp_path / "M"),
        delete=True,
        batch=2,
        envelopes=False,
        state_dir=tmp_path / "state",
    )
    result = fetch(request, on_message=lambda _message: None)
    assert (result.fetched, result.deleted, result.failed) == (12, 12, [])
    assert 2 <= len(writes) < 6, writes  # a write per batch would be 6, plus the last
    gaps = [later - earlier for earlier, later in itertools.pairwise(writes)]
    assert all(gap >= 8 * 0.05 for gap in gaps[:-1]), gaps  # the last write is the run's end
    [state_file] = (tmp_path / "state").iterdir()
    assert json.loads(state_file.read_text())["uids"]  # all twelve taken
    assert on_server(dovecot, user) == 0
