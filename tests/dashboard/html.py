"""Reading the dashboard's HTML in tests: the text of a table row's cells, rows by class."""

from __future__ import annotations

from html.parser import HTMLParser


class _Rows(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[dict[str, str | None], list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append((dict(attrs), []))
        elif tag in ("td", "th") and self.rows:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1][1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def rows(html: str) -> list[tuple[dict[str, str | None], list[str]]]:
    parser = _Rows()
    parser.feed(html)
    return parser.rows


def row(html: str, row_id: str) -> list[str]:
    """The text of each cell of the row `<tr id=row_id>`."""
    found = [cells for attrs, cells in rows(html) if attrs.get("id") == row_id]
    assert len(found) == 1, f"{len(found)} rows with id {row_id!r}"
    return found[0]


def rows_of_class(html: str, name: str) -> list[list[str]]:
    return [cells for attrs, cells in rows(html) if name in (attrs.get("class") or "").split()]
