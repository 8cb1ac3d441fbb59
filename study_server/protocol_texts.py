"""A study's consent and debrief texts: read, rendered safely, versioned, checked.

An ethics board approves the words people read, so the server keeps exactly those words:

- A text is Markdown (CommonMark with tables) or HTML, from a file given to
  `study-server import --consent/--debrief` or `study-server protocol attach`. It is rendered
  once, when attached, and sanitized with nh3 (ammonia): only text markup and links survive
  (no script, style, image, form or event attribute; links open in a new tab, since the page
  lives in MTurk's frame). The page shows that HTML, and its SHA-256 names the version.
- Every attach makes a new version (the same text again makes none); versions are never
  changed. A person's allocation keeps the consent version they agreed to, its SHA-256 and
  the time (`operations.accept`), and the debrief they were given (`operations.submit`).
- The accept must carry the SHA-256 of the consent text the person was shown; anything else
  (missing, an older version, made up) is refused, so nobody is allocated images under a
  text they did not see.
- Every study starts with the built-in defaults (`protocol_defaults/`): the fields an IRB
  asks for, each a visible ``[EDIT: ...]`` placeholder. A study whose texts still hold one is
  not ready for paid work: `mturk publish --live` and `prolific publish` refuse it
  (`unedited_texts`) unless told otherwise.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import nh3
from markdown_it import MarkdownIt
from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from study_server.db.models import ProtocolText, TextKind
from study_server.db.rendered import Call, Database
from study_server.db.session import begin_write
from study_server.db.store import find_study, record_event
from study_server.errors import ConflictError, InvalidInputError, NotFoundError

DEFAULTS_DIR = Path(__file__).resolve().parent / "protocol_defaults"
PLACEHOLDER = re.compile(r"\[EDIT:[^\]]*\]")
MAX_TEXT_BYTES = 64 * 1024
FORMATS = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "markdown",
    ".html": "html",
    ".htm": "html",
}
T = TypeVar("T")
# What may stay of a text: structure, emphasis, lists, tables and links. Nothing that runs,
# loads something or changes the page (no script, style, img, iframe, form, on* attributes).
_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "dd", "dl", "dt", "em", "h1", "h2", "h3",
    "h4", "hr", "i", "li", "mark", "ol", "p", "pre", "small", "strong", "sub", "sup", "table",
    "tbody", "td", "th", "thead", "tr", "u", "ul",
}  # fmt: skip
_ATTRIBUTES = {"a": {"href", "title"}, "abbr": {"title"}}
_URL_SCHEMES = {"https", "http", "mailto", "tel"}
_MARKDOWN = MarkdownIt("commonmark", {"html": True}).enable("table")


class TextRefused(InvalidInputError):
    """A text file that cannot be used (unknown format, too large, not UTF-8, empty)."""


class ConsentChanged(ConflictError):
    """The consent text a person agreed to is not the study's current one (409)."""


@dataclass(frozen=True)
class RenderedText:
    """A text ready to be stored: its source, the sanitized HTML people see, its digest."""

    source_format: str
    source: str
    html: str
    sha256: str
    placeholders: int


@dataclass(frozen=True)
class ShownText:
    """A stored version, as the page shows it."""

    version: int
    sha256: str
    html: str

    @classmethod
    def of(cls, row: Any) -> ShownText:
        """From a `ProtocolText`, or a row of `TEXT_COLUMNS`."""
        return cls(row.version, row.sha256, row.html)


def sanitize(html: str) -> str:
    return nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes=_URL_SCHEMES,
        link_rel="noopener noreferrer",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        strip_comments=True,
    )


def render(source: str, source_format: str) -> RenderedText:
    """The text as people will see it: Markdown rendered, then anything unsafe removed."""
    if source_format not in ("markdown", "html"):
        raise TextRefused(f"a text is markdown or html, not {source_format!r}")
    if not source.strip():
        raise TextRefused("the text is empty")
    raw = _MARKDOWN.render(source) if source_format == "markdown" else source
    html = sanitize(raw).strip() + "\n"
    return RenderedText(
        source_format=source_format,
        source=source,
        html=html,
        sha256=hashlib.sha256(html.encode("utf-8")).hexdigest(),
        placeholders=len(PLACEHOLDER.findall(source)),
    )


def read_text_file(path: str | Path) -> RenderedText:
    """A text from a file: `.md`/`.markdown`/`.txt` are Markdown, `.html`/`.htm` HTML."""
    file = Path(path)
    source_format = FORMATS.get(file.suffix.lower())
    if source_format is None:
        raise TextRefused(
            f"{file}: name a Markdown (.md) or HTML (.html) file, got {file.suffix or 'no suffix'!r}"
        )
    try:
        data = file.read_bytes()
    except OSError as error:
        raise TextRefused(f"{file}: {error.strerror or error}") from error
    if len(data) > MAX_TEXT_BYTES:
        raise TextRefused(f"{file}: {len(data)} bytes; a text may have at most {MAX_TEXT_BYTES}")
    try:
        source = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise TextRefused(
            f"{file}: not UTF-8 text ({error.reason} at byte {error.start})"
        ) from error
    try:
        return render(source, source_format)
    except TextRefused as error:
        raise TextRefused(f"{file}: {error.reason}") from error


def default_source(kind: TextKind) -> str:
    """The built-in template of a text (every IRB field an ``[EDIT: ...]`` placeholder)."""
    return (DEFAULTS_DIR / f"{kind.value}.md").read_text(encoding="utf-8")


def default_text(kind: TextKind) -> RenderedText:
    return render(default_source(kind), "markdown")


# Built once (every accept and submission asks): building a statement cost more than running it.
_CURRENT_TEXT = (
    select(ProtocolText)
    .where(ProtocolText.study_id == bindparam("study_id"), ProtocolText.kind == bindparam("kind"))
    .order_by(ProtocolText.version.desc())
    .limit(1)
)


def current_text(session: Session, *, study_id: int, kind: TextKind) -> ProtocolText | None:
    """The study's latest version of the text, or None (a study always has one after import)."""
    return session.scalar(_CURRENT_TEXT, {"study_id": study_id, "kind": kind})


def require_text(session: Session, *, study_id: int, kind: TextKind) -> ProtocolText:
    return required_text(current_text(session, study_id=study_id, kind=kind), kind)


def text_columns_question(*, study_id: int, kind: TextKind) -> Call:
    """The study's current text as a row of `TEXT_COLUMNS` (what the accept and the
    submission read of it), as a statement to send with others (`rendered.execute_together`);
    `required_text` checks the answer."""
    return _CURRENT_TEXT_COLUMNS, {"study_id": study_id, "kind": kind}


def required_text(text: T | None, kind: TextKind) -> T:
    """`text` (a study's current text of that kind, the answer to `text_columns_question`
    among others), or why there is none."""
    if text is None:
        raise NotFoundError(f"this study has no {kind.value} text")
    return text


# What the accept and the submission read of a text: which version, and what it said.
TEXT_COLUMNS = (ProtocolText.id, ProtocolText.version, ProtocolText.sha256, ProtocolText.html)
_CURRENT_TEXT_COLUMNS = _CURRENT_TEXT.with_only_columns(*TEXT_COLUMNS)
_OLDER_CONSENT = select(ProtocolText.version).where(
    ProtocolText.study_id == bindparam("study_id"),
    ProtocolText.kind == TextKind.consent,
    ProtocolText.sha256 == bindparam("sha256"),
)


def add_version(
    session: Session,
    *,
    study_id: int,
    kind: TextKind,
    text: RenderedText,
    source_name: str | None,
) -> tuple[ProtocolText, bool]:
    """Store `text` as the study's next version (in the caller's transaction). The same text
    as the current version makes none: returns (that version, False)."""
    current = current_text(session, study_id=study_id, kind=kind)
    if current is not None and current.sha256 == text.sha256:
        return current, False
    latest = session.scalar(
        select(func.max(ProtocolText.version)).where(
            ProtocolText.study_id == study_id, ProtocolText.kind == kind
        )
    )
    row = ProtocolText(
        study_id=study_id,
        kind=kind,
        version=(latest or 0) + 1,
        source_format=text.source_format,
        source=text.source,
        source_name=source_name,
        html=text.html,
        sha256=text.sha256,
        placeholders=text.placeholders,
    )
    session.add(row)
    session.flush()
    record_event(
        session,
        kind=f"{kind.value}_text_attached",
        study_id=study_id,
        detail={
            "version": row.version,
            "sha256": row.sha256,
            "source": source_name or "built-in default",
            "placeholders": row.placeholders,
        },
    )
    return row, True


@dataclass(frozen=True)
class Attached:
    study: str
    kind: TextKind
    version: int
    sha256: str
    created: bool  # False: the same text was the current version already
    placeholders: int


def attach_files(
    session: Session, *, study_slugs: Sequence[str], files: dict[TextKind, Path]
) -> list[Attached]:
    """The texts in `files` become the next version of each study's (in one transaction:
    every study and kind, or nothing). The files are read and rendered before anything is
    written."""
    rendered = {kind: read_text_file(path) for kind, path in files.items()}
    begin_write(session)
    done = []
    for slug in study_slugs:
        study = find_study(session, slug, list_known=True)
        for kind, text in rendered.items():
            row, created = add_version(
                session, study_id=study.id, kind=kind, text=text, source_name=str(files[kind])
            )
            done.append(Attached(slug, kind, row.version, row.sha256, created, row.placeholders))
    session.commit()
    return done


def checked_consent(db: Database, current: Any, *, study_id: int, sha256: str) -> Any:
    """The consent version a person agreed to, if `sha256` is the study's current one.
    `current`: the answer to `text_columns_question` for the consent text."""
    current = required_text(current, TextKind.consent)
    if sha256 != current.sha256:
        older = db.scalar(_OLDER_CONSENT, {"study_id": study_id, "sha256": sha256})
        what = (
            f"version {older} of the consent text, which was replaced by version {current.version}"
            if older is not None
            else "a consent text this study does not have"
        )
        raise ConsentChanged(
            f"you agreed to {what}; reload the page to read the current text before agreeing"
        )
    return current


def unedited_texts(session: Session, *, study_id: int) -> list[str]:
    """What still holds placeholders, e.g. "consent version 1 (11 [EDIT: ...] placeholders)"."""
    found = []
    for kind in TextKind:
        text = current_text(session, study_id=study_id, kind=kind)
        if text is None:
            found.append(f"{kind.value} (none)")
        elif text.placeholders:
            origin = "the built-in default" if text.source_name is None else text.source_name
            found.append(
                f"{kind.value} version {text.version} ({origin}: {text.placeholders} "
                "[EDIT: ...] placeholder(s) left)"
            )
    return found
