"""The web UI in a real browser against a real ``klaw dev``: sign in with the one-time link,
launch from the form (a bad field shows its error), watch stages change live, read a failed
stage's traceback, time-travel an asset's preview, cancel a run, and a viewer's pages offer
nothing the viewer may not do."""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from tests.cli.driver import WAIT
from tests.ui.conftest import VIEWER, Served, dev_server, shot

pytestmark = pytest.mark.slow
MS = WAIT * 1000


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def goto(page: Any, served: Served, path: str) -> None:
    page.goto(urllib.parse.urljoin(served.url, path))


def test_the_login_link_signs_in_once(browser: Any, tmp_path: Path) -> None:
    with dev_server(tmp_path / "fresh", None, None) as dev:
        link = dev.ui
        assert "/login?code=" in link and dev.token not in link
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.goto(link)
        expect(page.get_by_test_id("whoami")).to_contain_text("admin", timeout=MS)
        assert "code=" not in page.url  # the spent code is gone from the address bar
        expect(page.get_by_role("link", name="launch", exact=True)).to_be_visible(timeout=MS)
        shot(page, "overview")
        again = browser.new_context().new_page()
        again.goto(link)
        expect(again.get_by_test_id("problem-detail")).to_contain_text("used already", timeout=MS)
        again.context.close()
        context.close()


def test_launch_from_the_form_and_watch_it_live(admin: Any, served: Served) -> None:
    goto(admin, served, "/workflows/launch")
    rows = admin.get_by_test_id("param-rows")
    rows.fill("0")
    admin.get_by_test_id("launch-button").click()
    expect(admin.get_by_test_id("param-error-rows")).to_be_visible(timeout=MS)
    expect(rows).to_have_attribute("aria-invalid", "true")
    assert "/runs/" not in admin.url  # nothing was submitted
    shot(admin, "launch-form-error")
    rows.fill("5")
    admin.get_by_test_id("param-pace").select_option("steady")
    expect(admin.get_by_test_id("param-error-rows")).to_be_hidden()
    admin.get_by_test_id("launch-button").click()
    admin.wait_for_url(re.compile(r"/runs/[^/]+$"), timeout=MS)
    settle = admin.get_by_test_id("stage-state-settle")
    expect(settle).to_have_attribute("data-state", "running", timeout=MS)  # live, no reload
    shot(admin, "run-live")
    expect(admin.get_by_test_id("stage-state-summed")).to_have_attribute(
        "data-state", "succeeded", timeout=MS
    )
    expect(admin.get_by_test_id("run-state")).to_have_attribute(
        "data-state", "succeeded", timeout=MS
    )
    expect(admin.get_by_test_id("run-params")).to_contain_text('"rows": 5')
    expect(admin.get_by_test_id("run-version")).to_contain_text("unversioned files")
    expect(admin.get_by_test_id("gantt-bar-settle-1")).to_be_visible()
    expect(admin.get_by_test_id("gantt-bar-summed-1")).to_be_visible(timeout=MS)
    shot(admin, "run")


def test_a_failed_stage_shows_its_traceback(admin: Any, served: Served) -> None:
    run_id = served.submit("broken")
    assert served.wait(run_id)["state"] == "failed"
    goto(admin, served, f"/runs/{run_id}")
    expect(admin.get_by_test_id("stage-state-explode")).to_have_attribute(
        "data-state", "failed", timeout=MS
    )
    admin.get_by_test_id("attempt-logs-explode-1").click()
    admin.wait_for_url(re.compile(r"/logs"), timeout=MS)
    expect(admin.get_by_test_id("log-line").first).to_be_visible(timeout=MS)
    expect(admin.get_by_test_id("log-view")).to_contain_text("about to parse the amount")
    block = admin.get_by_test_id("traceback-block").first
    expect(block).to_contain_text("ValueError", timeout=MS)
    expect(block).to_contain_text("parse_amount")
    shot(admin, "logs")


def test_an_asset_preview_travels_in_time(admin: Any, served: Served) -> None:
    for n in (2, 4):
        assert served.wait(served.submit("launch", rows=n))["state"] == "succeeded"
    with served.api() as client:
        snapshots = client.get("/api/v1/assets/made/snapshots").json()["snapshots"]
    older, newest = snapshots[-2], snapshots[-1]
    assert (older["rows"], newest["rows"]) == (2, 4)
    goto(admin, served, "/assets/made")
    preview = admin.get_by_test_id("preview-table")
    expect(preview).to_have_attribute("data-snapshot", str(newest["snapshot"]), timeout=MS)
    expect(preview.locator("tbody tr")).to_have_count(4)
    admin.get_by_test_id("snapshot-select").select_option(str(older["snapshot"]))
    expect(preview).to_have_attribute("data-snapshot", str(older["snapshot"]), timeout=MS)
    expect(preview.locator("tbody tr")).to_have_count(2)
    expect(admin.get_by_test_id("snapshot-history")).to_be_visible()
    shot(admin, "asset")


def test_cancel_stops_a_running_run(admin: Any, served: Served) -> None:
    run_id = served.submit("forever")
    goto(admin, served, f"/runs/{run_id}")
    expect(admin.get_by_test_id("stage-state-wait_long")).to_have_attribute(
        "data-state", "running", timeout=MS
    )
    admin.once("dialog", lambda dialog: dialog.accept())
    admin.get_by_test_id("cancel-button").click()
    expect(admin.get_by_test_id("run-state")).to_have_attribute(
        "data-state", "cancelled", timeout=MS
    )
    assert served.run(run_id)["state"] == "cancelled"


def test_a_viewer_sees_no_mutating_controls(viewer: Any, served: Served) -> None:
    run_id = served.submit("broken")
    served.wait(run_id)
    goto(viewer, served, "/workflows/launch")
    expect(viewer.get_by_test_id("whoami")).to_contain_text("viewer", timeout=MS)
    expect(viewer.get_by_test_id("graph")).to_be_visible(timeout=MS)
    expect(viewer.get_by_test_id("launch-button")).to_have_count(0)
    goto(viewer, served, f"/runs/{run_id}")
    expect(viewer.get_by_test_id("run-state")).to_have_attribute("data-state", "failed", timeout=MS)
    expect(viewer.get_by_test_id("cancel-button")).to_have_count(0)
    expect(viewer.get_by_test_id("resume-button")).to_have_count(0)
    goto(viewer, served, "/schedules")
    expect(viewer.get_by_test_id("schedules-table")).to_be_visible(timeout=MS)
    expect(viewer.locator("[data-testid^=schedule-toggle-]")).to_have_count(0)
    with served.api(VIEWER) as client:  # and the API refuses what the page does not offer
        refused = client.post("/api/v1/runs", json={"workflow": "launch"})
        assert refused.status_code == 403, refused.text
        assert client.post(f"/api/v1/runs/{run_id}/resume").status_code == 403


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_every_page_renders(browser: Any, served: Served, dark: bool) -> None:
    from tests.ui.conftest import ADMIN, signed_in

    run_id = served.submit("launch")
    served.wait(run_id)
    page = signed_in(browser, served, ADMIN, dark=dark)
    theme = "dark" if dark else "light"
    pages = {
        "overview": ("/", "running-runs"),
        "workflows": ("/workflows", "workflow-row-launch"),
        "workflow": ("/workflows/launch", "graph"),
        "runs": ("/runs", "run-row"),
        "run-page": (f"/runs/{run_id}", "stage-table"),
        "assets": ("/assets", "asset-row"),
        "schedules": ("/schedules", "schedules-table"),
    }
    for name, (path, ready) in pages.items():
        goto(page, served, path)
        expect(page.get_by_test_id(ready).first).to_be_visible(timeout=MS)
        expect(page.get_by_test_id("problem")).to_have_count(0)
        shot(page, f"{name}-{theme}")
    page.context.close()


def test_a_traced_run_links_each_attempt_to_its_trace(browser: Any, tmp_path: Path) -> None:
    from tests.telemetry.receiver import otlp_receiver

    template = "http://tempo.example/explore?trace={trace_id}&stage={stage}&attempt={attempt}"
    with otlp_receiver() as receiver:
        extra = {
            "KLAW_TELEMETRY__TRACES": "otlp-http",
            "KLAW_TELEMETRY__ENDPOINT": receiver.url,
            "KLAW_TELEMETRY__TRACE_URL": template,
        }
        with dev_server(tmp_path / "traced", extra, None) as served:
            run_id = served.submit("launch", rows=2)
            run = served.wait(run_id)
            assert run["state"] == "succeeded" and run["trace_id"], run
            with served.api() as client:
                attempts = client.get(f"/api/v1/runs/{run_id}/attempts").json()["attempts"]
            ran = [a for a in attempts if a["attempt"] > 0]
            assert ran and all(a["trace_url"] for a in ran), attempts
            stage = ran[0]["stage"]
            page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
            page.goto(served.ui)
            expect(page.get_by_test_id("whoami")).to_contain_text("admin", timeout=MS)
            goto(page, served, f"/runs/{run_id}")
            link = page.get_by_test_id(f"attempt-trace-{stage}-1")
            expected = f"trace={run['trace_id']}&stage={stage}&attempt=1"
            expect(link).to_have_attribute("href", re.compile(re.escape(expected)), timeout=MS)
            expect(page.get_by_test_id(f"stage-queued-{stage}")).not_to_have_text("—")
            shot(page, "run-traced")
            page.context.close()
