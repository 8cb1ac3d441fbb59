"""Route paths worked out once (study_server/api/route_paths.py) are the paths `url_for`
gives, for every route the pages and the accept name, also behind a proxy's root path."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from study_server.api.app import create_app
from study_server.api.route_paths import RoutePaths
from testkit.servers import make_settings

USES = [
    ("static", {"path": "style.css"}),
    ("static", {"path": "label.js"}),
    ("accept", {"slug": "ours-fc"}),
    ("decline", {"slug": "ours-fc"}),
    ("lab_start", {"slug": "ours-fc"}),
    ("prolific_accept", {"slug": "ours-fc"}),
    ("prolific_complete", {"slug": "ours-fc"}),
    ("item_image", {"public_id": "aB3_x-9", "position": 0}),
    ("item_image", {"public_id": "Zz", "position": 24}),
    ("save_label", {"public_id": "aB3_x-9", "position": 7}),
    ("submit_labels", {"public_id": "aB3_x-9"}),
]


def _request(app, root_path: str) -> Request:
    return Request(
        {
            "type": "http",
            "app": app,
            "router": app.router,
            "root_path": root_path,
            "path": f"{root_path}/",
            "headers": [(b"host", b"study.example.org")],
            "scheme": "https",
            "server": ("study.example.org", 443),
            "query_string": b"",
        }
    )


@pytest.mark.parametrize("root_path", ["", "/lab-a"])
def test_every_path_is_the_one_url_for_gives(sqlite_database_url, root_path):
    app = create_app(make_settings(sqlite_database_url))
    request = _request(app, root_path)
    paths = RoutePaths()
    for _ in range(2):  # worked out, then from the template
        for name, params in USES:
            expected = request.url_for(name, **{k: str(v) for k, v in params.items()}).path
            assert paths.path(request, name, **params) == expected
            assert expected.startswith(f"{root_path}/")


def test_each_root_path_has_its_own_template(sqlite_database_url):
    app = create_app(make_settings(sqlite_database_url))
    paths = RoutePaths()
    plain = paths.path(_request(app, ""), "accept", slug="s1")
    proxied = paths.path(_request(app, "/lab-a"), "accept", slug="s1")
    assert (plain, proxied) == ("/api/studies/s1/accept", "/lab-a/api/studies/s1/accept")
