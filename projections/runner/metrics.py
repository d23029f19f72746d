"""What the runner reports after each batch: Prometheus gauges and a histogram, or any observer.

``chronicle_projection_position`` and ``chronicle_projection_lag_events`` (head minus checkpoint)
per projection; ``chronicle_projection_lag_seconds``, the age of the newest event a batch applied
while the projection was behind (0 once caught up); and ``chronicle_projection_apply_delay_seconds``,
for every event, the time from its commit (``recorded_at``) to the commit of the batch that
applied it, both read from the database's clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from prometheus_client import REGISTRY, CollectorRegistry, Gauge, Histogram

from core.events import RecordedEvent

__all__ = ["BatchObserver", "PrometheusObserver", "default_observer"]


class BatchObserver(Protocol):
    def applied(
        self,
        name: str,
        events: Sequence[RecordedEvent],
        position: int,
        head: int,
        applied_at: datetime | None,
    ) -> None: ...


class PrometheusObserver:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        labels = ("projection",)
        self.position = Gauge(
            "chronicle_projection_position", "last log position applied", labels, registry=registry
        )
        self.lag_events = Gauge(
            "chronicle_projection_lag_events",
            "events between the head and the checkpoint",
            labels,
            registry=registry,
        )
        self.lag_seconds = Gauge(
            "chronicle_projection_lag_seconds",
            "age of the newest event applied while behind; 0 when caught up",
            labels,
            registry=registry,
        )
        self.delay = Histogram(
            "chronicle_projection_apply_delay_seconds",
            "from an event's commit to the commit of the batch that applied it",
            labels,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )

    def applied(
        self,
        name: str,
        events: Sequence[RecordedEvent],
        position: int,
        head: int,
        applied_at: datetime | None,
    ) -> None:
        self.position.labels(name).set(position)
        behind = max(head - position, 0)
        self.lag_events.labels(name).set(behind)
        if applied_at is None or not events:
            if not behind:
                self.lag_seconds.labels(name).set(0)
            return
        delay = self.delay.labels(name)
        for event in events:
            delay.observe((applied_at - event.recorded_at).total_seconds())
        newest = (applied_at - events[-1].recorded_at).total_seconds()
        self.lag_seconds.labels(name).set(newest if behind else 0)


_default: PrometheusObserver | None = None


def default_observer() -> PrometheusObserver:
    # One set per process on the default registry: registering the same names twice raises.
    global _default
    if _default is None:
        _default = PrometheusObserver()
    return _default
