"""Lines of Tasker's line-API tables (fleet, tasks): cells fitted to their columns in terminal
cells, headers with the sort letter underlined, and a row laid out as a `Strip`.

The fleet table and the task table draw their header and their rows the same way and differ
only in what each cell says, how wide it is and how it is styled; this is the part they share.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip

from tasker_tui.table_query import SortOrder, letter_position


class HeaderColumn(Protocol):
    """What a header needs of a column (both tables' column types have it)."""

    @property
    def key(self) -> str: ...

    @property
    def label(self) -> str: ...

    @property
    def letter(self) -> str: ...

    @property
    def right(self) -> bool: ...


def fit(text: str, width: int, right: bool = False) -> str:
    """`text` padded or cut (with an ellipsis) to exactly `width` cells: counted in cells, not
    characters, so a name in wide (CJK) characters cannot push the columns after it."""
    cells = cell_len(text)
    if cells > width:
        return set_cell_size(text, width - 1) + "…" if width > 0 else ""
    pad = " " * (width - cells)
    return pad + text if right else text + pad


def cell(text: str, width: int, style: Style, right: bool = False) -> list[Segment]:
    """One cell of a row: `text` fitted to `width`, in `style`."""
    return [Segment(fit(text, width, right), style)]


def header_label(label: str, letter: str, arrow: str, width: int, right: bool, style: Style) -> list[Segment]:
    """A column header fitted to `width`, its sort letter underlined (where the label has it)."""
    text = fit(f"{label} {arrow}" if arrow else label, width, right)
    offset = text.find(label[:1]) if right else 0
    at = letter_position(label, letter)
    if at is None or offset < 0 or offset + at >= len(text) or text[offset + at] == "…":
        return [Segment(text, style)]
    at += offset
    return [Segment(text[:at], style), Segment(text[at], style + Style(underline=True)), Segment(text[at + 1 :], style)]


def table_row(cells: Iterable[Sequence[Segment]], style: Style, *, gap: int = 1, edge: int = 1) -> Strip:
    """`cells` (each one or more segments, already fitted to its column) side by side: `gap`
    blanks between two cells, `edge` blanks before the first and after the last, all in `style`."""
    between = Segment(" " * gap, style)
    segments = [Segment(" " * edge, style)]
    for index, drawn in enumerate(cells):
        if index:
            segments.append(between)
        segments.extend(drawn)
    segments.append(Segment(" " * edge, style))
    return Strip(segments)


def header_row(
    columns: Iterable[HeaderColumn],
    widths: Mapping[str, int],
    order: SortOrder,
    style: Style,
    *,
    labels: Mapping[str, str] | None = None,
    gap: int = 1,
    edge: int = 1,
) -> Strip:
    """The header line: each column's label (or its entry in `labels`) fitted to its width, the
    column sorted by with the order's arrow, laid out as `table_row` lays out a row."""
    return table_row(
        (
            header_label(
                labels[c.key] if labels else c.label,
                c.letter,
                order.arrow if c.key == order.key else "",
                widths[c.key],
                c.right,
                style,
            )
            for c in columns
        ),
        style,
        gap=gap,
        edge=edge,
    )
