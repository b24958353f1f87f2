"""--help for every command: panels, one placeholder style, one way to show defaults, Examples that
work, and nothing wider than 80 columns.

Every command is found by walking the real command tree, so a command added later is held to the
same rules. Examples come from mailctl/cli/examples.py: each is parsed by the real parser (Click's
for mailctl's commands, sendmail's own for `mailctl sendmail`), and those that need no mail server
run: send in --dry-run, account commands against a temp config (and the in-memory keyring of
tests/conftest.py), completion as is, sink for half a second on a free port.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer.main
from typer.testing import CliRunner

from mailctl.cli.app import app
from mailctl.cli.examples import EXAMPLES, WIDTH, Example

WIDE = 80


def _tree() -> Iterator[tuple[list[str], Any]]:
    """(path after `mailctl`, Click command) for the root and every command below it."""
    root = typer.main.get_command(app)

    def walk(path: list[str], command: Any, ctx: Any) -> Iterator[tuple[list[str], Any]]:
        yield path, command
        if hasattr(command, "list_commands"):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                yield from walk([*path, name], sub, typer.Context(sub, parent=ctx, info_name=name))

    yield from walk([], root, typer.Context(root, info_name="mailctl"))


COMMANDS = [path for path, _ in _tree()]
TREE = {
    " ".join(path): (command, typer.Context(command, info_name=(path or ["mailctl"])[-1]))
    for path, command in _tree()
}
IDS = [" ".join(path) or "mailctl" for path in COMMANDS]


def _help(path: list[str], columns: int = WIDE) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("_MAILCTL")}
    env.update({"COLUMNS": str(columns), "NO_COLOR": "1", "TERM": "xterm-256color"})
    env.pop("TERMINAL_WIDTH", None)
    proc = subprocess.run(
        [sys.executable, "-m", "mailctl", *path, "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc.stdout


@pytest.fixture(scope="module")
def helps() -> dict[str, str]:
    return {" ".join(path): _help(path) for path in COMMANDS}


@pytest.mark.parametrize("path", COMMANDS, ids=IDS)
def test_help_fits_80_columns(path: list[str], helps: dict[str, str]) -> None:
    text = helps[" ".join(path)]
    too_wide = [line for line in text.splitlines() if len(line) > WIDE]
    assert too_wide == [], "\n".join(too_wide)


@pytest.mark.parametrize("path", COMMANDS, ids=IDS)
def test_every_command_has_examples_printed_whole(path: list[str], helps: dict[str, str]) -> None:
    key = " ".join(["mailctl", *path])
    assert key in EXAMPLES, f"add Examples for {key!r} to mailctl/cli/examples.py"
    text = helps[" ".join(path)]
    assert "Examples" in text
    # Examples live in the Examples section only, where nothing wraps them.
    assert "Example:" not in text.split(" Examples:")[0]
    lines = [line.strip() for line in text.splitlines()]
    for example in EXAMPLES[key]:
        assert f"# {example.what}" in lines
        for line in example.lines:  # each piece on its own line, never cut by wrapping
            assert line.strip() in lines, f"{line!r} not printed whole:\n{text}"


@pytest.mark.parametrize("path", COMMANDS, ids=IDS)
def test_placeholders_are_upper_case_words(
    path: list[str], helps: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    text = helps[" ".join(path)]
    assert re.search(r"<(str|int|float|path|text|integer|bool)>", text) is None, text
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert "{" not in usage, usage  # Typer's `{shell}`/`{NAME}`: usage says SHELL, NAME
    command, ctx = TREE[" ".join(path)]
    command.get_help(ctx)  # help prepares the placeholders; printed to the captured stdout
    capsys.readouterr()
    for param in command.get_params(ctx):
        if getattr(param, "is_flag", False) or getattr(param, "count", False):
            continue
        metavar = param.make_metavar(ctx)
        assert re.fullmatch(r"[A-Z][A-Z0-9_:\[\]|-]*(\.\.\.)?", metavar), (param.opts, metavar)
        assert metavar in text, (param.opts, metavar)


@pytest.mark.parametrize("path", COMMANDS, ids=IDS)
def test_defaults_are_shown_one_way(path: list[str], helps: dict[str, str]) -> None:
    text = helps[" ".join(path)]
    flat = " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())
    assert "(default" not in flat, text
    assert "default:" not in flat.replace("[default:", ""), text


def test_send_help_groups_options_into_panels(helps: dict[str, str]) -> None:
    text = helps["send"]
    titles = re.findall(r"^╭─ (.+?) ─", text, flags=re.M)
    wanted = ["Addresses", "Message", "Server", "TLS", "Output"]
    assert [t for t in titles if t in wanted] == wanted, titles
    panel_of = {}
    title = ""
    for line in text.splitlines():
        match = re.match(r"^╭─ (.+?) ─", line)
        if match:
            title = match.group(1)
        flag = re.match(r"^│ (--[\w-]+)", line)
        if flag:
            panel_of[flag.group(1)] = title
    assert panel_of["--to"] == "Addresses"
    assert panel_of["--subject"] == "Message"
    assert panel_of["--server"] == "Server"
    assert panel_of["--account"] == "Server"
    assert panel_of["--ca-file"] == "TLS"
    assert panel_of["--dry-run"] == "Output"
    assert panel_of["--json"] == "Output"


def test_send_help_shows_the_known_defaults(helps: dict[str, str]) -> None:
    flat = " ".join(re.sub(r"[│╭╮╰╯─]", " ", helps["send"]).split())
    assert "[default: 300, or --timeout if shorter]" in flat
    # The shared timeouts, whose real default sits in models.Timeouts (the flag's is None)
    assert "greeting. [default: 30, or the account's]" in flat
    assert "asks for more. [default: 60, or the account's]" in flat
    flat = " ".join(re.sub(r"[│╭╮╰╯─]", " ", helps["sink"]).split())
    assert "[default: 127.0.0.1:2525]" in flat
    assert "[default: mail]" in flat  # --reject-on's "mail (default), rcpt, ..."


def test_top_level_help_names_every_command(helps: dict[str, str]) -> None:
    text = helps[""]
    description = text.split("╭")[0]
    for word in ("send", "sendmail", "sink", "bench", "account"):
        assert word in description, description


def test_help_at_120_columns_uses_the_width(tmp_path: Path) -> None:
    text = _help(["send"], columns=120)
    assert max(len(line) for line in text.splitlines()) > WIDE


def test_help_is_the_same_before_and_after_the_command_ran_once() -> None:
    """Help preparation (placeholders, defaults) is done once: a second --help is identical."""
    runner = CliRunner()
    env = {"COLUMNS": "80", "NO_COLOR": "1"}
    first = runner.invoke(app, ["send", "--help"], env=env)
    second = runner.invoke(app, ["send", "--help"], env=env)
    assert first.exit_code == second.exit_code == 0
    assert first.stdout == second.stdout


# ---------------------------------------------------------------------------------------------
# The examples work.

ALL_EXAMPLES = [(key, example) for key, examples in EXAMPLES.items() for example in examples]
EXAMPLE_IDS = [example.command[:60] for _, example in ALL_EXAMPLES]
CONFIG = """\
default_account = "work"

[accounts.work]
from = "Alice <alice@example.com>"
[accounts.work.smtp]
host = "smtp.example.com"
port = 587
security = "starttls"
username = "alice"
"""


def _mailctl_words(command: str) -> tuple[list[str], str | None, str | None]:
    """The words of the mailctl command in a shell line; the text piped in; a `< FILE`."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words = list(lexer)
    producer = None
    if "|" in words:
        cut = words.index("|")
        producer = command.split("|", maxsplit=1)[0]
        words = words[cut + 1 :]
    redirect_in = None
    if "<" in words:
        redirect_in = words[words.index("<") + 1]
        words = words[: words.index("<")]
    if ">" in words:
        words = words[: words.index(">")]
    return words, producer, redirect_in


def test_every_example_line_fits() -> None:
    for _, example in ALL_EXAMPLES:
        for line in example.lines:
            assert len(line) <= WIDTH + 2, line


@pytest.mark.parametrize(("key", "example"), ALL_EXAMPLES, ids=EXAMPLE_IDS)
def test_every_example_parses_with_the_real_parser(key: str, example: Example) -> None:
    words, _, _ = _mailctl_words(example.command)
    assert words[0] == "mailctl"
    assert " ".join(words[: len(key.split())]) == key or key == "mailctl"
    if words[1:2] == ["sendmail"]:
        from mailctl.cli.sendmail import parse_args

        parsed = parse_args(words[2:])
        assert parsed.recipients or parsed.read_recipients
        return
    root = typer.main.get_command(app)
    ctx = root.make_context("mailctl", words[1:], resilient_parsing=False)
    command: Any = root
    while hasattr(command, "resolve_command"):
        rest = [*ctx._protected_args, *ctx.args]
        if not rest or rest[0].startswith("-"):
            break
        name, command, args = command.resolve_command(ctx, rest)
        assert command is not None, words
        if "--help" in args:
            with pytest.raises(typer.Exit) as done:
                command.make_context(name, args, parent=ctx)
            assert done.value.exit_code == 0
            break
        ctx = command.make_context(name, args, parent=ctx)  # raises on a bad flag or value


@pytest.fixture
def example_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG, encoding="utf-8")
    config.chmod(0o600)
    monkeypatch.setenv("MAILCTL_CONFIG", str(config))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("MAILCTL_PASSWORD", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("The numbers.\n")
    (tmp_path / "report.pdf").write_bytes(b"%PDF-1.4\n%fake\n")
    (tmp_path / "cert.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "message.eml").write_bytes(
        b"From: me@example.org\r\nTo: bob@example.org\r\nSubject: hi\r\n\r\nhello\r\n"
    )
    return tmp_path


def _runnable(example: Example) -> bool:
    words, _, _ = _mailctl_words(example.command)
    if example.terminal:
        return False
    if words[:2] in (["mailctl", "send"], ["mailctl", "completion"], ["mailctl", "parse"]):
        return True  # parse reads the example's message.eml and needs no server
    if words[:2] == ["mailctl", "account"]:
        return words[2:3] != ["test"]  # logs in to real servers
    return False


RUNNABLE = [(key, example) for key, example in ALL_EXAMPLES if _runnable(example)]


@pytest.mark.parametrize(
    ("key", "example"), RUNNABLE, ids=[example.command[:60] for _, example in RUNNABLE]
)
def test_examples_run(key: str, example: Example, example_dir: Path) -> None:
    words, producer, redirect_in = _mailctl_words(example.command)
    args = words[1:]
    if args[0] == "send" and "--dry-run" not in args:
        args.append("--dry-run")
    if args[:2] == ["account", "add"] and args[2] == "work":
        args.append("--force")  # the temp config has a "work" already
    stdin: bytes | None = None
    if producer is not None:
        if producer.startswith("printf"):
            stdin = subprocess.run(
                ["sh", "-c", producer], capture_output=True, check=True, env={"PASS": "s3cret"}
            ).stdout
        else:
            stdin = b"s3cret\n"  # a password manager's output
    elif redirect_in is not None:
        stdin = (example_dir / redirect_in).read_bytes()
    result = CliRunner().invoke(app, args, input=stdin)
    assert result.exit_code == 0, (args, result.output)


SINK = [(key, example) for key, example in ALL_EXAMPLES if key == "mailctl sink"]


@pytest.mark.parametrize(
    ("key", "example"), SINK, ids=[example.command[:60] for _, example in SINK]
)
def test_sink_examples_run(key: str, example: Example, tmp_path: Path) -> None:
    """Each sink example starts, on a free port instead of the one shown, and stops by itself."""
    words, _, _ = _mailctl_words(example.command)
    args = words[1:]
    if "--listen" in args:
        del args[args.index("--listen") : args.index("--listen") + 2]
    args += ["--listen", "127.0.0.1:0", "--duration", "0.5", "--quiet"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("_MAILCTL", "MAILCTL_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "mailctl", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_options_added_later_follow_the_same_rules() -> None:
    """The rules are applied by the renderer, not written per option: an option declared plainly
    (as other changes add `--tls-name`, `-q/--quiet`, `--ca-out`, `account set`) gets an
    upper-case placeholder, its default in brackets and a panel."""
    from mailctl.cli.helptext import format_help

    holder = typer.Typer(rich_markup_mode=None, add_completion=False)

    @holder.command()
    def demo(
        tls_name: Annotated[
            str | None, typer.Option("--tls-name", help="Name to verify (default: the host).")
        ] = None,
        ca_out: Annotated[Path | None, typer.Option("--ca-out", help="Write the CA here.")] = None,
        smtp_port: Annotated[
            str | None, typer.Option("--smtp-port", help="Port.", rich_help_panel="SMTP")
        ] = None,
        tries: Annotated[int | None, typer.Option("--tries", help="Attempts (default 3).")] = None,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Exit code only.")] = False,
    ) -> None:
        """A demo."""

    command = typer.main.get_command(holder)
    text = format_help(command, typer.Context(command, info_name="demo"), width=80)
    assert re.search(r"--tls-name\s+NAME\s", text), text
    assert re.search(r"--ca-out\s+FILE\s", text), text
    assert re.search(r"--smtp-port\s+PORT\s", text), text
    assert re.search(r"--tries\s+N\s", text), text
    assert "[default: the host]" in text and "[default: 3]" in text
    assert "(default" not in text
    assert re.search(r"╭─ Output ─+╮\n│ --quiet", text), text


def test_help_on_a_terminal_is_coloured_and_still_fits_80_columns() -> None:
    """Under a pseudo-terminal the styles are on; without them every line still fits."""
    import pty
    import select

    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERMINAL_WIDTH")}
    env["COLUMNS"] = "80"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailctl", "send", "--help"], stdout=slave, stderr=slave, env=env
    )
    os.close(slave)
    data = b""
    try:
        for _ in range(2000):  # bounded: the help is a few KB
            ready, _, _ = select.select([master], [], [], 30)
            if not ready:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            data += chunk
    finally:
        os.close(master)
        proc.wait(timeout=30)
    text = data.decode()
    assert "\x1b[" in text
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text).replace("\r", "")
    assert max(len(line) for line in plain.splitlines()) <= WIDE
    assert "mailctl send --dry-run --from me@example.org --to bob@example.org --body Hi" in plain


# ---------------------------------------------------------------------------------------------
# Narrow terminals: every line fits down to 40 columns, examples still paste as the same command.

NARROW_WIDTHS = [40, 50, 60, 80, 120]


def _contexts() -> Iterator[tuple[str, Any, Any]]:
    """(EXAMPLES key, Click command, its context with parents) for every command of the app."""
    root = typer.main.get_command(app)

    def walk(path: list[str], command: Any, ctx: Any) -> Iterator[tuple[str, Any, Any]]:
        yield " ".join(["mailctl", *path]), command, ctx
        if hasattr(command, "list_commands"):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                yield from walk([*path, name], sub, typer.Context(sub, parent=ctx, info_name=name))

    yield from walk([], root, typer.Context(root, info_name="mailctl"))


def _one_word(line: str) -> bool:
    """A line that only one word wider than the line makes too wide: no break could help."""
    text = line.strip().removeprefix("# ").removesuffix(" \\").strip()
    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()
    return len(words) == 1


def _too_wide(text: str, width: int) -> list[str]:
    """Lines wider than `width` (but a lone over-long word), and box lines not exactly `width`."""
    bad = [line for line in text.splitlines() if len(line) > width and not _one_word(line)]
    bad += [
        f"box {len(line)} != {width}: {line}"
        for line in text.splitlines()
        if line[:1] in ("╭", "│", "╰") and len(line) != width
    ]
    return bad


@pytest.mark.parametrize("width", NARROW_WIDTHS)
@pytest.mark.parametrize("path", COMMANDS, ids=IDS)
def test_help_fits_the_terminal_width(path: list[str], width: int) -> None:
    """`COLUMNS=W mailctl ... --help` through the real app: no line wider than W (a single word
    longer than a line may overflow: none can be cut), every panel line exactly W."""
    result = CliRunner().invoke(
        app, [*path, "--help"], env={"COLUMNS": str(width), "NO_COLOR": "1"}
    )
    assert result.exit_code == 0, result.output
    assert _too_wide(result.stdout, width) == [], result.stdout


def test_help_below_40_columns_renders_at_40() -> None:
    runner = CliRunner()
    narrow = runner.invoke(app, ["send", "--help"], env={"COLUMNS": "20", "NO_COLOR": "1"})
    at_40 = runner.invoke(app, ["send", "--help"], env={"COLUMNS": "40", "NO_COLOR": "1"})
    assert narrow.exit_code == at_40.exit_code == 0
    assert narrow.stdout == at_40.stdout


def _printed_examples(text: str) -> list[tuple[list[str], list[str]]]:
    """(comment lines, command lines) of each example in the Examples section of `text`."""
    section = text.split("\n Examples:\n", 1)[1].strip("\n")
    out = []
    for block in section.split("\n\n"):
        lines = block.splitlines()
        comment = [line for line in lines if line.startswith("   # ")]
        assert lines[: len(comment)] == comment, block  # the comment first, then the command
        out.append((comment, lines[len(comment) :]))
    return out


def _as_the_shell_reads_it(lines: list[str]) -> list[str]:
    """The words of printed command lines once joined back: every backslash-newline removed,
    as the shell does outside quotes (inside '...' it would stay and change the word)."""
    return shlex.split("\n".join(lines).replace("\\\n", ""))


def test_examples_wrapped_paste_as_the_same_command() -> None:
    """At every width from 40 to 120, every example of every command, joined back, is the
    same shell words as the unwrapped example; broken lines end in ` \\`, continuations are
    indented two more; comments rejoin to the text; nothing wider than the line but a word."""
    from mailctl.cli.helptext import format_help

    checked = 0
    for key, command, ctx in _contexts():
        for width in range(40, 121):
            text = format_help(command, ctx, width=width)
            printed = _printed_examples(text)
            assert len(printed) == len(EXAMPLES[key]), (key, width, text)
            for example, (comment, lines) in zip(EXAMPLES[key], printed, strict=True):
                where = (key, width, example.command)
                assert " ".join(line[5:] for line in comment) == example.what, where
                assert _as_the_shell_reads_it(lines) == shlex.split(example.command), where
                assert lines[0].startswith("   ") and not lines[0].startswith("    "), where
                assert all(line.startswith("     ") for line in lines[1:]), where
                assert all(line.endswith(" \\") for line in lines[:-1]), where
                assert not lines[-1].endswith("\\"), where
                wide = [line for line in comment + lines if len(line) > width]
                assert all(_one_word(line) for line in wide), (where, wide)
                checked += 1
    assert checked > 40 * 81  # every example, at every width


@pytest.mark.parametrize("width", range(40, 121, 7))
def test_a_broken_command_never_splits_a_quoted_word(width: int) -> None:
    """Quoted words with blanks, escaped quotes and backslashes stay whole wherever the line
    breaks; an over-long word gets a line of its own and is the only thing too wide."""
    from mailctl.cli.examples import Example
    from mailctl.cli.helptext import example_lines

    command = (
        "mailctl send --to bob@example.org --subject 'a b c d e f g h i j k l m n o p q' "
        '--body "He said \\"see you at 5\\" and left" --header \'X-Note: a\\ b\' '
        "--body-file /a/very/long/path/that/no/line/of/forty/columns/can/hold.txt "
        "--attach report.pdf < message.eml"
    )
    _, lines = example_lines(Example("demo", (command,)), width)
    assert _as_the_shell_reads_it(lines) == shlex.split(command)
    assert all(len(line) <= width or _one_word(line) for line in lines), lines


def test_usage_wraps_with_a_hanging_indent() -> None:
    from mailctl.cli.helptext import format_help

    contexts = {key: (command, ctx) for key, command, ctx in _contexts()}
    command, ctx = contexts["mailctl probe"]
    lines = format_help(command, ctx, width=40).splitlines()
    assert lines[1:3] == [" Usage: mailctl probe [OPTIONS]", "        [HOSTS...]"], lines[:4]
    command, ctx = contexts["mailctl account set-password"]
    lines = format_help(command, ctx, width=40).splitlines()
    assert lines[1:3] == [" Usage: mailctl account set-password", "        [OPTIONS] NAME"]
    assert format_help(command, ctx, width=80).splitlines()[1:3] == [
        " Usage: mailctl account set-password [OPTIONS] NAME",
        "",
    ]


def test_a_panel_title_longer_than_its_box_is_cut() -> None:
    result = CliRunner().invoke(app, ["sink", "--help"], env={"COLUMNS": "50", "NO_COLOR": "1"})
    top = next(line for line in result.stdout.splitlines() if line.startswith("╭─ Keeping"))
    assert top == "╭─ Keeping messages (else discarded and… ────────╮", top
    assert len(top) == 50
    wide = CliRunner().invoke(app, ["sink", "--help"], env={"COLUMNS": "120", "NO_COLOR": "1"})
    assert "╭─ Keeping messages (else discarded and counted) ─" in wide.stdout


def test_kept_lines_and_long_option_names_fit_too() -> None:
    """Click's `\\b` paragraphs keep their lines but wrap one that is too wide (under its own
    indent); an option whose flags and placeholder are wider than the box wraps, not cut."""
    from mailctl.cli.helptext import format_help

    holder = typer.Typer(rich_markup_mode=None, add_completion=False)

    @holder.command()
    def demo(
        value: Annotated[
            str | None,
            typer.Option(
                "--a-very-long-option-name-for-a-box",
                "--another-long-spelling",
                help="Some help.",
            ),
        ] = None,
    ) -> None:
        """A demo.

        \b
        Kept:
          one two three four five six seven eight nine ten eleven twelve
        """

    command = typer.main.get_command(holder)
    text = format_help(command, typer.Context(command, info_name="demo"), width=40)
    assert _too_wide(text, 40) == [], text
    assert "   one two three four five six seven" in text.splitlines(), text
    flat = " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())
    assert "--a-very-long-option-name-for-a-box, --another-long-spelling BOX" in flat, text
