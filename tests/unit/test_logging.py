"""Logs are JSON lines carrying the context bound through contextvars, and readable on a terminal."""

from __future__ import annotations

import io
import sys

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


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("log_format", "tty", "json_lines"),
    [("auto", True, False), ("auto", False, True), ("console", False, False), ("json", True, True)],
)
def test_auto_format_is_readable_on_a_terminal_and_json_otherwise(
    monkeypatch: pytest.MonkeyPatch, log_format: str, tty: bool, json_lines: bool
) -> None:
    """`auto` (the default) renders for people when stderr is a terminal and JSON when it is a
    pipe or a file; `console` and `json` force one or the other."""
    stderr = _Terminal() if tty else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    try:
        configure_logging(Settings(log_format=log_format))
        structlog.get_logger("t").info("task.submitted", task="task-1")
    finally:
        structlog.reset_defaults()
    line = stderr.getvalue().strip()
    assert "task.submitted" in line and "task-1" in line
    if json_lines:
        assert orjson.loads(line)["event"] == "task.submitted"
    else:
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(line)
