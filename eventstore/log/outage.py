"""How long a subscription has been without its database, and when to look again.

A subscription that meets StoreUnavailable keeps its position and reads again after a short
pause: 50 ms, then doubling to at most half a second, so it is back within half a second of
the server accepting connections. If the database stays away for longer than
``reconnect_timeout`` seconds it gives up and raises the last StoreUnavailable, so a caller
is never held forever without hearing about it.
"""

from __future__ import annotations

import time

import structlog

from core.errors import StoreUnavailable

__all__ = ["Outage"]

log = structlog.get_logger(__name__)

_FIRST_PAUSE = 0.05
_LONGEST_PAUSE = 0.5


class Outage:
    def __init__(self, limit: float) -> None:
        self._limit = limit
        self._since: float | None = None
        self._pause = 0.0

    def pause_after(self, error: StoreUnavailable) -> float:
        """Seconds to wait before trying again; raises ``error`` once the outage is too long."""
        now = time.monotonic()
        if self._since is None:
            self._since = now
            log.warning("subscription.database_away", error=str(error), gives_up_after_s=self._limit)
        elif now - self._since >= self._limit:
            raise error
        self._pause = min(max(self._pause * 2, _FIRST_PAUSE), _LONGEST_PAUSE)
        return self._pause

    def ended(self) -> None:
        """The database answered: forget the outage, if there was one."""
        if self._since is not None:
            log.info("subscription.database_back", away_s=round(time.monotonic() - self._since, 3))
            self._since = None
            self._pause = 0.0
