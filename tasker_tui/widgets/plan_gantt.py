"""The plan as a text Gantt: per server, its region's grid intensity over the horizon (a
sparkline, greener is cleaner) above the pieces of the tasks placed there, on one time axis.
A server busier than `MAX_LANES` lanes shows its first lanes, then one line of the cores its
tasks use over time (a fleet of thousands of tasks would otherwise be hundreds of lanes).

Pure drawing: `gantt_lines` turns a `PlanTimeline` into lines of `Text`; the widget redraws them
when the screen hands it a new plan or its width changes. No I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timezone

from rich.text import Text
from textual.widgets import Static

from tasker.models import Placement, PlanTimeline
from tasker_tui import format as fmt
from tasker_tui.literal import one_line
from tasker_tui.widgets.fleet_table import fit

TASK_COLORS = ("#5fafff", "#ffaf5f", "#af87ff", "#5fd7af", "#ff87af", "#d7d75f", "#87d7ff", "#ff875f")
OTHERS = "▒"  # another owner's task: occupied cores, no name
OVERLAP = "≡"  # more than one task in one column
TICK_STEPS_H = (1, 2, 3, 4, 6, 12, 24)
LABEL_COLUMNS = 7  # room one axis label needs ("19 Nov" and a space)
MAX_LANES = 4
"""Lanes of tasks a server shows; with more, the first `MAX_LANES - 1` and its cores in use."""


def intensity_color(value: float) -> str:
    """Green for clean power, yellow for middling, red for dirty (g/kWh)."""
    if value < 150:
        return "green"
    if value < 400:
        return "yellow"
    return "red"


def column_span(plan: PlanTimeline, width: int, column: int) -> tuple[int, int]:
    span = (plan.end_ms - plan.start_ms) / width
    return int(plan.start_ms + column * span), int(plan.start_ms + (column + 1) * span)


def axis_line(plan: PlanTimeline, width: int) -> Text:
    """Round-hour ticks; a tick at midnight says the date instead of 00:00."""
    hours = (plan.end_ms - plan.start_ms) / 3_600_000
    step = next((s for s in TICK_STEPS_H if hours / s * LABEL_COLUMNS <= width), 24)
    cells = [" "] * width
    text = Text()
    first = math.ceil(plan.start_ms / 3_600_000 / step) * step
    hour = first
    while hour * 3_600_000 < plan.end_ms:
        column = int((hour * 3_600_000 - plan.start_ms) / (plan.end_ms - plan.start_ms) * width)
        moment = datetime.fromtimestamp(hour * 3600, tz=timezone.utc)
        label = moment.strftime("%d %b") if moment.hour == 0 else moment.strftime("%H:%M")
        if column + len(label) <= width and all(c == " " for c in cells[max(0, column - 1) : column + len(label)]):
            cells[column : column + len(label)] = list(label)
        hour += step
    for char in cells:
        text.append(char, "bold" if char.isalpha() else "")
    return text


def intensity_line(values: Sequence[float | None], width: int, low: float, high: float) -> Text:
    """The curve squeezed into `width` columns (mean of the slots under each), on a shared scale."""
    text = Text()
    if not values:
        return Text(" " * width)
    top = len(fmt.SPARK_CHARS) - 1
    for column in range(width):
        a = column * len(values) // width
        b = max(a + 1, (column + 1) * len(values) // width)
        mean = fmt.finite_mean([v for v in values[a:b] if v is not None])
        if mean is None:
            text.append(fmt.SPARK_GAP)
            continue
        level = 0 if high <= low else round((mean - low) / (high - low) * top)
        text.append(fmt.SPARK_CHARS[max(0, min(top, level))], intensity_color(mean))
    return text


def placements_line(plan: PlanTimeline, placements: Sequence[Placement], width: int, colors: dict[str, str]) -> Text:
    """Each column shows the task running there: its initial where a piece begins, blocks after."""
    text = Text()
    previous: Placement | None = None
    for column in range(width):
        start, end = column_span(plan, width, column)
        here = [p for p in placements if any(a < end and b > start for a, b in p.pieces)]
        if not here:
            text.append("·" if column % 2 == 0 else " ", "dim")
            previous = None
        elif len(here) > 1:  # within one lane only when a column is wider than a gap
            text.append(OVERLAP, "bold")
            previous = None
        else:
            placement = here[0]
            if placement.task_id is None:
                text.append(OTHERS, "dim")
            else:
                color = colors.get(placement.task_id, "white")
                begins = placement is not previous
                initial = one_line(placement.name or "?")[:1].upper() or "?"
                text.append(initial if begins else "█", f"bold black on {color}" if begins else color)
            previous = placement
    return text


def cores_line(plan: PlanTimeline, placements: Sequence[Placement], cores: int, width: int) -> Text:
    """Each column: the mean share of the server's `cores` that the placements use over it."""
    total = [0.0] * width
    span = (plan.end_ms - plan.start_ms) / width
    for placement in placements:
        for a, b in placement.pieces:
            first, last = max(0, int((a - plan.start_ms) / span)), min(width - 1, int((b - plan.start_ms) / span))
            for column in range(first, last + 1):
                start, end = column_span(plan, width, column)
                total[column] += placement.cores * max(0, min(b, end) - max(a, start)) / max(1, end - start)
    text = Text()
    top = len(fmt.SPARK_CHARS) - 1
    for column, used in enumerate(total):
        if used <= 0:
            text.append("·" if column % 2 == 0 else " ", "dim")
            continue
        share = used / max(1, cores)
        text.append(fmt.SPARK_CHARS[max(0, min(top, math.ceil(share * top)))], "red" if share > 1.0001 else "cyan")
    return text


def lanes(placements: Sequence[Placement]) -> list[list[Placement]]:
    """Placements split into rows so that none overlaps another in its row (first fit by start)."""
    rows: list[list[Placement]] = []
    ends: list[int] = []
    for placement in sorted(placements, key=lambda p: p.pieces[0][0] if p.pieces else 0):
        if not placement.pieces:
            continue
        begin, finish = placement.pieces[0][0], placement.pieces[-1][1]
        for index, end in enumerate(ends):
            if end <= begin:
                rows[index].append(placement)
                ends[index] = finish
                break
        else:
            rows.append([placement])
            ends.append(finish)
    return rows or [[]]


def gantt_lines(plan: PlanTimeline, width: int, label_width: int = 14) -> tuple[list[Text], list[Text]]:
    """(lines, legend): the axis, then per server its intensity line and one line per lane of
    tasks (past `MAX_LANES`, the first lanes and a line of its cores in use), and one legend
    entry per task shown ("R render-frames (4c, planned)")."""
    timeline = max(8, width - label_width - 1)
    values = [v for curve in plan.curves.values() for v in curve if v is not None and math.isfinite(v)]
    low, high = (min(values), max(values)) if values else (0.0, 0.0)
    shown: dict[str, list[list[Placement]]] = {}
    hidden: dict[str, int] = {}  # placements in the lanes not shown
    for server in plan.servers:
        rows = lanes(server.placements)
        cut = len(rows) if len(rows) <= MAX_LANES else MAX_LANES - 1
        shown[server.id], hidden[server.id] = rows[:cut], sum(len(lane) for lane in rows[cut:])
    colors: dict[str, str] = {}
    legend: list[Text] = []
    for server in plan.servers:
        for placement in (p for lane in shown[server.id] for p in lane):
            if placement.task_id is not None and placement.task_id not in colors:
                colors[placement.task_id] = TASK_COLORS[len(colors) % len(TASK_COLORS)]
                name = one_line(placement.name or "?")
                legend.append(
                    Text.assemble(
                        (name[:1].upper() or "?", f"bold black on {colors[placement.task_id]}"),
                        f" {name} ({placement.cores}c, {placement.state})",
                    )
                )
    lines = [Text.assemble(" " * (label_width + 1), axis_line(plan, timeline))]
    for server in plan.servers:
        lines.append(
            Text.assemble(
                (fit(one_line(server.name), label_width), "bold"),
                " ",
                intensity_line(plan.curve_of(server), timeline, low, high),
            )
        )
        for index, lane in enumerate(shown[server.id]):
            label = f" {one_line(server.region)}" if index == 0 else ""
            lines.append(
                Text.assemble((fit(label, label_width), "dim"), " ", placements_line(plan, lane, timeline, colors))
            )
        if hidden[server.id]:
            lines.append(
                Text.assemble(
                    (fit(f" +{hidden[server.id]:,} more", label_width), "dim"),
                    " ",
                    cores_line(plan, server.placements, server.cores, timeline),
                )
            )
    if any(hidden.values()):
        legend.append(Text.assemble(("▁▄█", "cyan"), " +N more: cores in use by all of the server's tasks"))
    return lines, legend


class PlanGantt(Static):
    """The plan timeline; `show` hands it a plan (or None while loading)."""

    DEFAULT_CSS = """
    PlanGantt { height: auto; width: 1fr; padding: 0 1; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.plan: PlanTimeline | None = None
        self.legend: list[Text] = []

    def show(self, plan: PlanTimeline | None) -> None:
        self.plan = plan
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        width = self.content_size.width
        if self.plan is None or width <= 0:
            self.update("Loading the plan…")
            return
        if not self.plan.servers:
            self.update("No servers in the plan yet: register one from the fleet (a).")
            self.legend = []
            return
        lines, self.legend = gantt_lines(self.plan, width, 14 if width < 120 else 22)
        legend = Text("  ").join(self.legend) if self.legend else Text("No task placed over the horizon.", "dim")
        self.update(Text("\n").join([*lines, Text(""), legend]))
