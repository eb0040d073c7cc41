"""How the demo shows what happens: rich status lines and a live table on a terminal, plain timestamped lines
anywhere else (a pipe, a CI log, `--json` progress on stderr), and the same without rich installed."""

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol, TextIO

Row = Sequence[str]


class Progress(Protocol):
    def event(self, text: str, *, style: str = "") -> None: ...

    def heading(self, text: str) -> None: ...

    def table(self, title: str, columns: Row, rows: Sequence[Row]) -> None: ...

    def live(self, render: Callable[[], tuple[str, Row, Sequence[Row]]]) -> AbstractContextManager[Any]: ...


class PlainProgress:
    """One line per event, prefixed with the seconds since the demo started; flushed at once (a CI log)."""

    def __init__(self, stream: TextIO, started: float) -> None:
        self._stream = stream
        self._started = started

    def _print(self, text: str) -> None:
        print(text, file=self._stream, flush=True)

    def event(self, text: str, *, style: str = "") -> None:
        self._print(f"[{time.monotonic() - self._started:5.1f}s] {text}")

    def heading(self, text: str) -> None:
        self._print(f"\n== {text}")

    def table(self, title: str, columns: Row, rows: Sequence[Row]) -> None:
        widths = [max(len(str(c)), *(len(str(r[i])) for r in rows)) if rows else len(str(c))
                  for i, c in enumerate(columns)]
        self._print(f"\n{title}")
        for line in (columns, *rows):
            self._print("  " + "  ".join(str(cell).ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())

    def live(self, render: Callable[[], tuple[str, Row, Sequence[Row]]]) -> AbstractContextManager[Any]:
        return nullcontext()  # no redrawing in a log: the final table is printed instead


class RichProgress:
    """Status lines scroll above a live table of the hubs, redrawn four times a second."""

    def __init__(self, stream: TextIO, started: float) -> None:
        from rich.console import Console

        self._console = Console(file=stream, highlight=False)
        self._started = started

    def event(self, text: str, *, style: str = "") -> None:
        from rich.text import Text

        line = Text(f"{time.monotonic() - self._started:5.1f}s ", style="dim")
        line.append(text, style=style)
        self._console.print(line)

    def heading(self, text: str) -> None:
        self._console.rule(f"[bold]{text}", align="left")

    def _table(self, title: str, columns: Row, rows: Sequence[Row]) -> Any:
        from rich.table import Table

        table = Table(title=title, title_justify="left", header_style="bold")
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*row)
        return table

    def table(self, title: str, columns: Row, rows: Sequence[Row]) -> None:
        self._console.print(self._table(title, columns, rows))

    def live(self, render: Callable[[], tuple[str, Row, Sequence[Row]]]) -> AbstractContextManager[Any]:
        from rich.live import Live

        return Live(get_renderable=lambda: self._table(*render()), console=self._console, refresh_per_second=4,
                    transient=True)


def make_progress(stream: TextIO, started: float) -> Progress:
    """Rich on a terminal when rich is installed (the `demo` extra), plain lines otherwise."""
    if stream.isatty():
        try:
            import rich  # noqa: F401 - only whether it is there
        except ImportError:
            return PlainProgress(stream, started)
        return RichProgress(stream, started)
    return PlainProgress(stream, started)
