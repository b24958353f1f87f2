"""Bulk-send templates: the file's headers and body, rendered per CSV row to wire bytes.

A template is RFC 822-style header lines (From, To, Cc, Bcc, Reply-To, Subject, Sender,
In-Reply-To, References, custom headers, and `Attachment:` paths, possibly several), a blank
line, then the body; `--html FILE` adds an HTML body (multipart/alternative). Every value is a
Jinja2 template rendered in a SandboxedEnvironment with StrictUndefined: a template cannot
reach Python internals (`{{ ''.__class__ }}` fails), a missing column is an error naming it,
and row values are data, never templates themselves. Only the HTML body is autoescaped.
`render` builds wire bytes through mime/compiled.py (~tens of us); `reference` builds the
same message with the email package through mime/compose.py (the correctness reference).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Any, Final

import jinja2
import jinja2.meta
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from mailctl.errors import (
    AddressError,
    HeaderInjectionError,
    InputDataError,
    MailctlError,
    MessageTooLargeError,
    UndefinedColumn,
)
from mailctl.inputs import MAX_INPUT_HINT, describe, max_input_bytes, read_file
from mailctl.mime.attachment_cache import AttachmentCache, confined_path
from mailctl.mime.compiled import (
    EncodedAttachment,
    Skeleton,
    check_header_block,
    encode_attachment,
    fold_mailboxes,
    fold_text,
)
from mailctl.mime.compose import (
    AttachmentSpec,
    ComposeRequest,
    attachment_name,
    compose,
    guess_content_type,
    message_needs_smtputf8,
    serialize,
)
from mailctl.mime.headers import (
    Mailbox,
    is_msg_id,
    line_problem,
    parse_mailbox,
    parse_mailbox_list,
    parse_msg_ids,
    require_clean,
)
from mailctl.text import quote

__all__ = ["MessageTemplate", "RenderedMessage", "UndefinedColumn"]

# A header name in a template: RFC 5322 2.2 ftext, less the characters Jinja syntax uses.
_FIELD: Final = re.compile(r"([A-Za-z0-9][A-Za-z0-9!$&'*+.^_`|~-]*)[ \t]*:(.*)")
_ADDRESS_LISTS: Final = ("reply-to", "to", "cc", "bcc")
# compose's header order (mime/compose._headers), which the fast path writes too.
_ORDER: Final = ("from", "sender", "reply-to", "to", "cc", "subject")
_ONCE: Final = frozenset({*_ORDER, "in-reply-to", "references"})
_SET_BY_BULK: Final = {
    "date": "bulk-send dates every message itself",
    "message-id": "bulk-send gives every row a stable Message-ID itself",
}
_REFUSED_PREFIXES: Final = ("content-", "resent-")
_REFUSED: Final = frozenset({"mime-version", "return-path", "orig-date"})
_MAX_REPEAT: Final = 1 << 20  # characters or items one `*` may make
_MAX_EXPONENT: Final = 256
_PADDING: Final = frozenset({"ljust", "rjust", "center", "zfill", "expandtabs"})
_NOT_IN_SPEC: Final = frozenset('<>,;:"()[]\\ \t')
_JINJA: Final = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_UNDEFINED: Final = re.compile(r"'([^']*)' is undefined")


@dataclass(frozen=True)
class RenderedMessage:
    """One row's message: wire bytes and the envelope they go with."""

    sender: Mailbox  # From, or the default sender
    recipients: tuple[Mailbox, ...]  # To + Cc + Bcc, each mailbox once, in that order
    to: str  # the To header's addresses (or every recipient's, when To is empty), for reports
    data: bytes  # CRLF line ends, not dot-stuffed, no Bcc
    smtputf8: bool  # an address has a non-ASCII local part (RFC 6531)
    message_id: str


def _mailbox(name: object, email: object) -> str:
    """`mailbox(name, email)` in a template: one mailbox whatever the name holds.

    (Not `address`: a CSV column of that name, a postal address, would hide it; columns
    come before globals.)

    `{{ name }} <{{ email }}>` breaks on a name with a comma, '<' or a quote; this writes
    the name as a quoted-string (RFC 5322 3.2.4), which the address parser reads back whole.
    """
    spec = str(email).strip(" \t")
    if spec.count("@") != 1 or any(c in _NOT_IN_SPEC for c in spec):
        # One addr-spec, or a cell could add a recipient ("a@x.org>, <eve@evil.test").
        raise ValueError(f"mailbox(): {quote(spec)} is not one plain address")
    text = str(name).strip(" \t")
    if not text:
        return spec
    # Line breaks stay in, so the header check refuses them instead of hiding them.
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}" <{spec}>'


class _Sandbox(SandboxedEnvironment):
    """The sandbox, with `*` and `**` bounded: `{{ '-' * count|int }}` on a hostile row, or
    `{{ 10 ** (10 ** 10) }}`, must not take the memory or the CPU of a whole run."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(right, int) and abs(right) > _MAX_EXPONENT:
                raise SecurityError(f"an exponent above {_MAX_EXPONENT} is not allowed")
            return left**right
        for seq, count in ((left, right), (right, left)):
            repeated = isinstance(seq, (str, list, tuple)) and isinstance(count, int)
            if repeated and len(seq) * count > _MAX_REPEAT:
                raise SecurityError(f"a repetition longer than {_MAX_REPEAT} is not allowed")
        return left * right

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        # str methods whose size comes from an argument: `name.ljust(width|int)` on a row.
        if isinstance(getattr(obj, "__self__", None), str) and obj.__name__ in _PADDING:
            sizes = [a for a in (*args, *kwargs.values()) if isinstance(a, int)]
            if any(size > _MAX_REPEAT for size in sizes):
                raise SecurityError(f"a string longer than {_MAX_REPEAT} is not allowed")
        return super().call(context, obj, *args, **kwargs)


def _environment(*, html: bool) -> SandboxedEnvironment:
    env = _Sandbox(
        undefined=jinja2.StrictUndefined,
        autoescape=html,
        keep_trailing_newline=True,
        auto_reload=False,
    )
    del env.globals["lipsum"]  # lipsum(10**7) builds gigabytes of text
    env.globals["mailbox"] = _mailbox
    return env


@dataclass(frozen=True)
class _Piece:
    """One templated string of the file: a header value, an attachment path or a body."""

    where: str  # "header Subject", "the body", ...
    source: str
    line: int  # 1-based line of the file where it starts
    template: jinja2.Template | None  # None: static text, no Jinja in it
    columns: frozenset[str]
    own_context: bool  # defines blocks (or is HTML): needs its own context

    def render(self, context: jinja2.runtime.Context | None, fields: Mapping[str, str]) -> str:
        if self.template is None:
            return self.source
        try:
            if self.own_context or context is None:
                return self.template.render(fields)
            return jinja2.utils.concat(self.template.root_render_func(context))
        except jinja2.UndefinedError as err:
            name = _UNDEFINED.fullmatch(err.message or "")
            if name is not None:  # a top-level name: a column (columns are checked first)
                raise _missing(name.group(1), self.where) from None
            raise InputDataError(f"{self.where} (line {self.line}): {err.message}") from None
        except SecurityError as err:
            raise InputDataError(
                f"{self.where}: the template tried something unsafe ({err})",
                hint="templates cannot reach Python internals",
            ) from None
        except MailctlError:
            raise
        except Exception as err:  # a filter or operator on row data: int("x"), 1/0, ...
            raise InputDataError(
                f"{self.where} (line {self.line}): {type(err).__name__}: {err}"
            ) from None


def _missing(column: str, where: str) -> UndefinedColumn:
    return UndefinedColumn(
        f"the row has no column {quote(column)} ({where} uses it)",
        hint="add the column to the CSV header or fix the name in the template",
        details={"column": column},
    )


@dataclass(frozen=True)
class _Header:
    name: str  # as written in the template
    key: str  # lower-case
    piece: _Piece
    # An address list written as one `... <...>` around variables (`{{ name }} <{{ email }}>`)
    # means one mailbox: a cell holding "x@evil.test, Bob" must not add a recipient.
    single: bool = False


@dataclass
class _Source:
    """What parsing the template file found."""

    path: Path
    headers: list[_Header] = field(default_factory=list)
    attachments: list[_Piece] = field(default_factory=list)
    body: _Piece | None = None


class _Compiler:
    """Turns template text into pieces, with Jinja syntax errors named by file and line."""

    def __init__(self, env: SandboxedEnvironment, path: Path) -> None:
        self.env = env
        self.path = path

    def piece(self, where: str, source: str, line: int) -> _Piece:
        if "{" not in source:  # no {{ }}, {% %} or {# #}: static text
            return _Piece(where, source, line, None, frozenset(), own_context=False)
        try:
            tree = self.env.parse(source)
            template = self.env.from_string(tree)
        except jinja2.TemplateSyntaxError as err:
            at = line + (err.lineno or 1) - 1
            raise InputDataError(f"{self.path}:{at}: {where}: {err.message}") from None
        if any(True for _ in jinja2.meta.find_referenced_templates(tree)):
            raise InputDataError(
                f"{self.path}:{line}: {where}: include, import and extends are not supported"
            )
        columns = frozenset(jinja2.meta.find_undeclared_variables(tree)) - set(self.env.globals)
        own = bool(template.blocks) or bool(self.env.autoescape)
        return _Piece(where, source, line, template, columns, own_context=own)


def _read_text(path: Path, what: str) -> str:
    data = read_file(path, what=what)  # 66 missing/unreadable; 65 too large, not a file
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise InputDataError(
            f"{path}:{line}: the {what} is not UTF-8 text", hint="save it as UTF-8"
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _parse_file(path: Path, text: str, compiler: _Compiler) -> _Source:
    """Split the template into header pieces, attachment pieces and the body piece."""
    source = _Source(path)
    lines = text.split("\n")
    raw: list[list[Any]] = []  # [name, value, line]
    body_start = len(lines)
    for index, line in enumerate(lines):
        if not line.strip(" \t"):
            body_start = index + 1
            break
        if line[:1] in (" ", "\t"):
            if not raw:
                raise InputDataError(f"{path}:{index + 1}: a continuation line before any header")
            raw[-1][1] += line  # RFC 5322 2.2.3: unfolding removes only the line break
            continue
        match = _FIELD.fullmatch(line)
        if match is None:
            raise InputDataError(
                f"{path}:{index + 1}: expected a header line 'Name: value'",
                hint="headers come first, then a blank line, then the body",
            )
        raw.append([match.group(1), match.group(2), index + 1])
    seen: set[str] = set()
    for name, value, line in raw:
        key = name.lower()
        _check_name(path, line, name, key, seen)
        piece = compiler.piece(f"header {name}", value.strip(" \t"), line)
        if key == "attachment":
            source.attachments.append(replace(piece, where=f"the attachment path (line {line})"))
        else:
            source.headers.append(_Header(name, key, piece, single=_one_mailbox(key, piece)))
    body = "\n".join(lines[body_start:])
    source.body = compiler.piece("the body", body, body_start + 1)
    return source


def _one_mailbox(key: str, piece: _Piece) -> bool:
    """True for an address list whose literal text is one `<...>` (see _Header.single)."""
    if key not in _ADDRESS_LISTS or piece.template is None:
        return False
    literal = _JINJA.sub("", piece.source)
    return literal.count("<") == 1 and literal.count(">") == 1 and "," not in literal


def _check_name(path: Path, line: int, name: str, key: str, seen: set[str]) -> None:
    at = f"{path}:{line}"
    if key in _SET_BY_BULK:
        raise InputDataError(f"{at}: a template cannot set {name}", hint=_SET_BY_BULK[key])
    if key in _REFUSED or key.startswith(_REFUSED_PREFIXES):
        raise InputDataError(
            f"{at}: {name} is set by mailctl, not by the template",
            hint="give an HTML body with --html and files with Attachment: lines",
        )
    if key in _ONCE and key in seen:
        raise InputDataError(f"{at}: the template has more than one {name} header")
    seen.add(key)


def _digest(text: str, html: str | None) -> str:
    digest = hashlib.sha256(b"mailctl-bulk-template-1\0text\0")
    digest.update(text.encode("utf-8", "surrogateescape"))
    if html is not None:
        digest.update(b"\0html\0")
        digest.update(html.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


@dataclass
class _Row:
    """One row's rendered values, shared by render and reference."""

    sender: Mailbox
    boxes: dict[str, tuple[Mailbox, ...]]
    subject: str  # "": left out, as compose does
    texts: list[tuple[_Header, str]]  # custom headers, non-empty, in template order
    msgids: dict[str, str]  # by lower-case name
    text: str
    html: str | None
    attachments: list[AttachmentSpec]  # per-row files (real paths, inside the folder)

    def recipients(self) -> tuple[Mailbox, ...]:
        out: list[Mailbox] = []
        seen: set[str] = set()
        for key in ("to", "cc", "bcc"):
            for box in self.boxes.get(key, ()):
                # RFC 5321 2.4: the local part may be case-sensitive, the domain is not.
                local, _, domain = box.addr_spec.rpartition("@")
                dedupe = f"{local}@{domain.lower()}"
                if dedupe not in seen:
                    seen.add(dedupe)
                    out.append(box)
        if not out:
            raise AddressError("the row has no recipient: To, Cc and Bcc are all empty")
        return tuple(out)

    def utf8(self) -> bool:
        boxes = (self.sender, *(box for group in self.boxes.values() for box in group))
        return any(not box.addr_spec.isascii() and box.needs_smtputf8 for box in boxes)


class MessageTemplate:
    """A bulk template loaded and compiled once; `render` per row."""

    digest: str
    columns: frozenset[str]

    def __init__(
        self,
        source: _Source,
        *,
        html: _Piece | None,
        default_from: Mailbox | None,
        root: Path,
        digest: str,
    ) -> None:
        self.path = source.path
        self.digest = digest
        self._headers = source.headers
        self._by_key = {header.key: header for header in source.headers}
        assert source.body is not None
        self._body = source.body
        self._html = html
        self._root = root
        pieces = [h.piece for h in self._headers] + source.attachments + [self._body]
        pieces += [html] if html is not None else []
        self.columns = frozenset().union(*(p.columns for p in pieces))
        self._context_template = next(
            (p.template for p in pieces if p.template is not None and not p.own_context), None
        )
        self._globals = (
            dict(self._context_template.globals) if self._context_template is not None else {}
        )
        self._cache = AttachmentCache()
        self._static_files: list[AttachmentSpec] = []
        static_parts: list[EncodedAttachment] = []
        self._dynamic: list[_Piece] = []
        budget = max_input_bytes()
        for piece in source.attachments:
            if piece.template is not None:
                self._dynamic.append(piece)
                continue
            # Written by the template's author, like `send --attach`: relative to the
            # template's folder, and not confined (only paths row data helps write are).
            spec = AttachmentSpec(
                (self.path.parent / piece.source).resolve(), filename=Path(piece.source).name
            )
            try:
                name = attachment_name(spec)
                data = read_file(spec.path, what="attachment", limit=budget)
            except MailctlError as err:
                raise type(err)(f"{self.path}:{piece.line}: {err.message}", hint=err.hint) from None
            budget -= len(data)
            static_parts.append(
                encode_attachment(data, filename=name, content_type=guess_content_type(name))
            )
            self._static_files.append(spec)
        self._budget = budget
        self._skeleton = Skeleton(
            html=html is not None, attachments=bool(self._dynamic), static=static_parts
        )
        if "from" not in self._by_key and default_from is None:
            raise InputDataError(
                f"{self.path}: the template has no From header",
                hint="add a line 'From: Name <address>' or give a default sender",
            )
        self._default_from = default_from
        # Static headers are checked now, so a bad one fails the load, not every row.
        self._static_row: dict[str, Any] = {}
        for header in self._headers:
            if header.piece.template is None:
                try:
                    self._static_row[header.key] = self._value(header, header.piece.source)
                except MailctlError as err:
                    raise type(err)(
                        f"{self.path}:{header.piece.line}: {err.message}", hint=err.hint
                    ) from None
        self._folded: dict[tuple[int, bool], bytes] = {}  # static header lines, folded once
        self._last_date: tuple[float, str] = (0.0, "")
        self._checked_dates: set[str] = set()

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        html_path: Path | None = None,
        attachments_root: Path | None = None,
        default_from: str | None = None,
    ) -> MessageTemplate:
        """Read and compile the template (and the HTML one); nothing is rendered yet.

        `attachments_root` (default: the template's folder) is where per-row attachment
        paths must stay. Raises NoInputError (66) for a missing or unreadable file or static
        attachment; InputDataError (65) naming file:line for a bad header line, Jinja syntax,
        a header mailctl sets itself, or a bad static value; AddressError for `default_from`.
        """
        text = _read_text(path, "template")
        compiler = _Compiler(_environment(html=False), path)
        source = _parse_file(path, text, compiler)
        html_piece = None
        html_text = None
        if html_path is not None:
            html_text = _read_text(html_path, "HTML template")
            html_piece = _Compiler(_environment(html=True), html_path).piece(
                "the HTML body", html_text, 1
            )
        sender = parse_mailbox("the default sender", default_from) if default_from else None
        root = Path(os.path.realpath(attachments_root or path.parent))
        return cls(
            source, html=html_piece, default_from=sender, root=root, digest=_digest(text, html_text)
        )

    # ------------------------------------------------------------------ one row

    def _value(self, header: _Header, text: str) -> Any:
        """A rendered header value, parsed and checked by its kind; None: leave it out."""
        field_name = f"header {header.name}"
        key = header.key
        if key in ("from", "sender"):
            return parse_mailbox(field_name, text)
        require_clean(field_name, text)
        if not text:
            return None
        if key in _ADDRESS_LISTS:
            return parse_mailbox_list(field_name, [text])
        if key in ("in-reply-to", "references"):
            return parse_msg_ids(field_name, text)
        return text

    def _rendered_value(
        self, header: _Header, context: jinja2.runtime.Context | None, fields: Mapping[str, str]
    ) -> Any:
        if header.piece.template is None:
            return self._static_row[header.key]
        text = header.piece.render(context, fields).strip(" \t")
        try:
            value = self._value(header, text)
        except HeaderInjectionError as err:
            raise _name_column(err, header.piece, fields) from None
        if header.single and value is not None and len(value) != 1:
            raise AddressError(
                f"header {header.name}: the row's values make {len(value)} addresses where "
                "the template writes one",
                hint="write the header as {{ mailbox(name, email) }}, which quotes the name",
            )
        return value

    def _row(self, fields: Mapping[str, str]) -> _Row:
        # csv.DictReader fills the cells a short row lacks with None: missing too.
        missing = [column for column in self.columns if fields.get(column) is None]
        if missing:
            raise _missing(sorted(missing)[0], "the template")
        context = None
        if self._context_template is not None:
            env = self._context_template.environment
            # Template.new_context merges a ChainMap of the globals per call (~10 us); a
            # Context over one dict of the globals and the row costs ~1.5 us. Pieces that
            # define blocks or autoescape get their own context (_Piece.own_context).
            context = jinja2.runtime.Context(env, {**self._globals, **fields}, None, {})
        sender = self._default_from
        boxes: dict[str, tuple[Mailbox, ...]] = {}
        subject = ""
        texts: list[tuple[_Header, str]] = []
        msgids: dict[str, str] = {}
        for header in self._headers:
            value = self._rendered_value(header, context, fields)
            if value is None:
                continue
            key = header.key
            if key == "from":
                sender = value
            elif key == "sender":
                boxes["sender"] = (value,)
            elif key in _ADDRESS_LISTS:
                boxes[key] = value
            elif key in ("in-reply-to", "references"):
                msgids[key] = value
            elif key == "subject":
                subject = value
            else:
                texts.append((header, value))
        assert sender is not None  # load() refuses a template with neither
        text = self._body.render(context, fields)
        html = self._html.render(None, fields) if self._html is not None else None
        files = [
            confined_path(self._root, piece.render(context, fields), field=piece.where)
            for piece in self._dynamic
        ]
        return _Row(sender, boxes, subject, texts, msgids, text, html, files)

    def _date(self, date: str | None) -> str:
        if date is not None:
            if date not in self._checked_dates:
                require_clean("the Date", date)
                try:
                    parsedate_to_datetime(date)
                except (TypeError, ValueError, IndexError) as err:
                    raise InputDataError(f"the Date {quote(date)} is not an RFC 5322 date") from err
                if len(self._checked_dates) > 64:
                    self._checked_dates.clear()
                self._checked_dates.add(date)
            return date
        now = time.time()
        second, text = self._last_date
        if int(now) != int(second):
            text = format_datetime(_local(now))
            self._last_date = (now, text)
        return text

    def _line(self, key: str, name: str, value: str | tuple[Mailbox, ...], utf8: bool) -> bytes:
        """A From/Sender/Reply-To/To/Cc/Subject line; static ones are folded once."""
        header = self._by_key.get(key)
        static = header is None or header.piece.template is None  # None: the default From
        memo = (id(header), utf8)
        if static and memo in self._folded:
            return self._folded[memo]
        if isinstance(value, str):
            line = fold_text(name, value, utf8=utf8)
        else:
            line = _mailbox_line(name, value, utf8)
        if static:
            self._folded[memo] = line
        return line

    def _custom_line(self, header: _Header, value: str, utf8: bool) -> bytes:
        memo = (id(header), utf8)
        line = self._folded.get(memo)
        if line is None:
            line = fold_text(header.name, value, utf8=utf8)
            if header.piece.template is None:
                self._folded[memo] = line
        return line

    def render(
        self, fields: Mapping[str, str], *, message_id: str, date: str | None = None
    ) -> RenderedMessage:
        """The message for one CSV row, as wire bytes (the fast path).

        `message_id` is `<id@host>`; `date` an RFC 5322 date (default: now). Raises
        UndefinedColumn for a column the row lacks, HeaderInjectionError naming the header
        (and the column) for a line break or control character, AddressError for a bad or
        missing address, InputDataError for a template error, a bad Message-ID or an
        attachment path leading outside the folder, NoInputError for a missing attachment,
        MessageTooLargeError past the message limit.
        """
        if not is_msg_id(message_id):
            raise InputDataError(f"the Message-ID {quote(message_id)} is not <id@host>")
        row = self._row(fields)
        recipients = row.recipients()
        utf8 = row.utf8()
        lines = [b"Date: " + self._date(date).encode("ascii") + b"\r\n"]
        lines.append(self._line("from", "From", (row.sender,), utf8))
        for key, name in (
            ("sender", "Sender"),
            ("reply-to", "Reply-To"),
            ("to", "To"),
            ("cc", "Cc"),
        ):
            if key in row.boxes:
                lines.append(self._line(key, name, row.boxes[key], utf8))
        if row.subject:
            lines.append(self._line("subject", "Subject", row.subject, utf8))
        lines.append(fold_text("Message-ID", message_id, utf8=False))
        for key, name in (("in-reply-to", "In-Reply-To"), ("references", "References")):
            if key in row.msgids:
                lines.append(fold_text(name, row.msgids[key], utf8=False))
        lines += [self._custom_line(header, value, utf8) for header, value in row.texts]
        head = b"".join(lines)
        check_header_block(head, fields=len(lines))
        budget = self._budget
        attachments: list[EncodedAttachment] = []
        for spec in row.attachments:
            part = self._cache.get(spec, limit=budget)
            budget -= part.size
            attachments.append(part)
        data = head + self._skeleton.body(row.text, row.html, attachments)
        limit = max_input_bytes()
        if len(data) > limit:
            raise MessageTooLargeError(
                f"the message is over the {describe(limit)} limit", hint=MAX_INPUT_HINT
            )
        to_boxes = row.boxes.get("to") or recipients
        return RenderedMessage(
            sender=row.sender,
            recipients=recipients,
            to=", ".join(box.addr_spec for box in to_boxes),
            data=data,
            smtputf8=utf8,
            message_id=message_id,
        )

    def reference(
        self, fields: Mapping[str, str], *, message_id: str, date: str | None = None
    ) -> bytes:
        """The same message built with the email package (compose + serialize): the reference.

        Raises what `render` raises (the wording may differ: compose names options).
        """
        message = self.reference_message(fields, message_id=message_id, date=date)
        return serialize(message, utf8=message_needs_smtputf8(message))

    def reference_message(
        self, fields: Mapping[str, str], *, message_id: str, date: str | None = None
    ) -> EmailMessage:
        """The reference as an EmailMessage (what wire_check.check_wire_headers compares with)."""
        row = self._row(fields)
        row.recipients()
        extras: list[tuple[str, str]] = [("Date", self._date(date)), ("Message-ID", message_id)]
        if "sender" in row.boxes:
            extras.append(("Sender", row.boxes["sender"][0].formatted()))
        extras += [(header.name, value) for header, value in row.texts]
        request = ComposeRequest(
            sender=row.sender,
            to=row.boxes.get("to", ()),
            cc=row.boxes.get("cc", ()),
            bcc=row.boxes.get("bcc", ()),
            reply_to=row.boxes.get("reply-to", ()),
            subject=row.subject,
            text=row.text,
            html=row.html,
            attachments=(*self._static_files, *row.attachments),
            extra_headers=tuple(extras),
            in_reply_to=row.msgids.get("in-reply-to"),
            references=row.msgids.get("references"),
        )
        return compose(request)


def _local(now: float) -> Any:
    from datetime import datetime

    return datetime.fromtimestamp(now).astimezone()


def _mailbox_line(name: str, boxes: tuple[Mailbox, ...], utf8: bool) -> bytes:
    items = [
        (box.display_name, box.addr_spec if utf8 or box.addr_spec.isascii()
         else box.envelope_address(smtputf8=False))
        for box in boxes
    ]  # fmt: skip
    return fold_mailboxes(name, items, utf8=utf8)


def _name_column(err: MailctlError, piece: _Piece, fields: Mapping[str, str]) -> MailctlError:
    """Add the column whose value holds the bad character to a header error, when one does."""
    for column in sorted(piece.columns):
        value = fields.get(column)
        if isinstance(value, str) and line_problem(value) is not None:
            return type(err)(f"{err.message} (from column {quote(column)})", hint=err.hint)
    return err
