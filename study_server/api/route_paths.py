"""The paths of named routes, each worked out once.

Starlette's `request.url_for` tries the routes in turn until one builds the path: 30-85 µs a
call here (the static mount is last), and a HIT page asked for four, an accept for three.
`RoutePaths` asks `url_for` once per route and set of parameter names, with a marker for each
value, and keeps the path as a template to fill. `url_for` does not quote the values either,
so a filled template is the path `url_for` gives (tests/server/test_route_paths.py).
"""

from __future__ import annotations

from typing import Any

from jinja2 import pass_context
from starlette.requests import Request

# A marker no route's literal text contains; letters only, which the `str` and `path`
# convertors of these routes take (an `int` or `uuid` convertor would not: none is used).
_MARK = "ROUTEPARAMMARK"


class RoutePaths:
    """The app's own cache of route path templates (one per app, in `app.state`)."""

    def __init__(self) -> None:
        self._templates: dict[tuple[str, str, tuple[str, ...]], str] = {}

    def path(self, request: Request, name: str, **params: Any) -> str:
        """`request.url_for(name, **params).path`, from a template after the first call."""
        scope = request.scope  # the root `url_for` builds on (Request.base_url)
        key = (scope.get("app_root_path", scope.get("root_path", "")), name, tuple(sorted(params)))
        template = self._templates.get(key)
        if template is None:
            marked = request.url_for(name, **{p: f"{_MARK}{p}{_MARK}" for p in params}).path
            template = marked.replace("{", "{{").replace("}", "}}")
            for p in params:
                template = template.replace(f"{_MARK}{p}{_MARK}", f"{{{p}}}")
            self._templates[key] = template
        return template.format(**{p: str(value) for p, value in params.items()})


def route_path(request: Request, name: str, **params: Any) -> str:
    """The path of the route `name` with `params`, for the app serving `request`."""
    paths: RoutePaths = request.app.state.route_paths
    return paths.path(request, name, **params)


@pass_context
def template_route_path(context: Any, name: str, **params: Any) -> str:
    """`route_path` for Jinja templates, which have the request in their context."""
    return route_path(context["request"], name, **params)
