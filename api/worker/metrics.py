"""A worker's Prometheus metrics (``chronicle worker --metrics-port``), named by Prometheus's
conventions: what autoscaling and alerting read."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = ["HEARTBEAT", "OUTCOMES", "QUEUE_WAIT", "RUN_TIME"]

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

OUTCOMES = Counter("chronicle_worker_tasks_total", "task attempts this worker ended, by outcome", ["outcome"])
RUN_TIME = Histogram(
    "chronicle_task_duration_seconds", "a handler's run time, start to outcome", ["type"], buckets=_BUCKETS
)
QUEUE_WAIT = Histogram(
    "chronicle_task_queue_wait_seconds", "from submission (or retry due time) to start", buckets=_BUCKETS
)
HEARTBEAT = Gauge(
    "chronicle_worker_last_heartbeat_timestamp_seconds",
    "when this worker last renewed a lease or looked for work",
)
