"""The lifecycle pages and the pipeline builder in a real browser against a real ``klaw dev``:
the builder sends a hand-written folder back byte for byte (no new version) and saves an added
SQL stage as a new version; the versions page promotes it to qa and shows the diff; an
operator's promotion to uat waits in the approval queue until an approver approves it (the
requester may not approve their own); the audit log lists it; a viewer sees versions but no
control to change them.

The tests run in order: each builds on the versions the one before made."""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from klaw.api.http.ui import PAGES
from tests.cli.driver import WAIT
from tests.ui import project
from tests.ui.conftest import APPROVER, OPERATOR, Served, shot, signed_in

pytestmark = pytest.mark.slow
MS = WAIT * 1000
WF = "sales"


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def goto(page: Any, served: Served, path: str) -> None:
    page.goto(urllib.parse.urljoin(served.url, path))


def nav(page: Any, served: Served, label: str) -> None:
    """Open a page from the header's navigation."""
    goto(page, served, "/workflows")
    page.get_by_role("navigation", name="Main").get_by_role("link", name=label, exact=True).click()


def open_builder(page: Any, served: Served) -> None:
    goto(page, served, f"/workflows/{WF}")
    page.get_by_test_id("builder-link").click()
    page.wait_for_url(re.compile(rf"/builder/{WF}$"), timeout=MS)


def versions(served: Served) -> list[dict[str, Any]]:
    with served.api() as client:
        got = client.get(f"/api/v1/workflows/{WF}/versions")
    assert got.status_code == 200, got.text
    found: list[dict[str, Any]] = got.json()["versions"]
    return found


@pytest.fixture
def operator(browser: Any, served: Served) -> Iterator[Any]:
    page = signed_in(browser, served, OPERATOR)
    yield page
    page.context.close()


@pytest.fixture
def approver(browser: Any, served: Served) -> Iterator[Any]:
    page = signed_in(browser, served, APPROVER)
    yield page
    page.context.close()


def test_the_builder_saves_an_unchanged_folder_as_no_new_version(
    operator: Any, served: Served
) -> None:
    with served.api(OPERATOR) as client:  # the working copy as version 1
        made = client.post(f"/api/v1/workflows/{WF}/versions", json={"message": "first"})
    assert made.status_code in (200, 201), made.text
    before = versions(served)
    open_builder(operator, served)
    expect(operator.get_by_test_id("builder-stage-totals")).to_be_visible(timeout=MS)
    expect(operator.get_by_test_id("builder-stage-orders")).to_have_attribute("data-lang", "sql")
    expect(operator.get_by_test_id("graph")).to_have_attribute("data-ready", "true", timeout=MS)
    expect(operator.get_by_test_id("check-ok")).to_be_visible(timeout=MS)  # checked as opened
    expect(operator.get_by_test_id("builder-dirty")).to_contain_text("No changes")
    shot(operator, "builder")
    operator.get_by_test_id("save-message").fill("nothing changed")
    operator.get_by_test_id("save").click()
    expect(operator.get_by_test_id("save-notice")).to_contain_text("no new version", timeout=MS)
    after = versions(served)
    assert [v["version"] for v in after] == [v["version"] for v in before]


def test_the_builder_adds_an_sql_stage_and_saves_a_new_version(
    operator: Any, served: Served
) -> None:
    newest = versions(served)[0]["version"]
    open_builder(operator, served)
    operator.get_by_role("button", name="orders", exact=True).click()
    operator.get_by_test_id("new-stage-name").fill("big_orders")
    operator.get_by_test_id("add-sql").click()
    expect(operator.get_by_test_id("builder-stage-big_orders")).to_be_visible(timeout=MS)
    code = operator.get_by_test_id("stage-code")
    expect(code).to_have_value("SELECT *\nFROM orders;")
    code.fill("SELECT * FROM orders WHERE amount > 10;")
    expect(operator.get_by_test_id("builder-stage-big_orders")).to_contain_text("reads orders")
    expect(operator.get_by_test_id("check-ok")).to_be_visible(timeout=MS)
    expect(operator.get_by_test_id("graph")).to_have_attribute("data-nodes", "3", timeout=MS)
    shot(operator, "builder-added-stage")
    operator.get_by_test_id("save-message").fill("big orders")
    operator.get_by_test_id("save").click()
    expect(operator.get_by_test_id("save-notice")).to_contain_text("Saved as version", timeout=MS)
    latest = versions(served)[0]
    assert latest["version"] == newest + 1 and latest["message"] == "big orders"
    with served.api() as client:
        detail = client.get(f"/api/v1/workflows/{WF}/versions/{latest['version']}").json()
    files = detail["detail"]["files"]
    assert files["config.yaml"] == project.SALES_CONFIG  # untouched: the same bytes
    assert files["workflow.sql"] == (
        project.SALES_SQL + "\n-- name: big_orders\nSELECT * FROM orders WHERE amount > 10;\n"
    )


def test_the_builder_makes_a_new_workflow(operator: Any, served: Served) -> None:
    nav(operator, served, "Builder")
    operator.get_by_test_id("builder-name").fill("daily")
    operator.get_by_test_id("builder-kind").select_option("sql")
    operator.get_by_test_id("builder-start").click()
    expect(operator.get_by_test_id("builder-stage-first")).to_be_visible(timeout=MS)
    expect(operator.get_by_test_id("check-ok")).to_be_visible(timeout=MS)
    operator.get_by_test_id("save-message").fill("a new workflow")
    operator.get_by_test_id("save").click()
    operator.wait_for_url(re.compile(r"/builder/daily$"), timeout=MS)
    expect(operator.get_by_test_id("builder-version")).to_contain_text("version 1", timeout=MS)
    with served.api() as client:
        got = client.get("/api/v1/workflows/daily/versions").json()["versions"]
    assert [(v["version"], v["message"], v["stage"]) for v in got] == [(1, "a new workflow", "dev")]


def test_the_versions_page_promotes_to_qa_and_shows_the_diff(operator: Any, served: Served) -> None:
    newest = versions(served)[0]["version"]
    goto(operator, served, f"/workflows/{WF}")
    operator.get_by_test_id("versions-link").click()
    operator.wait_for_url(re.compile(r"/versions$"), timeout=MS)
    row = operator.get_by_test_id(f"version-row-{newest}")
    expect(row).to_contain_text("big orders", timeout=MS)
    operator.get_by_test_id(f"promote-{newest}").click()
    expect(operator.get_by_test_id("notice")).to_contain_text("deployed to qa", timeout=MS)
    expect(operator.get_by_test_id("env-qa")).to_have_attribute("data-version", str(newest))
    expect(operator.get_by_test_id(f"version-stage-{newest}")).to_have_text("qa")
    shot(operator, "versions")
    with operator.expect_download() as download:
        operator.get_by_test_id(f"export-{newest}").click()
    assert download.value.suggested_filename == f"{WF}-v{newest}.klaw.json"
    bundle = json.loads(Path(download.value.path()).read_text())
    assert (bundle["workflow"], bundle["version"]) == (WF, newest)
    assert "-- name: big_orders" in bundle["files"]["workflow.sql"]
    operator.get_by_test_id(f"diff-prev-{newest}").click()
    operator.wait_for_url(re.compile(rf"/diff/{newest - 1}/{newest}$"), timeout=MS)
    sql = operator.get_by_test_id("diff-file-workflow.sql")
    expect(sql).to_be_visible(timeout=MS)
    expect(sql.locator(".diff-add").first).to_be_visible()
    expect(sql).to_contain_text("+-- name: big_orders")
    expect(operator.get_by_test_id("stages-added")).to_contain_text("big_orders")
    shot(operator, "diff")


def test_an_operators_promotion_waits_for_an_approver(
    operator: Any, approver: Any, served: Served
) -> None:
    newest = versions(served)[0]["version"]
    goto(operator, served, f"/workflows/{WF}/versions")
    operator.get_by_test_id(f"promote-{newest}").click()
    expect(operator.get_by_test_id("notice")).to_contain_text("waits for approval", timeout=MS)
    nav(operator, served, "Approvals")
    pending = operator.locator(f"[data-testid^=request-][data-workflow={WF}]")
    expect(pending).to_have_count(1, timeout=MS)
    expect(pending).to_contain_text("uat")
    expect(operator.locator("[data-testid^=approve-]")).to_have_count(0)  # an operator cannot
    nav(approver, served, "Approvals")
    pending = approver.locator(f"[data-testid^=request-][data-workflow={WF}]")
    expect(pending).to_contain_text("0 / 1", timeout=MS)
    request_id = (pending.get_attribute("data-testid") or "").removeprefix("request-")
    approver.get_by_test_id(f"comment-{request_id}").fill("looks right")
    approver.get_by_test_id(f"approve-{request_id}").click()
    expect(approver.get_by_test_id("notice")).to_contain_text("deployed to uat", timeout=MS)
    decided = approver.get_by_test_id(f"decided-{request_id}")
    expect(decided).to_have_attribute("data-state", "approved")
    expect(decided).to_contain_text("looks right")
    shot(approver, "approvals")
    # the approver asks for prod, and may not approve their own request
    goto(approver, served, f"/workflows/{WF}/versions")
    expect(approver.get_by_test_id(f"version-stage-{newest}")).to_have_text("uat", timeout=MS)
    expect(approver.get_by_test_id(f"read-only-{newest}")).to_be_visible()
    approver.get_by_test_id(f"promote-{newest}").click()
    expect(approver.get_by_test_id("notice")).to_contain_text("waits for approval", timeout=MS)
    nav(approver, served, "Approvals")
    mine = approver.locator(f"[data-testid^=request-][data-workflow={WF}]")
    expect(mine).to_contain_text("prod", timeout=MS)
    mine.locator("[data-testid^=approve-]").click()
    expect(approver.get_by_test_id("problem-detail")).to_contain_text("requester", timeout=MS)
    shot(approver, "approvals-refused")


def test_the_audit_log_lists_the_approval(admin: Any, served: Served) -> None:
    nav(admin, served, "Audit")
    admin.get_by_test_id("audit-workflow").fill(WF)
    admin.get_by_test_id("audit-workflow").press("Enter")
    admin.wait_for_url(re.compile(rf"/audit\?workflow={WF}$"), timeout=MS)
    approved = admin.locator("[data-action='promotion.approved']")
    expect(approved).to_have_count(1, timeout=MS)
    expect(approved).to_contain_text("uat")
    expect(admin.locator("[data-action='promotion.requested']")).to_have_count(2)
    expect(admin.locator("[data-action=promoted]").first).to_be_visible()
    newest = admin.get_by_test_id("audit-table").locator("tbody tr").first
    expect(newest).to_have_attribute("data-action", "promotion.requested")  # newest first
    shot(admin, "audit")


@pytest.mark.skipif(
    not {"approvals", "audit", "builder"} <= PAGES,
    reason="the server does not serve /approvals, /audit and /builder as pages yet "
    "(klaw.api.http.ui.PAGES)",
)
def test_the_new_pages_reload(admin: Any, served: Served) -> None:
    for path, ready in {
        "/approvals": "approvals-pending",
        f"/audit?workflow={WF}": "audit-table",
        f"/builder/{WF}": "builder-stage-totals",
        "/builder": "builder-new",
        f"/workflows/{WF}/versions": "versions-table",
        f"/workflows/{WF}/diff/1/2": "diff-stages",
    }.items():
        goto(admin, served, path)
        expect(admin.get_by_test_id(ready)).to_be_visible(timeout=MS)
        expect(admin.get_by_test_id("problem")).to_have_count(0)


def test_a_viewer_sees_versions_but_no_lifecycle_controls(viewer: Any, served: Served) -> None:
    newest = versions(served)[0]["version"]
    goto(viewer, served, f"/workflows/{WF}/versions")
    expect(viewer.get_by_test_id(f"version-row-{newest}")).to_be_visible(timeout=MS)
    expect(viewer.get_by_test_id(f"export-{newest}")).to_be_visible()
    for control in ("promote-", "retire-", "demote"):
        expect(viewer.locator(f"[data-testid^={control}]")).to_have_count(0)
    nav(viewer, served, "Approvals")
    expect(viewer.get_by_test_id("approvals-pending")).to_be_visible(timeout=MS)
    expect(viewer.locator("[data-testid^=approve-]")).to_have_count(0)
