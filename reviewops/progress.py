"""Progress bars for long work (rich), written to stderr so stdout stays machine-readable."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(stderr=True)


@contextmanager
def progress(description: str, total: float | None = None, unit_count: bool = False) -> Iterator:
    """Yields `advance(n=1)` / `update(completed=...)` callables bound to one task."""
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), TimeElapsedColumn()]
    if unit_count:
        columns.insert(2, MofNCompleteColumn())
    else:
        columns.insert(2, TextColumn("{task.percentage:>3.0f}%"))
    with Progress(*columns, console=console, transient=False, disable=not console.is_terminal) as bar:
        task = bar.add_task(description, total=total)

        class _Task:
            def advance(self, n: float = 1) -> None:
                bar.advance(task, n)

            def update(self, completed: float) -> None:
                bar.update(task, completed=completed)

        yield _Task()
