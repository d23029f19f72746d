"""``/console``: a small web console (plain HTML, JavaScript and CSS in ``static/``, no build
step, nothing fetched from elsewhere). It talks to the API like any client, with the API key
the user pastes (kept in the browser's localStorage, sent as ``Authorization: Bearer``), so
every view shows the key's tenant only; it never touches the database."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["STATIC", "mount"]

STATIC = Path(__file__).resolve().parent / "static"


def mount(app: FastAPI) -> None:
    """``/console`` answers the page; ``/console/static/*`` its script and style."""
    router = APIRouter(include_in_schema=False)

    @router.get("/console")
    @router.get("/console/")
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")
