"""The ExternalQuestion XML: what MTurk frames, and what it would refuse."""

from __future__ import annotations

from xml.etree import ElementTree

import pytest

from markets.mturk.question import (
    EXTERNAL_QUESTION_NS,
    QuestionError,
    external_question_xml,
    parse_external_question,
)


def test_the_xml_names_the_page_and_frame_height_in_mturks_namespace():
    url = "https://study.example.org/hit/ours-fc?lang=en&v=2"
    root = ElementTree.fromstring(external_question_xml(url, 800).encode())
    assert root.tag == f"{{{EXTERNAL_QUESTION_NS}}}ExternalQuestion"
    assert root.findtext(f"{{{EXTERNAL_QUESTION_NS}}}ExternalURL") == url  # '&' survived escaping
    assert root.findtext(f"{{{EXTERNAL_QUESTION_NS}}}FrameHeight") == "800"
    assert parse_external_question(external_question_xml(url, 0)).url == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://study.example.org/hit/x", "HTTPS"),
        ("ftp://study.example.org/hit/x", "https://"),
        ("/hit/x", "absolute"),
        ("https://study.example.org/hit/x#top", "fragment"),
    ],
)
def test_pages_mturk_cannot_frame_are_refused_with_the_reason(url, reason):
    with pytest.raises(QuestionError, match=reason):
        external_question_xml(url, 800)


def test_plain_http_is_accepted_only_on_loopback_for_the_local_fake():
    assert "127.0.0.1" in external_question_xml("http://127.0.0.1:8000/hit/x", 600)
    with pytest.raises(QuestionError, match="frame height"):
        external_question_xml("https://study.example.org/hit/x", -1)


URL_NODE = "<ExternalURL>https://a.org/</ExternalURL>"
HEIGHT_NODE = "<FrameHeight>1</FrameHeight>"


@pytest.mark.parametrize(
    "xml",
    [
        f"<ExternalQuestion>{URL_NODE}{HEIGHT_NODE}</ExternalQuestion>",  # no namespace
        f'<ExternalQuestion xmlns="{EXTERNAL_QUESTION_NS}">{HEIGHT_NODE}</ExternalQuestion>',
        f'<ExternalQuestion xmlns="{EXTERNAL_QUESTION_NS}">{URL_NODE}</ExternalQuestion>',
        "<not xml",
    ],
)
def test_malformed_questions_do_not_parse(xml):
    with pytest.raises(QuestionError):
        parse_external_question(xml)
