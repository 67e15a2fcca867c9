"""Browser tests: the distribution's Chromium, driven by Playwright, against a real ``klaw dev``
on loopback serving :mod:`tests.ui.project`. Screenshots of each page go to
``tests/ui/screenshots/`` for a reviewer to look at.

They skip, saying why, where Chromium (``apt-get install chromium``) or the built UI
(``make ui``) is missing; ``.ci/run`` and ``make test`` provide both."""

from __future__ import annotations

import os
import shutil
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from klaw.api.http.ui import DIST
from tests.cli.driver import WAIT, Dev
from tests.ui import project

SCREENSHOTS = Path(__file__).with_name("screenshots")
ADMIN = "ui-admin-token-0f1e2d3c"
VIEWER = "ui-viewer-token-4b5a6978"
OPERATOR = "ui-operator-token-8c7d6e5f"
APPROVER = "ui-approver-token-1a2b3c4d"
CHROMIUM = os.environ.get("KLAW_TEST_CHROMIUM") or shutil.which("chromium") or ""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    why = None
    if not CHROMIUM:
        why = "no Chromium here: install it with apt-get install chromium (.ci/run does)"
    elif not (DIST / "index.html").is_file():
        why = f"the web UI is not built in {DIST}: run make ui (make test does)"
    for item in items:
        if why and item.path.is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.skip(reason=why))


class Served:
    """A ``klaw dev`` and a way to ask its API (with the admin token) what the UI should show."""

    def __init__(self, dev: Dev, token: str | None) -> None:
        self.dev = dev
        self.url: str = dev.info["api"]
        self.ui: str = dev.info["ui"]
        self.token = token or dev.info["token"]

    def api(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=WAIT)

    def submit(self, workflow: str, **params: Any) -> str:
        with self.api() as client:
            got = client.post("/api/v1/runs", json={"workflow": workflow, "params": params})
        assert got.status_code == 201, got.text
        run_id: str = got.json()["run"]["run_id"]
        return run_id

    def run(self, run_id: str) -> dict[str, Any]:
        with self.api() as client:
            found: dict[str, Any] = client.get(f"/api/v1/runs/{run_id}").json()["run"]
        return found

    def wait(self, run_id: str) -> dict[str, Any]:
        with self.api() as client:
            got = client.get(f"/api/v1/runs/{run_id}/events", params={"after": 2**62, "wait": 30})
        assert got.status_code == 200, got.text
        return self.run(run_id)


@contextmanager
def dev_server(root: Path, extra_env: dict[str, str] | None, token: str | None) -> Iterator[Served]:
    """``klaw dev`` serving the test project in ``root`` until the block ends."""
    dev = Dev(project.write(root), extra_env=extra_env)
    try:
        yield Served(dev, token)
    finally:
        dev.terminate()
        dev.kill()


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``klaw dev`` with an admin, a viewer, an operator and an approver token configured."""
    http = f"admin:{ADMIN},viewer:{VIEWER},operator:{OPERATOR},approver:{APPROVER}"
    tokens = {"KLAW_FLIGHT__TOKENS": ADMIN, "KLAW_HTTP__TOKENS": http}
    with dev_server(tmp_path_factory.mktemp("ui"), tokens, ADMIN) as served:
        yield served


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


def signed_in(browser: Any, served: Served, token: str, *, dark: bool = False) -> Any:
    """A fresh page of a new context, signed in with ``token`` through the login page."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 800}, color_scheme="dark" if dark else "light"
    )
    context.set_default_timeout(WAIT * 1000)
    page = context.new_page()
    page.goto(urllib.parse.urljoin(served.url, "/login"))
    page.get_by_test_id("login-token").fill(token)
    page.get_by_test_id("login-submit").click()
    page.wait_for_url(lambda url: not urllib.parse.urlparse(url).path.startswith("/login"))
    return page


@pytest.fixture
def admin(browser: Any, served: Served) -> Iterator[Any]:
    page = signed_in(browser, served, ADMIN)
    yield page
    page.context.close()


@pytest.fixture
def viewer(browser: Any, served: Served) -> Iterator[Any]:
    page = signed_in(browser, served, VIEWER)
    yield page
    page.context.close()


def shot(page: Any, name: str) -> None:
    """Save a screenshot of the whole page as ``screenshots/<name>.png``."""
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
