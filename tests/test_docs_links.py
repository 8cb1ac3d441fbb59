"""Every relative link and image in the README and docs/ points at a file that exists, so a
renamed page or a regenerated table (docs/table1-e20.md) cannot leave a dead link behind."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# [text](target) and ![alt](target), outside code spans; external and in-page links skipped.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)


def links(page: Path) -> list[str]:
    text = CODE.sub("", page.read_text(encoding="utf-8"))
    return [
        target.split("#", 1)[0]
        for target in LINK.findall(text)
        if not re.match(r"[a-z][a-z0-9+.-]*:", target) and not target.startswith("#")
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_relative_links_point_at_files(page):
    dead = [target for target in links(page) if not (page.parent / target).exists()]
    assert not dead, f"{page.relative_to(ROOT)} links to missing {dead}"


def test_the_pages_have_links_to_check():
    assert sum(len(links(page)) for page in PAGES) > 30
