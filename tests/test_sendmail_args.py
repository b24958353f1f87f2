"""sendmail's option syntax as git, cron and mutt use it."""

from __future__ import annotations

import io

import pytest

from mailctl.cli.sendmail import parse_args, read_message
from mailctl.errors import ExitCode, UsageError


def test_git_send_email_style() -> None:
    args = parse_args(["-i", "-f", "me@example.org", "--", "a@example.org", "b@example.org"])
    assert args.sender == "me@example.org"
    assert not args.dot_terminates
    assert args.recipients == ["a@example.org", "b@example.org"]


def test_cron_style() -> None:
    # cron (Debian) runs: sendmail -FCronDaemon -i -B8BITMIME -oem root
    args = parse_args(["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root@example.org"])
    assert args.full_name == "CronDaemon"
    assert args.recipients == ["root@example.org"]
    assert not args.dot_terminates


def test_mutt_style_with_attached_values() -> None:
    args = parse_args(["-oi", "-oem", "-t", "-fme@example.org", "-aWork", "-v"])
    assert args.read_recipients and args.verbose
    assert args.sender == "me@example.org"
    assert args.account == "Work"


@pytest.mark.parametrize("argv", [["-bp"], ["-q"], ["-q30m"], ["-bs"], ["--bogus"], ["-f"]])
def test_unsupported_is_a_usage_error(argv: list[str]) -> None:
    with pytest.raises(UsageError) as info:
        parse_args(argv)
    assert info.value.exit_code == ExitCode.USAGE


def test_lone_dot_ends_input_unless_i() -> None:
    raw = b"Subject: x\n\nline\n.\nafter\n"
    assert read_message(io.BytesIO(raw), dot_terminates=True) == b"Subject: x\n\nline\n"
    assert read_message(io.BytesIO(raw), dot_terminates=False) == raw
