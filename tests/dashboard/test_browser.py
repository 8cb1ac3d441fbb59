"""An admin's view: Debian's Chromium (headless, via Playwright) on a study filled by a dry run.

Signing in through the form, choosing two studies, every panel rendered, the panels
refreshing by themselves (and on the button) without a reload while simulated people keep
labeling and a forger is flagged, signing out; no console error, page error or failed
request on the way. The screenshot in docs/dashboard.png is taken here: run with
ADVCRITIC_UPDATE_DOCS=1 to write it there (otherwise it goes to the test's folder).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from analysis.dashboard import routes
from analysis.simulate import Annotators
from markets.mturk.fake.hit_flow import open_assignment
from pipeline.dry_run import DryRun, DryRunPlan, dry_run
from study_server.synthetic import write_synthetic_bundle
from tests.server.browser import browser, wait_for, watch

pytestmark = pytest.mark.browser
__all__ = ["browser"]  # the module-wide Chromium fixture

TOKEN = "browser-dashboard-token"
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"


@pytest.fixture
def run(tmp_path, monkeypatch) -> Iterator[DryRun]:
    """ours-fc and mm-fc: 16 assignments of 5 images and 2 catch trials each, 14 people done."""
    monkeypatch.setattr(routes, "REFRESH_S", 5)  # the page refreshes every 5 s, not 15
    bundles = tuple(
        write_synthetic_bundle(
            tmp_path / defense, n_adversarial=80, n_catch=32, defense=defense, seed=seed
        )
        for defense, seed in (("ours", 1), ("mm", 2))
    )
    plan = DryRunPlan(
        bundles=bundles,
        annotators=(
            Annotators(0.85, change_slope=8, catch_accuracy=0.8),
            Annotators(0.35, change_slope=8, catch_accuracy=0.9),
        ),
        items_per_assignment=5,
        assignments=14,
        workdir=tmp_path / "run",
        resamples=999,
        admin_token=TOKEN,
    )
    with dry_run(plan, say=lambda line: None) as done:
        yield done


def _forger_is_refused_then_flagged(run: DryRun) -> None:
    """Someone crafts a HIT page URL MTurk never gave out: one refused submission (too few
    labels), then a stored one that the market's sync flags."""
    hit = run.market.hits["ours-fc"][15]  # type: ignore[attr-defined]
    forged = (
        f"{run.server_url}/hit/ours-fc?assignmentId=FORGED1&hitId={hit}"
        f"&workerId=AFORGER&turkSubmitTo={run.market.url}"
    )
    with httpx.Client(base_url=run.server_url, timeout=60) as web:
        _, accepted = open_assignment(web, forged)
        body = {"worker_id": "AFORGER", "mturk_assignment_id": "FORGED1"}
        labels = [{"position": p, "label": 0} for p in range(accepted["num_items"])]
        assert (
            web.post(accepted["submit_url"], json={**body, "labels": labels[:1]}).status_code == 422
        )
        assert web.post(accepted["submit_url"], json={**body, "labels": labels}).status_code == 200
    assert "1 flagged" in run.market.review(run.sessions, "ours-fc")


def _small_png(png: bytes) -> bytes:
    """The screenshot with a 256-colour palette: a third of the bytes, the same look."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    out = io.BytesIO()
    image.quantize(256, method=Image.Quantize.FASTOCTREE).save(out, "PNG", optimize=True)
    return out.getvalue()


def test_a_wrong_token_is_refused_in_the_form(browser, run):
    page = browser.new_page()
    problems = watch(
        page,  # the refusal itself, and only it
        r"^HTTP 401: POST http://127\.0\.0\.1:\d+/dashboard/login$",
        r"^console error: Failed to load resource: the server responded with a status of 401",
    )
    page.goto(f"{run.server_url}/dashboard/login")
    page.fill("#token", "a wrong token")
    page.click("form.login button[type=submit]")
    assert page.locator("form.login .error").inner_text() == (
        "That is not the admin token (ADVCRITIC_ADMIN_TOKEN)."
    )
    assert page.url == f"{run.server_url}/dashboard/login"  # posted: nothing typed in a URL
    assert not page.context.cookies()
    problems.assert_clean()
    page.close()


def test_an_admin_signs_in_chooses_two_studies_and_watches_them_refresh(browser, run, tmp_path):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    problems = watch(page)

    page.goto(f"{run.server_url}/dashboard")
    page.wait_for_url("**/dashboard/login?next=%2Fdashboard")
    page.fill("#token", TOKEN)
    page.click("form.login button[type=submit]")
    page.wait_for_url(f"{run.server_url}/dashboard")

    page.check("#pick-ours-fc")
    page.check("#pick-mm-fc")
    page.click("text=Show the chosen studies together")
    page.wait_for_url("**/dashboard/studies?study=ours-fc&study=mm-fc")
    figure = page.locator("#psychometric img.figure")
    figure.evaluate("img => img.decode()")
    assert figure.evaluate("img => img.naturalWidth") == 1500
    assert page.locator("#table2 tr[id^=table2-]").count() == 2
    assert page.locator("#catch tr.catch").count() == 28  # 14 people in each study
    assert page.locator("#refusals").inner_text().endswith("Nothing refused.")

    # The page is not reloaded: it fetches the panels and swaps them in.
    page.evaluate("window.stillTheSamePage = true")
    with httpx.Client(base_url=run.server_url, timeout=60) as web:
        run.market.take_part(web, "mm-fc", 14, lambda png: 1)
    submitted = page.locator("#progress-mm-fc td").nth(3)
    wait_for(lambda: submitted.inner_text() == "15", page, timeout_ms=20_000)  # by its timer
    assert page.locator("#refresh-status").inner_text().startswith("Refreshed at")

    _forger_is_refused_then_flagged(run)
    page.click("#refresh-now")
    refusals = page.locator("#refusals tr.refusal")
    wait_for(lambda: refusals.count() == 2, page)
    assert "submission flagged" in refusals.nth(0).inner_text()
    assert "refused (submit)" in refusals.nth(1).inner_text()
    assert page.evaluate("window.stillTheSamePage") is True

    screenshot = _small_png(page.screenshot(full_page=True))
    target = (
        DOCS_SCREENSHOT if os.environ.get("ADVCRITIC_UPDATE_DOCS") else tmp_path / "dashboard.png"
    )
    target.write_bytes(screenshot)
    assert len(screenshot) < 400_000

    page.click("text=Sign out")
    page.wait_for_url("**/dashboard/login")
    page.goto(f"{run.server_url}/dashboard/studies/ours-fc")
    page.wait_for_url("**/dashboard/login?next=%2Fdashboard%2Fstudies%2Fours-fc")
    problems.assert_clean()
