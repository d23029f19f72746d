"""`chronicle audit query` from the command line, on the demo's events: pages and cursors,
exports to a file, and bad input that is one line, exit status 2 and no file."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.e2e.test_cli import chronicle, sample

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def env(
    new_database: Callable[[], str], redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """A database holding the demo's events twice (18), with the audit index built."""
    found = {
        "CHRONICLE_DATABASE_URL": new_database(),
        "CHRONICLE_REDIS_URL": redis_url,
        "CHRONICLE_DATA_DIR": str(tmp_path_factory.mktemp("data")),
        "CHRONICLE_LOG_FORMAT": "json",
    }
    sample(found)
    sample(found)
    chronicle("projections", "rebuild", "audit_index", env=found)
    return found


def lines(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in text.splitlines()]


def next_cursor(stderr: str) -> str:
    (line,) = [x for x in stderr.splitlines() if x.startswith("next cursor: ")]
    return line.split()[2]


def test_pages_follow_each_other_through_the_cursor(env: dict[str, str], tmp_path: Path) -> None:
    """Piped, a page is JSON Lines; the cursor on stderr continues it, and the pages joined are
    the log's events of that actor, in order, as `chronicle export` writes them."""
    first = chronicle("audit", "query", "--actor", "demo", "--limit", "7", env=env)
    assert "(7 events; more match)" in first.stderr
    rest = chronicle("audit", "query", "--cursor", next_cursor(first.stderr), env=env)
    assert "(11 events; no more now)" in rest.stderr
    chronicle("export", "--out", str(tmp_path / "log.jsonl"), env=env)
    everything = lines((tmp_path / "log.jsonl").read_text())
    assert lines(first.stdout) + lines(rest.stdout) == [
        e for e in everything if e["metadata"]["actor"] == "demo"
    ]


def test_filters_and_the_table(env: dict[str, str]) -> None:
    """Type and category filters combine; --format table prints the events as a table."""
    out = chronicle(
        "audit", "query", "--type", "TaskAssigned", "--type", "MessageSent", "--category", "task", env=env
    ).stdout
    assert [e["type"] for e in lines(out)] == ["TaskAssigned", "TaskAssigned"]
    table = chronicle("audit", "query", "--category", "conversation", "--format", "table", env=env).stdout
    assert "MessageAcknowledged" in table and "position" in table and "conversation-" in table


def test_an_export_writes_every_match_to_the_file(env: dict[str, str], tmp_path: Path) -> None:
    """--out writes the file only when complete (CSV for a .csv name) and reports the count."""
    target = tmp_path / "audit.csv"
    result = chronicle(
        "audit", "query", "--tenant", "acme", "--since", "2000-01-01", "--out", str(target), env=env
    )
    assert f"exported 18 events to {target}" in result.stderr and next_cursor(result.stderr)
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert len(rows) == 18 and {r["tenant_id"] for r in rows} == {"acme"}
    assert [int(r["global_position"]) for r in rows] == sorted(int(r["global_position"]) for r in rows)
    assert not list(tmp_path.glob(".*partial"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "--since 'yesterday' is not an ISO 8601 time"),
        (["--format", "xml"], "--format 'xml' is not one of table, jsonl, csv"),
        (["--cursor", "bogus"], "cursor 'bogus' is not a cursor of an audit query"),
        (["--limit", "0"], "limit must be at least 1"),
        (["--actor", "x", "--cursor", "eyJ2IjoxLCJhZnRlciI6MSwiZmlsdGVyIjp7fX0"], "belongs to another query"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_file(
    env: dict[str, str], tmp_path: Path, args: list[str], message: str
) -> None:
    target = tmp_path / "out.jsonl"
    result = chronicle("audit", "query", *args, "--out", str(target), env=env, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("chronicle: error: ") and message in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_index_not_built_yet_says_which_command_builds_it(
    new_database: Callable[[], str], redis_url: str, tmp_path: Path
) -> None:
    env = {
        "CHRONICLE_DATABASE_URL": new_database(),
        "CHRONICLE_REDIS_URL": redis_url,
        "CHRONICLE_DATA_DIR": str(tmp_path / "data"),
    }
    result = chronicle("audit", "query", "--actor", "demo", env=env, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "chronicle: error: the audit index is not built yet: run `chronicle projections run` to "
        "build it and keep it current, or `chronicle projections rebuild audit_index`"
    )
