"""The web UI: the built single-page app (``ui/``, built into ``ui_dist`` by ``make ui``),
served by the API app beside ``/api``.

Files under ``/static/`` carry a content hash in their names, so they are cached for a year;
every other path that is not the API's is the app's ``index.html`` (never cached), which
routes in the browser, so each page's URL can be shared and reloaded. The pages are a client of
``/api/v1`` only. Headers keep the page to its own origin (a content security policy, no
framing) and send no ``Referer``, so a login link's code never leaves the page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, Response

DIST: Final = Path(__file__).with_name("ui_dist")
HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "connect-src 'self'; worker-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_IMMUTABLE: Final = {**HEADERS, "Cache-Control": "public, max-age=31536000, immutable"}
_FRESH: Final = {**HEADERS, "Cache-Control": "no-cache"}
_NOT_BUILT: Final = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Klaw</title></head><body style="font-family: sans-serif; margin: 3rem">
<h1>Klaw</h1><p>The web UI is not built into this installation. Build it with
<code>make ui</code> in a checkout of Klaw, or install a Klaw wheel (it ships the UI).</p>
<p>The HTTP API is at <a href="/docs">/docs</a>.</p></body></html>"""
# the first segments of the app's pages (any other path is a 404, not the app)
PAGES: Final = frozenset(
    {"", "login", "workflows", "runs", "assets", "schedules", "approvals", "audit", "builder"}
)


def ui_router(dist: Path = DIST) -> APIRouter:
    """The UI's routes over the build in ``dist`` (a page saying how to build it if absent)."""
    router = APIRouter(include_in_schema=False)
    static = dist / "static"

    @router.get("/static/{name:path}", name="ui_static")
    def asset(name: str) -> Response:
        path = (static / name).resolve()
        if not path.is_relative_to(static.resolve()) or not path.is_file():
            raise HTTPException(404, f"No UI file {name!r}.")
        return FileResponse(path, headers=_IMMUTABLE)

    @router.get("/{page:path}", name="ui_page")
    def page(page: str) -> Response:
        segments = page.split("/")
        top = dist / page
        if len(segments) == 1 and top.suffix and top.is_file():
            return FileResponse(top, headers=_FRESH)  # favicon.svg, robots.txt
        if segments[0] not in PAGES or ".." in segments:
            raise HTTPException(404, f"Nothing at /{page}.")
        index = dist / "index.html"
        if not index.is_file():
            return HTMLResponse(_NOT_BUILT, headers=_FRESH)
        return FileResponse(index, media_type="text/html", headers=_FRESH)

    return router
