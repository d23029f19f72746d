"""Progress bars for long commands, on standard error and only when it is a terminal.

A pipe or a file gets nothing, so a script reading standard output (JSON, JSON Lines, a
proof) or standard error (the one-line error) never sees a bar. The bar appears at the first
report, so a command refused at once prints nothing but its error, and it is transient: once
the work is done only the command's own output is left.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["ProgressBar", "progress_bar", "spinner"]


class ProgressBar:
    """One task's bar; ``update`` is the callable handed to the work as its ``progress``."""

    def __init__(self, progress: Progress, description: str) -> None:
        self._progress = progress
        self._task = progress.add_task(description, total=None)

    @property
    def enabled(self) -> bool:
        """False on a pipe: callers may skip work that only feeds the bar (counting the total)."""
        return not self._progress.disable

    def update(self, done: int, total: int | None = None, *, description: str | None = None) -> None:
        if not self.enabled:
            return
        if not self._progress.live.is_started:
            self._progress.start()
        self._progress.update(self._task, completed=done, total=total, description=description)


@contextlib.contextmanager
def progress_bar(description: str, *, console: Console | None = None) -> Iterator[ProgressBar]:
    """A bar with done/total and the time left; without a total it counts and pulses."""
    console = console or Console(stderr=True)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    progress = _progress(columns, console)
    with _started_lazily(progress):
        yield ProgressBar(progress, description)


@contextlib.contextmanager
def spinner(description: str, *, console: Console | None = None) -> Iterator[None]:
    """A spinner with the time elapsed, for work with no measure of its own (a benchmark)."""
    console = console or Console(stderr=True)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with _progress(columns, console) as progress:
        progress.add_task(description, total=None)
        yield


def _progress(columns: tuple[ProgressColumn, ...], console: Console) -> Progress:
    # Standard output is never redirected: it carries the command's result, perhaps into a pipe.
    return Progress(
        *columns,
        transient=True,
        console=console,
        disable=not console.is_terminal,
        redirect_stdout=False,
    )


@contextlib.contextmanager
def _started_lazily(progress: Progress) -> Iterator[None]:
    try:
        yield
    finally:
        if progress.live.is_started:
            progress.stop()
