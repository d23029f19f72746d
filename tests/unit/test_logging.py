"""Logs are JSON lines carrying the context bound through contextvars."""

from __future__ import annotations

import orjson
import pytest
import structlog

from api.logging import bound, configure_logging
from core.settings import Settings


def test_json_lines_carry_bound_correlation_id(capsys: pytest.CaptureFixture[str]) -> None:
    """Inside bound(), every log line is one JSON object with the correlation id."""
    configure_logging(Settings(log_format="json"))
    with bound(correlation_id="c-1", tenant_id="acme"):
        structlog.get_logger("t").info("task.submitted", task="task-1")
    structlog.get_logger("t").info("after")
    lines = [orjson.loads(x) for x in capsys.readouterr().err.splitlines()]
    assert lines[0]["correlation_id"] == "c-1" and lines[0]["event"] == "task.submitted"
    assert lines[0]["level"] == "info" and "timestamp" in lines[0]
    assert "correlation_id" not in lines[1]
    structlog.reset_defaults()
