"""Every command the docs show is run: README.md and docs/**/*.md, one session per document.

What counts as a command: each line of a ```sh, ```bash or ```shell block (a trailing ``\\``
joins the next line), and each ``$ `` line of a ```console block (the lines after it are its
output). A block right after ``<!-- not run: <reason> -->`` is skipped and counted; every other
command is run, whatever the program (`chronicle`, `curl`, `mkdir`...), so a doc that shows a
flag that does not exist, a route that does not exist or a file that was never written fails.

One session per document, its commands in order, in bash, each in a fresh ``bash -c`` that
shares the session's environment and working directory:

- a fresh database cloned from the migrated template (tests/conftest.py), the session's Redis
  with no `chronicle:*` key, a data directory of its own (tests/e2e/servers.py `service_env`);
- the same seeded history in every session, so the docs can name it: tenant ``acme``, actor
  ``demo``, correlation ``demo-1``; agent ``worker-1`` registered and online; task ``t-demo``
  (stream ``task-t-demo``: submitted by command ``submit-t-demo``, assigned, started, 50%
  progress, completed: versions 1-5); conversation ``c-demo`` where ``alice`` tells
  ``worker-1`` something, delivered and acknowledged. Ten events, positions 1-10;
  ``SUBMITTED_EVENT_ID`` is the first event of ``task-t-demo``;
- ``chronicle`` (and ``.venv/bin/chronicle``) run this checkout's entry point
  (``[project.scripts]`` of pyproject.toml), whatever the installed script says;
- ``VAR=value`` and ``export VAR=value`` lines set the session's variables (``KEY=$(chronicle
  keys create ...)`` keeps the key for the curl lines that follow), except the server
  settings ``CHRONICLE_DATABASE_URL``, ``CHRONICLE_REDIS_URL`` and ``CHRONICLE_DATA_DIR``,
  which stand for the reader's own servers and keep the session's test values (also when they
  prefix a command);
- port 8000 (``--port 8000``, ``localhost:8000``, ``127.0.0.1:8000``) is a free port of the
  session, and a `serve` or `up` without ``--port`` gets it;
- curl runs with ``--fail-with-body`` (a ``.curlrc`` of the session): an HTTP error fails the
  command.

Expected outcome: exit status 0, unless the command's comment begins ``# exit N``, or, in a
console block, its output begins with ``chronicle: error: ...``: then the status must be
non-zero and standard error must hold that line.

Commands that run until stopped (`chronicle serve`, `up`, `worker`, `projections run`,
`snapshotter`) are started in the background and checked to come up: `serve` and `up` must
answer /health, the others must still be alive 2 s later. They keep running for the rest of
the document (later curl lines need them) and are stopped at its end with SIGTERM.

Benchmarks (`chronicle bench ...`) run with ``--help`` appended: their options are parsed
(an unknown one fails) but nothing is measured; a full run takes minutes to hours.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import redis

from core.domain import AGENT, CONVERSATION, TASK, CommandContext, handle, load
from core.domain.agent.commands import BringAgentOnline, RegisterAgent
from core.domain.conversation.commands import AcknowledgeMessage, DeliverMessage, SendMessage
from core.domain.handling import command_event_id
from core.domain.task.commands import (
    AssignTask,
    CompleteTask,
    ReportTaskProgress,
    StartTask,
    SubmitTask,
)
from core.settings import Settings
from eventstore import EventStore
from tests.e2e.servers import ROOT, free_port, service_env

pytestmark = pytest.mark.integration

DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
SHELL_LANGUAGES = {"sh", "bash", "shell"}
NOT_RUN = re.compile(r"<!--\s*not run:\s*(?P<reason>\S.*?)\s*-->")
PROTECTED = ("CHRONICLE_DATABASE_URL", "CHRONICLE_REDIS_URL", "CHRONICLE_DATA_DIR")
ASSIGNMENT = re.compile(
    r"^(?:export\s+)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>\$\(.*\)|'[^']*'|\"[^\"]*\"|\S*)$"
)
PREFIX_ASSIGNMENT = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)=\S+\s+")
CHRONICLE = r"(?:\S*/)?chronicle"
LONG_RUNNING = re.compile(rf"^{CHRONICLE}\s+(?P<what>serve|up|worker|projections\s+run|snapshotter)\b")
SERVING = {"serve", "up"}
BENCH = re.compile(rf"^{CHRONICLE}\s+bench\b")
EXIT = re.compile(r"^#\s*exit (?P<status>\d+)\b")
PORT = 8000
COMMAND_TIMEOUT = 120.0

SEED_TENANT, SEED_ACTOR = "acme", "demo"
SUBMITTED_EVENT_ID = str(command_event_id(TASK.stream_id("t-demo"), "submit-t-demo", 0))


@dataclass(frozen=True)
class Command:
    """One command line of a document, as the reader would type it."""

    doc: Path
    line: int
    text: str
    error: str | None = None  # a console block's `chronicle: error: ...` output line
    status: int | None = None  # `# exit N`

    @property
    def where(self) -> str:
        shown = self.doc.relative_to(ROOT) if self.doc.is_relative_to(ROOT) else self.doc
        return f"{shown}:{self.line}"


@dataclass(frozen=True)
class Skipped:
    doc: Path
    line: int
    reason: str
    commands: int


@dataclass
class Extracted:
    commands: list[Command] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def _blocks(text: str) -> Iterator[tuple[str, int, list[str], str | None]]:
    """(language, first line number, lines, not-run reason) of each fenced block."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = re.match(r"^\s*```(\w*)\s*$", lines[i])
        if not opening:
            i += 1
            continue
        previous = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = NOT_RUN.search(previous)
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip().startswith("```")), len(lines))
        yield opening.group(1), i + 2, lines[i + 1 : end], marker.group("reason") if marker else None
        i = end + 1


def _join(lines: list[str], start: int, prompt: bool) -> Iterator[tuple[int, str, list[str]]]:
    """(line number, command, output lines) of a block: ``$ `` lines in a console block, every
    line elsewhere; trailing backslashes join lines."""
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        is_command = (
            line.startswith("$ ") if prompt else bool(line.strip()) and not line.lstrip().startswith("#")
        )
        if not is_command:
            i += 1
            continue
        number, text = start + i, line[2:] if prompt else line
        while text.endswith("\\") and i + 1 < len(lines):
            i += 1
            text = text[:-1] + " " + lines[i].strip()
        i += 1
        output: list[str] = []
        while prompt and i < len(lines) and not lines[i].startswith("$ "):
            output.append(lines[i])
            i += 1
        yield number, text.strip(), output


def split_comment(text: str) -> tuple[str, str]:
    """(the command, its trailing ``# comment``), as bash splits them: a ``#`` that starts a
    word outside quotes."""
    quote = None
    for i, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or text[i - 1].isspace()):
            return text[:i].rstrip(), text[i:]
    return text, ""


def extract(doc: Path, text: str | None = None) -> Extracted:
    found = Extracted()
    for language, start, lines, reason in _blocks(doc.read_text() if text is None else text):
        if language not in SHELL_LANGUAGES | {"console"}:
            continue
        commands = []
        for number, command, output in _join(lines, start, prompt=language == "console"):
            error = next((o.strip() for o in output[:1] if o.startswith("chronicle: error:")), None)
            status = EXIT.search(split_comment(command)[1])
            commands.append(Command(doc, number, command, error, int(status["status"]) if status else None))
        if reason is not None:
            found.skipped.append(Skipped(doc, start - 1, reason, len(commands)))
        else:
            found.commands.extend(commands)
    return found


async def seed(database_url: str, data_dir: Path) -> None:
    """The history every document may name (see the module docstring), its personal fields
    sealed with the session's master key (in its data directory)."""
    now = datetime.now(UTC)
    agent, task, talk = (
        AGENT.stream_id("worker-1"),
        TASK.stream_id("t-demo"),
        CONVERSATION.stream_id("c-demo"),
    )

    def ctx(command_id: str) -> CommandContext:
        return CommandContext(SEED_TENANT, SEED_ACTOR, command_id=command_id, correlation_id="demo-1")

    async with await EventStore.connect(database_url, Settings(data_dir=data_dir)) as store:
        for stream, command, decider, command_id in [
            (agent, RegisterAgent("worker-1", "demo worker", ("echo",), now), AGENT, "register-worker-1"),
            (agent, BringAgentOnline("worker-1", now), AGENT, "online-worker-1"),
            (task, SubmitTask("t-demo", "echo", now, payload={"message": "hello"}), TASK, "submit-t-demo"),
            (task, AssignTask("t-demo", "worker-1", now + timedelta(seconds=30), now), TASK, "assign-t-demo"),
        ]:
            await handle(store, stream, command, decider, ctx(command_id))  # type: ignore[arg-type]
        token = (await load(store, task, TASK)).state.fencing_token
        for stream, command, decider, command_id in [
            (task, StartTask("t-demo", token, now), TASK, "start-t-demo"),
            (task, ReportTaskProgress("t-demo", token, 50.0, now, note="half"), TASK, "progress-t-demo"),
            (task, CompleteTask("t-demo", token, now, result={"echo": "hello"}), TASK, "complete-t-demo"),
            (
                talk,
                SendMessage("c-demo", "alice", "worker-1", now, body={"text": "hello"}),
                CONVERSATION,
                "send-c-demo",
            ),
            (talk, DeliverMessage("c-demo", 1, now), CONVERSATION, "deliver-c-demo"),
            (talk, AcknowledgeMessage("c-demo", 1, now), CONVERSATION, "ack-c-demo"),
        ]:
            await handle(store, stream, command, decider, ctx(command_id))  # type: ignore[arg-type]


def _entry_point_shim(bin_dir: Path) -> None:
    """`chronicle` as pyproject.toml's [project.scripts] defines it, run from this checkout."""
    target = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["chronicle"]
    module, attr = target.split(":")
    code = f"import sys; from {module} import {attr} as main; sys.exit(main())"
    bin_dir.mkdir(parents=True)
    shim = bin_dir / "chronicle"
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -c {shlex.quote(code)} "$@"\n')
    shim.chmod(0o755)


class Session:
    """One document's commands, run in order against its own database, Redis keys and files."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.workdir, self.port = workdir, free_port()
        _entry_point_shim(workdir / ".venv" / "bin")
        (workdir / ".curlrc").write_text("fail-with-body\n")
        self.env = {
            **env,
            "PATH": f"{workdir / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "CURL_HOME": str(workdir),
            "HOME": str(workdir),
            "COLUMNS": "200",
        }
        self.background: list[tuple[Command, subprocess.Popen[bytes]]] = []

    def _prepare(self, text: str) -> str:
        text = split_comment(text)[0]
        while (prefix := PREFIX_ASSIGNMENT.match(text)) and prefix["name"] in PROTECTED:
            text = text[prefix.end() :]
        text = re.sub(r"\b(localhost|127\.0\.0\.1):8000\b", rf"\g<1>:{self.port}", text)
        text = re.sub(r"--port\s+8000\b", f"--port {self.port}", text)
        if BENCH.match(text):
            text += " --help"
        long_running = LONG_RUNNING.match(text)
        if long_running and long_running["what"] in SERVING and "--port" not in text:
            text += f" --port {self.port}"
        return text

    def _bash(self, script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", script],
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )

    def run(self, command: Command) -> None:
        text = self._prepare(command.text)
        assignment = ASSIGNMENT.match(text)
        if assignment:
            if assignment["name"] in PROTECTED:
                return
            done = self._bash(
                f'{assignment["name"]}={assignment["value"]}; printf %s "${assignment["name"]}"'
            )
            self._check(command, done)
            self.env[assignment["name"]] = done.stdout
            return
        long_running = LONG_RUNNING.match(text)
        if long_running:
            self._start(command, text, long_running["what"])
            return
        self._check(command, self._bash(text))

    def _check(self, command: Command, done: subprocess.CompletedProcess[str]) -> None:
        said = f"{command.where}: `{command.text}`\nexit {done.returncode}\n"
        said += f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        for started, _ in self.background:
            said += f"\n--- {started.where}: `{started.text}` logged:\n{self._log(started)[-1500:]}"
        if command.error is not None:
            assert done.returncode != 0, f"expected an error: {said}"
            shown = command.error.rstrip(".").removesuffix("...")
            assert shown in " ".join(done.stderr.split()), f"expected {command.error!r}: {said}"
        else:
            assert done.returncode == (command.status or 0), said

    def _start(self, command: Command, text: str, what: str) -> None:
        with (self.workdir / f"background-{command.line}.log").open("wb") as log:
            process = subprocess.Popen(
                ["bash", "-c", f"exec {text}"],
                env=self.env,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.background.append((command, process))
        deadline = time.monotonic() + (60 if what in SERVING else 2)
        while time.monotonic() < deadline:
            assert process.poll() is None, f"{command.where}: `{command.text}` exited: {self._log(command)}"
            if what in SERVING:
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200:
                        return
            time.sleep(0.2)
        assert what not in SERVING, f"{command.where}: `{command.text}` never answered /health"
        assert process.poll() is None, f"{command.where}: `{command.text}` exited: {self._log(command)}"

    def _log(self, command: Command) -> str:
        return (self.workdir / f"background-{command.line}.log").read_text(errors="replace")[-3000:]

    def close(self) -> None:
        """SIGTERM to each background command, twice (a second one stops `serve` draining)."""
        for _, process in reversed(self.background):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for command, process in reversed(self.background):
            try:
                process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
                    pytest.fail(f"{command.where}: `{command.text}` did not stop on SIGTERM")


def _clear_redis(url: str) -> None:
    """Redis is shared by the test session: start from no queued message and no cached state."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter("chronicle:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def session(new_database: Callable[[], str], redis_url: str, tmp_path: Path) -> Iterator[Session]:
    database_url = new_database()
    (tmp_path / "data").mkdir()
    asyncio.run(seed(database_url, tmp_path / "data"))
    _clear_redis(redis_url)
    (tmp_path / "work").mkdir()
    session = Session(service_env(database_url, redis_url, tmp_path / "data"), tmp_path / "work")
    try:
        yield session
    finally:
        session.close()


DOCS_WITH_COMMANDS = [doc for doc in DOCS if extract(doc).commands]


@pytest.mark.parametrize("doc", DOCS_WITH_COMMANDS, ids=lambda doc: str(doc.relative_to(ROOT)))
def test_every_command_of_the_doc_runs(doc: Path, session: Session) -> None:
    """Each command of the document, in order, in one session, ends as the document says."""
    for command in extract(doc).commands:
        started = time.monotonic()
        session.run(command)
        print(f"{command.where}: {time.monotonic() - started:.1f} s")  # shown with -s, or on a failure


def test_every_command_is_run_or_marked_with_a_reason() -> None:
    """A command is either run by the test above or in a block marked `<!-- not run: reason -->`;
    the count of each is printed, so a growing pile of exceptions shows."""
    run = sum(len(extract(doc).commands) for doc in DOCS)
    skipped = [s for doc in DOCS for s in extract(doc).skipped]
    for s in skipped:
        assert s.reason.strip() and s.commands, (
            f"{s.doc}:{s.line}: a not-run marker needs a reason and commands"
        )
    assert run > 0
    print(f"\n{run} commands run; {sum(s.commands for s in skipped)} not run, in {len(skipped)} blocks:")
    for s in skipped:
        print(f"  {s.doc.relative_to(ROOT)}:{s.line}: {s.commands} command(s): {s.reason}")


def test_a_flag_that_does_not_exist_fails_the_doc(session: Session, tmp_path: Path) -> None:
    """The harness is not a rubber stamp: a shown flag that does not exist fails the document,
    as does an expected error that does not come, and a route that does not exist."""
    doc = tmp_path / "bad.md"
    for text in (
        "```sh\nchronicle replay task-t-demo --no-such-flag\n```\n",
        "```console\n$ chronicle replay task-t-demo\nchronicle: error: something else\n```\n",
        "```sh\nchronicle bench append --no-such-flag\n```\n",
        "```sh\nchronicle serve --port 8000\ncurl -s localhost:8000/v1/no-such-route\n```\n",
    ):
        *setup, last = extract(doc, text).commands
        for command in setup:
            session.run(command)
        with pytest.raises(AssertionError):
            session.run(last)
