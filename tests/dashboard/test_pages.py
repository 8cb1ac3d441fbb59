"""The dashboard over HTTP, on a study filled by a dry run (SQLite and PostgreSQL).

Signing in (the token only in a POST body, the cookie's attributes, wrong tokens, the
throttle, signing out), bad input, and what the panels say against the database and
`analyze-study`. The browser's view is tests/dashboard/test_browser.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from sqlalchemy import select

from analysis.dashboard.app import create_app
from analysis.labels import read_database
from analysis.simulate import Annotators
from analysis.table2 import compute_table2
from markets.mturk.fake.hit_flow import open_assignment
from pipeline.dry_run import DryRun, DryRunPlan, dry_run
from study_server.api.clients import uvicorn_proxy_options
from study_server.db.models import Event
from study_server.loopback import serve_in_thread
from study_server.settings import LimitSettings
from study_server.synthetic import write_synthetic_bundle
from testkit.databases import session_for
from testkit.servers import make_settings
from tests.dashboard.html import row, rows_of_class

TOKEN = "dashboard-test-token"


@pytest.fixture(
    scope="module",
    params=[pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)],
)
def run(request, database_factory, tmp_path_factory) -> Iterator[DryRun]:
    """ours-fc and mm-fc, 12 assignments of 5 each (+2 and +1 catch trials), 10 people each
    done, confirmed and approved on the MTurk fake; the last two HITs are left for the tests."""
    root = tmp_path_factory.mktemp("dashboard")
    ours = write_synthetic_bundle(root / "ours", n_adversarial=60, n_catch=24, seed=1)
    mm = write_synthetic_bundle(root / "mm", n_adversarial=60, n_catch=12, defense="mm", seed=2)
    plan = DryRunPlan(
        bundles=(ours, mm),
        annotators=(Annotators(0.8, catch_accuracy=0.7), Annotators(0.3)),
        items_per_assignment=5,
        assignments=10,
        database_url=database_factory(request.param),
        resamples=199,
        admin_token=TOKEN,
    )
    with dry_run(plan, say=lambda line: None) as done:
        yield done


@contextmanager
def _signed_in(run: DryRun) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=run.server_url, timeout=60) as web:
        answer = web.post("/dashboard/login", data={"token": TOKEN})
        assert answer.status_code == 303, answer.text
        yield web


@pytest.fixture
def another_server(run):
    """`another_server(**settings)`: the same database served with other settings."""
    started = []

    def start(**overrides) -> str:
        settings = make_settings(run.database_url, **{"admin_token": TOKEN, **overrides})
        served = serve_in_thread(create_app(settings), **uvicorn_proxy_options(settings))
        started.append(served)
        return served.url

    yield start
    for served in started:
        served.stop()


def _events(url: str, kind: str) -> list[Event]:
    session = session_for(url)
    try:
        return list(session.scalars(select(Event).where(Event.kind == kind).order_by(Event.id)))
    finally:
        session.close()


def test_pages_send_you_to_sign_in_and_a_token_in_a_url_opens_nothing(run):
    with httpx.Client(base_url=run.server_url) as web:
        page = web.get("/dashboard/studies/ours-fc")
        assert page.status_code == 303
        assert page.headers["location"] == "/dashboard/login?next=%2Fdashboard%2Fstudies%2Fours-fc"
        form = web.get(page.headers["location"])
        assert form.status_code == 200
        assert '<form method="post" action="/dashboard/login"' in form.text
        assert 'type="password"' in form.text
        assert 'name="next" value="/dashboard/studies/ours-fc"' in form.text
        for url in (f"/dashboard/login?token={TOKEN}", f"/dashboard?token={TOKEN}"):
            answer = web.get(url)
            assert "set-cookie" not in answer.headers
            assert answer.status_code in (200, 303)
        assert web.get("/dashboard").status_code == 303
        fetched = web.get("/dashboard/panels?study=ours-fc")
        assert fetched.status_code == 401 and "sign in again" in fetched.text
        assert web.get("/dashboard/psychometric.png?study=ours-fc").status_code == 401


def test_a_wrong_token_is_401_with_a_message_and_audited_without_what_was_typed(run):
    typed = "not-the-token-0123"
    with httpx.Client(base_url=run.server_url) as web:
        answer = web.post("/dashboard/login", data={"token": typed})
    assert answer.status_code == 401
    assert "That is not the admin token (ADVCRITIC_ADMIN_TOKEN)." in answer.text
    assert "set-cookie" not in answer.headers
    refused = _events(run.database_url, "admin_login_refused")
    assert refused and refused[-1].detail == {"reason": "wrong admin token"}
    every = json.dumps([e.detail for e in _events(run.database_url, "admin_login_refused")])
    assert typed not in every and TOKEN not in every
    with _signed_in(run) as web:
        index = web.get("/dashboard").text
    assert f"Refused sign-ins to this dashboard in the last 24 hours: {len(refused)}." in index


def test_the_token_buys_an_httponly_samesite_strict_cookie_that_signing_out_voids(run):
    with httpx.Client(base_url=run.server_url) as web:
        answer = web.post(
            "/dashboard/login", data={"token": TOKEN, "next": "/dashboard/studies/mm-fc"}
        )
        assert answer.status_code == 303
        assert answer.headers["location"] == "/dashboard/studies/mm-fc"
        cookie = answer.headers["set-cookie"]
        name, value = cookie.split(";")[0].split("=", 1)
        assert name == "advcritic-dashboard" and TOKEN not in cookie
        attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/", "max-age=28800"} <= attributes
        assert "secure" not in attributes  # plain http on loopback; see the HTTPS test
        assert web.get("/dashboard/panels?study=mm-fc").status_code == 200

        out = web.post("/dashboard/logout")
        assert out.status_code == 303 and out.headers["location"] == "/dashboard/login"
        assert "max-age=0" in out.headers["set-cookie"].lower()
        assert web.get("/dashboard/panels?study=mm-fc").status_code == 401
    with httpx.Client(base_url=run.server_url, cookies={name: value}) as copied:
        assert copied.get("/dashboard/panels?study=mm-fc").status_code == 401  # voided


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example", "/elsewhere"])
def test_after_signing_in_you_go_back_only_to_a_dashboard_page(run, target):
    with httpx.Client(base_url=run.server_url) as web:
        answer = web.post("/dashboard/login", data={"token": TOKEN, "next": target})
    assert answer.status_code == 303 and answer.headers["location"] == "/dashboard"


def test_over_https_the_cookie_is_secure_and_host_prefixed(another_server):
    # As behind Caddy: the proxy (trusted) says the request came over HTTPS.
    url = another_server(trusted_proxies=["127.0.0.1"])
    proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.5"}
    with httpx.Client(base_url=url, headers=proxied) as web:
        answer = web.post("/dashboard/login", data={"token": TOKEN})
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith("__Host-advcritic-dashboard=")
        assert {"secure", "httponly", "samesite=strict", "path=/"} <= {
            part.strip().lower() for part in cookie.split(";")[1:]
        }
    value = cookie.split(";")[0].split("=", 1)[1]
    for name, status in (("__Host-advcritic-dashboard", 200), ("advcritic-dashboard", 303)):
        with httpx.Client(base_url=url, headers=proxied, cookies={name: value}) as web:
            assert web.get("/dashboard").status_code == status  # over HTTPS: __Host- only


def test_sign_in_attempts_are_rate_limited_per_address(run, another_server):
    url = another_server(limits=LimitSettings(exempt=[]))  # loopback limited like a client
    before = len(_events(run.database_url, "rate_limited"))
    with httpx.Client(base_url=url) as web:
        for _ in range(10):
            assert web.post("/dashboard/login", data={"token": "guess"}).status_code == 401
        limited = web.post("/dashboard/login", data={"token": TOKEN})  # even the right one
        again = web.post("/dashboard/login", data={"token": "guess"})
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert "Too many sign-in attempts from your network; try again in" in limited.text
    assert "set-cookie" not in limited.headers
    assert again.status_code == 429
    audited = _events(run.database_url, "rate_limited")[before:]
    assert [e.detail["bucket"] for e in audited] == ["dashboard_login"]  # once a minute


def test_without_an_admin_token_the_dashboard_is_off(another_server):
    with httpx.Client(base_url=another_server(admin_token=None)) as web:
        for answer in (
            web.get("/dashboard/login"),
            web.post("/dashboard/login", data={"token": ""}),
            web.get("/dashboard"),
            web.get("/dashboard/panels?study=ours-fc"),
        ):
            assert answer.status_code == 503
            assert "set ADVCRITIC_ADMIN_TOKEN" in answer.text


def test_bad_input_is_a_4xx_with_the_reason(run):
    with _signed_in(run) as web:
        page = web.get("/dashboard/studies/nope")
        assert page.status_code == 404 and "no study named &#39;nope&#39;" in page.text
        for url, status, reason in (
            ("/dashboard/panels?study=nope", 404, "no study named 'nope'"),
            ("/dashboard/psychometric.png?study=nope", 404, "no study named 'nope'"),
            ("/dashboard/panels?study=Not_A_Slug", 422, "not a study slug: 'Not_A_Slug'"),
            ("/dashboard/panels", 422, "choose at least one study"),
            (
                "/dashboard/panels?" + "&".join(f"study=s{n}" for n in range(21)),
                422,
                "at most 20 studies on one page, got 21",
            ),
        ):
            answer = web.get(url)
            assert answer.status_code == status, url
            assert reason in answer.json()["detail"]
        empty = web.get("/dashboard/studies")
        assert empty.status_code == 422 and "choose at least one study" in empty.text


def _table(run: DryRun, slugs: set[str]):
    studies = read_database(run.database_url, lambda infos: [i for i in infos if i.slug in slugs])
    return {r.defense: r for r in compute_table2(studies, source="auto").results}


def test_the_panels_show_progress_table_2_the_figure_and_catch_accuracy(run):
    with _signed_in(run) as web:
        page = web.get("/dashboard/studies?study=ours-fc&study=mm-fc")
        figure = web.get("/dashboard/psychometric.png?study=ours-fc&study=mm-fc")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    policies = page.headers.get_list("content-security-policy")
    assert "frame-ancestors 'none'" in policies and any("script-src 'self'" in p for p in policies)
    html = page.text
    assert '<script src="/dashboard/static/dashboard.js" defer></script>' in html
    assert "<script>" not in html and " style=" not in html  # the CSP allows neither

    # Progress: 12 assignments each, 10 submitted and confirmed by the fake's sync.
    ours = row(html, "progress-ours-fc")
    assert ours[1:] == ["12", "2", "0", "10", "10", "70", "10"]  # 10 x (5 + 2 catch) labels
    assert row(html, "progress--all")[1:] == ["24", "4", "0", "20", "20", "130", "20"]
    assert '<svg class="chart"' in html and "submitted: 20" in html

    # Table 2: the numbers `analyze-study` computes from the same database (seed 0).
    for defense, result in _table(run, {"ours-fc", "mm-fc"}).items():
        cells = row(html, f"table2-fc-{defense}")
        share = result.clustered["change"]
        low, high = share.interval_percent
        assert cells[4].startswith(f"{100 * share.fraction:.2f} [{low:.2f}, {high:.2f}]")
        # Counted labels and annotators after the attention policy left some out.
        assert cells[2] == str(result.outcomes.change.total)
        assert cells[3].startswith(str(result.annotators))
    assert "Ours against each baseline" in html

    assert figure.status_code == 200 and figure.content.startswith(b"\x89PNG")
    assert figure.headers["content-type"] == "image/png"

    # Catch accuracy: all 20 people (15 in the table, 5 folded away), the lowest first.
    people = rows_of_class(html, "catch")
    assert len(people) == 20
    percents = [float(cells[4]) for cells in people]
    assert percents == sorted(percents)
    assert "The other 5 annotators" in html


def test_refusals_are_traced_to_their_study_newest_first(run):
    with httpx.Client(base_url=run.server_url, timeout=60) as web:
        hit = run.market.hits["ours-fc"][10]  # type: ignore[attr-defined]
        forged = (
            f"{run.server_url}/hit/ours-fc?assignmentId=FORGED1&hitId={hit}"
            f"&workerId=AFORGER&turkSubmitTo={run.market.url}"
        )
        _, accepted = open_assignment(web, forged)
        short = web.post(
            accepted["submit_url"],
            json={"worker_id": "AFORGER", "mturk_assignment_id": "FORGED1",
                  "labels": [{"position": 0, "label": 1}]},
        )  # fmt: skip
        assert short.status_code == 422
        stored = web.post(
            accepted["submit_url"],
            json={
                "worker_id": "AFORGER",
                "mturk_assignment_id": "FORGED1",
                "labels": [{"position": p, "label": 0} for p in range(accepted["num_items"])],
            },
        )
        assert stored.status_code == 200
    assert "1 flagged" in run.market.review(run.sessions, "ours-fc")

    with _signed_in(run) as web:
        ours = web.get("/dashboard/panels?study=ours-fc").text
        mm = web.get("/dashboard/panels?study=mm-fc").text
    flagged, refused = rows_of_class(ours, "refusal")[:2]
    assert flagged[1:4] == ["ours-fc", "submission flagged", ""]
    assert "MTurk lists no submitted assignment 'FORGED1'" in flagged[4]
    assert refused[1:4] == ["ours-fc", "refused (submit)", "422"]
    assert refused[5] == "AFORGER"
    assert "Nothing refused." in mm
    cells = row(ours, "progress-ours-fc")
    assert cells[5:7] == ["10", "1"]  # confirmed 10, flagged 1


def test_refreshing_costs_queries_until_the_data_change(run):
    with _signed_in(run) as web:
        first = web.get("/dashboard/panels?study=mm-fc").text
        second = web.get("/dashboard/panels?study=mm-fc").text
        assert _computed(first) == _computed(second)  # the same results: not recomputed
        run.market.take_part(web, "mm-fc", 10, lambda png: 3)
        third = web.get("/dashboard/panels?study=mm-fc").text
    assert row(third, "progress-mm-fc")[4] == "11"  # progress is read on every refresh


def _computed(html: str) -> str:
    """The note saying when Table 2 was computed."""
    start = html.index('id="computed"')
    return html[start : html.index("</p>", start)]
