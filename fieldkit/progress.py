"""Progress display for long work: a live rich bar on a terminal, a line every tenth of the
work otherwise (so logs of background runs still show progress)."""
from __future__ import annotations

import contextlib
import math

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def _format(fields: dict) -> str:
    return "  ".join(f"{name} {value:.4g}" if isinstance(value, float) else f"{name} {value}"
                     for name, value in fields.items() if not (isinstance(value, float) and math.isnan(value)))


UNKNOWN_TOTAL_EVERY = 100


@contextlib.contextmanager
def progress_bar(description: str, total: int | None, completed: int = 0):
    """Yields `advance(**fields)`, to call once per unit of work with figures to show; a total of
    None (work that ends at a time budget) shows the count without a bar's end."""
    console = Console(stderr=True, soft_wrap=True)
    if console.is_terminal:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TimeRemainingColumn(), TextColumn("{task.fields[status]}"))
        with Progress(*columns, console=console) as progress:
            task = progress.add_task(description, total=total, completed=completed, status="")

            def advance(**fields):
                progress.update(task, advance=1, status=_format(fields))

            yield advance
        return
    state = {"done": completed}
    every = max(total // 10, 1) if total else UNKNOWN_TOTAL_EVERY

    def advance(**fields):
        state["done"] += 1
        if state["done"] % every == 0 or state["done"] == total:
            console.print(f"{description}: {state['done']}/{total or '?'}  {_format(fields)}", highlight=False)

    yield advance
