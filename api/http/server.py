"""uvicorn, with a drain: on the first SIGTERM or SIGINT ``/ready`` turns false while requests
go on being served for ``drain_s`` seconds, so a load balancer stops sending new ones before
the process stops listening; a second signal stops at once."""

from __future__ import annotations

import time
from types import FrameType

import uvicorn
from fastapi import FastAPI

__all__ = ["DrainingServer"]


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI, drain_s: float) -> None:
        super().__init__(config)
        self._app = app
        self._drain_s = drain_s
        self._stop_at: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        services = getattr(self._app.state, "services", None)
        if self._stop_at is not None or self._drain_s <= 0 or services is None:
            super().handle_exit(sig, frame)
            return
        services.draining = True
        self._stop_at = time.monotonic() + self._drain_s

    async def on_tick(self, counter: int) -> bool:
        if self._stop_at is not None and time.monotonic() >= self._stop_at:
            return True
        return await super().on_tick(counter)
