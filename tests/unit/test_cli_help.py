"""The command line's manners: an example in every help, --json on every read command, errors
as one line unless --debug, progress bars only on a terminal."""

from __future__ import annotations

import io
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from api.cli import app
from api.cli.progress import progress_bar

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = re.compile(r"^Example: (.+)$", re.MULTILINE)
SHELL_OPERATORS = {">", ">>", "<", "|", "&&", "||", ";"}

# Every command that only reads (or measures) and prints what it found. A new one goes here.
READ_COMMANDS = [
    "replay",
    "diff",
    "recover",
    "projections status",
    "audit query",
    "audit prove",
    "audit check",
    "audit verify",
    "audit checkpoint",
    "audit public-key",
    "keys list",
    "retention list",
    "bench append",
    "bench replay",
    "bench triad",
    "bench projections",
    "bench api",
    "bench console",
]


# typer carries its own copy of click: its commands are not click's classes, so a group is
# told by its subcommands, an option by its kind.
Command = Any


def _subcommands(command: Command) -> dict[str, Command] | None:
    return getattr(command, "commands", None)


def _walk(command: Command, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Command]]:
    yield path, command
    for name, sub in (_subcommands(command) or {}).items():
        yield from _walk(sub, (*path, name))


ROOT_COMMAND = typer.main.get_command(app)
COMMANDS = dict(_walk(ROOT_COMMAND))


def _id(path: tuple[str, ...]) -> str:
    return " ".join(path) or "chronicle"


def _leaf(words: list[str]) -> tuple[tuple[str, ...], Command, list[str]]:
    """The command an example's words name (descending through groups), and its arguments."""
    command = ROOT_COMMAND
    path: tuple[str, ...] = ()
    while (subcommands := _subcommands(command)) is not None:
        assert words, f"the example stops at the group {_id(path)!r}"
        sub = subcommands.get(words[0])
        assert sub is not None, f"{_id(path)!r} has no command {words[0]!r}"
        command, path, words = sub, (*path, words[0]), words[1:]
    return path, command, words


@pytest.mark.parametrize("path", list(COMMANDS), ids=_id)
def test_every_help_has_an_example_that_parses(
    path: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each command's and group's help shows, verbatim, a `chronicle ...` line whose command
    exists and whose options and arguments parse as that command's own."""
    examples = EXAMPLE.findall(COMMANDS[path].help or "")
    assert examples, f"`chronicle {_id(path)} --help` has no 'Example: chronicle ...' line"
    shown = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "250"}, terminal_width=250)
    assert shown.exit_code == 0, shown.output
    monkeypatch.chdir(tmp_path)  # files an example names (proof.json, events.jsonl) exist here
    for example in examples:
        assert f"Example: {example}" in shown.output, "the example is not shown as written"
        words = shlex.split(example)
        assert words[0] == "chronicle", example
        words = words[1 : next((i for i, w in enumerate(words) if w in SHELL_OPERATORS), len(words))]
        leaf, command, arguments = _leaf(words)
        assert leaf[: len(path)] == path, f"the example of {_id(path)!r} runs {_id(leaf)!r}"
        for word in arguments:
            if re.fullmatch(r"[\w./-]+\.\w+", word) and not word.startswith("-"):
                (tmp_path / word).parent.mkdir(parents=True, exist_ok=True)
                (tmp_path / word).touch()
        with command.make_context(f"chronicle {_id(leaf)}", list(arguments)) as ctx:
            assert ctx.params is not None


@pytest.mark.parametrize("name", READ_COMMANDS)
def test_read_commands_take_json(name: str) -> None:
    """Every read command has a --json flag, for scripts."""
    command = COMMANDS[tuple(name.split())]
    flags = {opt: p for p in command.params if p.param_type_name == "option" for opt in p.opts}
    assert "--json" in flags, f"chronicle {name} has no --json"
    assert flags["--json"].is_flag


def _chronicle(*args: str, setup: str = "") -> subprocess.CompletedProcess[str]:
    """Run ``main`` in a fresh interpreter, after ``setup`` (Python) has broken what it likes."""
    code = f"{setup}\nfrom api.cli import main\nmain()"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHRONICLE_")}
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60
    )


# Settings are read first thing in every command that touches the servers: an exception there is
# as unexpected as any, and nothing starts.
BROKEN_SETTINGS = """
import api.cli.runner
def broken():
    raise RuntimeError("the settings file\\nis on fire")
api.cli.runner.Settings = broken
"""


def test_an_unexpected_error_is_one_line_and_status_1() -> None:
    """A bug's exception prints one line naming it, and how to see more; no traceback."""
    done = _chronicle("retention", "list", setup=BROKEN_SETTINGS)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "chronicle: error: RuntimeError: the settings file is on fire (run with --debug for the traceback)"
    ]
    assert done.stdout == ""


def test_debug_shows_the_traceback() -> None:
    """--debug before the command lets the traceback through, with the same status."""
    done = _chronicle("--debug", "retention", "list", setup=BROKEN_SETTINGS)
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert "RuntimeError: the settings file" in done.stderr
    assert "run with --debug" not in done.stderr


def test_an_expected_error_outside_the_runner_is_one_line() -> None:
    """Bad input found before any server starts is one line and status 2, not a traceback."""
    done = _chronicle("worker", "--queues", "urgent")
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "chronicle: error: --queues must be some of high, normal, low, got 'urgent'"
    ]


def test_a_progress_bar_stays_off_a_pipe() -> None:
    """Standard error that is not a terminal gets no bar, so scripts read clean output."""
    sink = io.StringIO()
    with progress_bar("working", console=Console(file=sink)) as bar:
        assert not bar.enabled
        bar.update(5, 10)
    assert sink.getvalue() == ""


def test_a_progress_bar_shows_on_a_terminal() -> None:
    """On a terminal the bar appears at the first report and counts done of total."""
    sink = io.StringIO()
    with progress_bar("working", console=Console(file=sink, force_terminal=True, width=80)) as bar:
        assert sink.getvalue() == ""  # nothing before the first report
        bar.update(5, 10)
    assert "working" in sink.getvalue() and "5/10" in sink.getvalue()
