"""MTurk's ExternalQuestion: the XML that makes a HIT show our study server's page in an iframe.

MTurk appends ``assignmentId``, ``hitId``, ``workerId`` and ``turkSubmitTo`` to the URL
(``assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE`` and no ``workerId`` while previewing) and
requires HTTPS. Plain HTTP is accepted here only for loopback hosts, which can only ever be
reached by the local fake of MTurk used in tests and rehearsals.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit
from xml.etree import ElementTree
from xml.sax.saxutils import escape

EXTERNAL_QUESTION_NS = (
    "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/"
    "2006-07-14/ExternalQuestion.xsd"
)
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
MAX_QUESTION_BYTES = 65535  # MTurk's limit on the Question parameter
MAX_FRAME_HEIGHT = 4000


class QuestionError(ValueError):
    """An ExternalQuestion MTurk would refuse (bad URL, bad frame height, malformed XML)."""


@dataclass(frozen=True)
class ExternalQuestion:
    url: str
    frame_height: int


def check_external_url(url: str) -> str:
    """`url` if MTurk can frame it: absolute, HTTPS (HTTP only on loopback), no fragment."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise QuestionError(f"the HIT page URL must be an absolute https:// URL, got {url!r}")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise QuestionError(
            f"MTurk only frames HTTPS pages; {url!r} is plain http on a non-loopback host"
        )
    if parts.fragment:
        raise QuestionError(
            f"the HIT page URL must not have a #fragment (MTurk appends a query): {url!r}"
        )
    return url


def external_question_xml(url: str, frame_height: int) -> str:
    """The Question parameter for a HIT that frames `url` at `frame_height` pixels (0 = auto)."""
    check_external_url(url)
    if not 0 <= frame_height <= MAX_FRAME_HEIGHT:
        raise QuestionError(
            f"frame height must be 0..{MAX_FRAME_HEIGHT} pixels, got {frame_height}"
        )
    xml = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<ExternalQuestion xmlns="{EXTERNAL_QUESTION_NS}">'
        f"<ExternalURL>{escape(url)}</ExternalURL>"
        f"<FrameHeight>{frame_height}</FrameHeight>"
        f"</ExternalQuestion>"
    )
    if len(xml.encode()) > MAX_QUESTION_BYTES:
        raise QuestionError(
            f"the ExternalQuestion is longer than MTurk's {MAX_QUESTION_BYTES} bytes"
        )
    return xml


def parse_external_question(xml: str) -> ExternalQuestion:
    """Read back an ExternalQuestion, checking it the way MTurk does (namespace, URL, height)."""
    if len(xml.encode()) > MAX_QUESTION_BYTES:
        raise QuestionError(f"Question is longer than {MAX_QUESTION_BYTES} bytes")
    try:
        root = ElementTree.fromstring(xml.encode())
    except ElementTree.ParseError as error:
        raise QuestionError(f"Question is not well-formed XML: {error}") from error
    if root.tag != f"{{{EXTERNAL_QUESTION_NS}}}ExternalQuestion":
        raise QuestionError(
            f"Question must be an ExternalQuestion in namespace {EXTERNAL_QUESTION_NS}, "
            f"got {root.tag}"
        )
    url_node = root.find(f"{{{EXTERNAL_QUESTION_NS}}}ExternalURL")
    height_node = root.find(f"{{{EXTERNAL_QUESTION_NS}}}FrameHeight")
    if url_node is None or not (url_node.text or "").strip():
        raise QuestionError("ExternalQuestion has no ExternalURL")
    if height_node is None or not (height_node.text or "").strip().isdigit():
        raise QuestionError("ExternalQuestion has no integer FrameHeight")
    height = int(height_node.text.strip())
    if height > MAX_FRAME_HEIGHT:
        raise QuestionError(f"FrameHeight {height} is above {MAX_FRAME_HEIGHT}")
    return ExternalQuestion(url=check_external_url(url_node.text.strip()), frame_height=height)
