"""One rich progress bar for long work: bench, sr and training share its layout.

Examples:
    >>> from mrsisr.progress import progress_bar
    >>> bar = progress_bar("NFE")
    >>> task = bar.add_task("ftddm ×4", total=101)
"""

from __future__ import annotations

from typing import Any

__all__ = ["progress_bar"]


def progress_bar(*middle: str, console: Any = None, eta_label: str = "") -> Any:
    """A rich `Progress`: description, bar, done/total, the given columns, elapsed time and ETA.

    Args:
        *middle: Rich `TextColumn` templates shown after the count, e.g. `"NFE"` or
            `"loss {task.fields[loss]:.4f}"`.
        console: A rich console to draw on (default: rich's).
        eta_label: Text shown before the time remaining (e.g. `"eta"`).

    Returns:
        The `rich.progress.Progress`, to use as a context manager.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn()]
    columns += [TextColumn(m) for m in middle] + [TimeElapsedColumn()]
    columns += ([TextColumn(eta_label)] if eta_label else []) + [TimeRemainingColumn()]
    return Progress(*columns, console=console, transient=False)
