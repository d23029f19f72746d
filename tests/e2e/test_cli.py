"""The `chronicle` command line, run as a user runs it: a subprocess with CHRONICLE_* settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from eventstore import EventStore

pytestmark = pytest.mark.integration


def chronicle(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-c", "from api.cli import main; main()", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"chronicle {' '.join(args)} failed:\n{result.stderr}")
    return result


def sample(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Append the sample history (tests/e2e/sample.py: nine events, actor ``demo``) and print it."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.e2e.sample"],
        env={**os.environ, **env},
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise AssertionError(f"the sample history failed:\n{result.stderr}")
    return result


@pytest.fixture
def cli_env(new_database: Callable[[], str], redis_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "CHRONICLE_DATABASE_URL": new_database(),
        "CHRONICLE_REDIS_URL": redis_url,
        "CHRONICLE_DATA_DIR": str(tmp_path / "data"),
        "CHRONICLE_LOG_FORMAT": "json",
    }


def test_export_then_import_moves_every_event(
    cli_env: dict[str, str], new_database: Callable[[], str], tmp_path: Path
) -> None:
    """Exported JSON Lines import into another database with the same streams, types and data."""
    sample(cli_env)
    dump = tmp_path / "log.jsonl"
    chronicle("export", "--out", str(dump), env=cli_env)
    exported = [orjson.loads(line) for line in dump.read_text().splitlines()]
    assert len(exported) == 9
    target = {**cli_env, "CHRONICLE_DATABASE_URL": new_database()}
    assert "9 imported, 0 already stored" in chronicle("import", str(dump), env=target).stdout
    assert "0 imported, 9 already stored" in chronicle("import", str(dump), env=target).stdout
    copy = tmp_path / "copy.jsonl"
    chronicle("export", "--out", str(copy), env=target)
    imported = [orjson.loads(line) for line in copy.read_text().splitlines()]
    fields = ("event_id", "stream_id", "stream_version", "type", "data", "metadata", "tenant_id")
    assert sorted(tuple(str(e[f]) for f in fields) for e in imported) == sorted(
        tuple(str(e[f]) for f in fields) for e in exported
    )


async def test_import_without_ids_is_idempotent_and_chained(cli_env: dict[str, str], tmp_path: Path) -> None:
    """A file without event ids imports once, even when imported twice, with a valid hash chain."""
    lines = [
        {"stream_id": f"task-{i % 3}", "type": "Imported", "data": {"i": i}, "metadata": {"tenant_id": "t"}}
        for i in range(30)
    ]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    chronicle("import", str(path), env=cli_env)
    chronicle("import", str(path), env=cli_env)
    async with await EventStore.connect(cli_env["CHRONICLE_DATABASE_URL"]) as store:
        events = await store.read_stream("task-1")
        assert [e.data["i"] for e in events] == list(range(1, 30, 3))
        assert await store.head_position() == 30


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "line 2:"),
        ('{"type": "T", "data": {}}', "line 2: missing field 'stream_id'"),
        ('{"stream_id": "bad id", "type": "T"}', "line 2: invalid stream id"),
        ('{"stream_id": "task-1", "type": "T", "data": {"x": NaN}}', "line 2:"),
    ],
)
def test_bad_import_line_is_named_and_nothing_is_written(
    cli_env: dict[str, str], tmp_path: Path, line: str, message: str
) -> None:
    """A bad line gives one error line naming it, exit status 2, and writes nothing at all."""
    path = tmp_path / "bad.jsonl"
    path.write_text('{"stream_id": "task-1", "type": "T", "data": {}}\n' + line + "\n")
    result = chronicle("import", str(path), env=cli_env, check=False)
    assert result.returncode == 2
    error_lines = [x for x in result.stderr.splitlines() if x.startswith("chronicle: error:")]
    assert len(error_lines) == 1
    assert message in error_lines[0]
    assert "0 events" in chronicle("export", "--out", str(tmp_path / "x.jsonl"), env=cli_env).stderr


def test_unreachable_database_is_one_line_and_exit_1(tmp_path: Path) -> None:
    """A database that cannot be reached gives one error line and a non-zero exit, no traceback."""
    env = {
        "CHRONICLE_DATABASE_URL": "postgresql://x@127.0.0.1:1/none",
        "CHRONICLE_REDIS_URL": "redis://127.0.0.1:1",
        "CHRONICLE_DATA_DIR": str(tmp_path),
    }
    result = chronicle("export", env=env, check=False)
    assert result.returncode == 1
    assert "chronicle: error:" in result.stderr
    assert "Traceback" not in result.stderr


def test_bench_append_prints_every_figure(cli_env: dict[str, str]) -> None:
    """`chronicle bench append --json` prints ceilings, Chronicle's figures with sealing off and
    on, and every target."""
    out = chronicle("bench", "append", "--json", "--duration", "0.3", "--events", "20000", env=cli_env).stdout
    result = json.loads(out)
    assert {"copy", "single_1", "single_8", "single_32", "hundred"} <= result["ceiling"].keys()
    assert {"single_1", "single_8", "single_32", "hundred"} <= result["chronicle"].keys()
    assert result["chronicle"]["single_32"]["events_per_s"] > 0
    assert {"single_32", "hundred"} <= result["sealing"].keys()
    assert result["sealing"]["hundred"]["on_events_per_s"] > 0
    assert result["row_level_security"]["read_all"]["tenant_over_owner"] > 0
    assert len(result["targets"]) == 8  # the five before, two for sealing's cost, one for its latency
    assert result["machine"]["postgres"]["fsync"] == "on"


def test_bench_append_with_log_sizes_measures_each_size_beside_the_small_log(cli_env: dict[str, str]) -> None:
    """`--log-size` grows the log through the importer and measures every figure at each size."""
    args = ("bench", "append", "--json", "--duration", "0.1", "--log-size", "90000")
    result = json.loads(chronicle(*args, env=cli_env).stdout)
    assert list(result["sizes"]) == ["90000"] and result["sizes"]["90000"]["events_in_log"] >= 90_000
    assert result["sizes"]["90000"]["fill"]["imported"] > 0  # grown through the importer
    assert set(result["table"]) == {"small", "90000"}
    assert len(result["targets"]) == 10 and all("at 90,000 events" in t["target"] for t in result["targets"])


def test_bench_import_prints_its_rate_beside_copy_and_its_peak_memory(cli_env: dict[str, str]) -> None:
    result = json.loads(chronicle("bench", "import", "--json", "--lines", "3000", env=cli_env).stdout)
    assert result["lines"] == 3000 and result["import_events_per_s"] > 0
    assert result["raw_copy_events_per_s"] > 0 and 0 < result["import_peak_rss_mb"] < 1000
    assert [t["target"] for t in result["targets"]] == [
        "import rate / raw COPY of the same rows",
        "import peak memory for 3,000 lines (MB)",
    ]


def test_migrate_reaches_head_and_is_idempotent(pg_server_url: str, tmp_path: Path) -> None:
    """`chronicle migrate` brings an empty database to head, and running it again changes nothing."""
    import asyncio

    from eventstore.migrate import head_revision
    from tests.conftest import _admin, run_sync, with_database

    name = f"chronicle_cli_{os.getpid()}"
    run_sync(_admin(pg_server_url, f'CREATE DATABASE "{name}"'))
    try:
        env = {
            "CHRONICLE_DATABASE_URL": with_database(pg_server_url, name),
            "CHRONICLE_REDIS_URL": "redis://unused",
            "CHRONICLE_DATA_DIR": str(tmp_path),
        }
        for _ in range(2):
            assert f"schema at {head_revision()}" in chronicle("migrate", env=env).stdout

        async def tables() -> set[str]:
            import asyncpg

            conn = await asyncpg.connect(env["CHRONICLE_DATABASE_URL"])
            try:
                return {
                    r[0]
                    for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                }
            finally:
                await conn.close()

        assert {"events", "streams", "snapshots", "projection_checkpoints"} <= asyncio.run(tables())
    finally:
        run_sync(_admin(pg_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_bench_api_prints_every_figure_beside_its_ceilings(cli_env: dict[str, str]) -> None:
    """`chronicle bench api --json`: both ceilings, the four phases and the five targets."""
    args = ("bench", "api", "--json", "--seconds", "0.5", "--tasks", "40", "--trials", "1")
    result = json.loads(chronicle(*args, env=cli_env).stdout)
    assert result["ceiling"]["redis_stream_round_trip"]["round_trips_per_s"] > 0
    assert result["ceiling"]["raw_single_event_append_32"]["events_per_s"] > 0
    assert result["submits"]["submits_per_s"] > 0 and result["end_to_end"]["tasks"] == 40
    assert result["submit_to_start"]["tasks"] == 125 and result["reclaim"]["trials"] == 1
    assert [t["target"] for t in result["targets"]] == [
        "end-to-end echo tasks/s",
        "submit to start p50 ms at 250 tasks/s",
        "submit to start p99 ms at 250 tasks/s",
        "202 p99 ms, 32 clients",
        "reclaim after a SIGKILLed worker, p99 s",
    ]
