"""`chronicle serve` as a test fixture runs it: a real process on a free port."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

__all__ = ["CLI", "ROOT", "free_port", "service_env", "serving", "start_daemon", "stop"]

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "from api.cli import main; main()"]


def service_env(database_url: str, redis_url: str, data_dir: Path) -> dict[str, str]:
    """What a `chronicle` process of a test needs: this environment, the test's own database,
    Redis and data directory, JSON logs."""
    return {
        **os.environ,
        "CHRONICLE_DATABASE_URL": database_url,
        "CHRONICLE_REDIS_URL": redis_url,
        "CHRONICLE_DATA_DIR": str(data_dir),
        "CHRONICLE_LOG_FORMAT": "json",
        "PYTHONPATH": str(ROOT),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(env: dict[str, str], *args: str) -> Iterator[str]:
    """The base URL of a `chronicle serve` with ``env`` (and ``args``), once it answers /health;
    stopped after."""
    port = free_port()
    full_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    command = [*CLI, "serve", "--port", str(port), "--drain-seconds", "0", *args]  # tests stop at once
    server = subprocess.Popen(command, env=full_env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, "chronicle serve exited"
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, "chronicle serve did not answer /health"
            time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def start_daemon(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`chronicle projections run`: the read models (and the seals) follow the log."""
    return subprocess.Popen(
        [*CLI, "projections", "run"], env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, cwd=ROOT
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and SIGKILL if it has not exited within 30 s."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
