"""A line chart of one metric over a time range (textual-plotext), drawn from points it is given.

The axes are Tasker's own, not plotext's: round values evenly spaced from zero (power and CO2
rates are never negative, and a scale from 218 to 222 W would turn noise into cliffs), and times
on round minutes, hours or days with the date where the range crosses midnight.

Whatever the points hold, the chart draws: a value that is not a finite number breaks the line
(a gap, as a missing reading does), and magnitudes plotext cannot scale (1e308, 1e-300) are drawn
in units of a power of ten named in the title.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from textual_plotext import PlotextPlot

from tasker_tui.format import scientific
from tasker_tui.ticks import time_ticks, value_label, value_ticks

Bucket = tuple[int, float, float, float]
# Rows and columns of the widget that are not plot area: title, frame, x labels; y labels, frame.
CHROME_ROWS = 4
CHROME_COLUMNS = 10
Y_LABEL_WIDTH = 5  # up to 99999; larger values are drawn scaled by a power of ten or wider
PLAIN_RANGE = (1e-3, 1e6)  # largest magnitudes drawn in plain units; outside, the axis is scaled
FINEST_SCALE = -300  # exponent floor: 10**-320 would be 0 and divide by zero


def axis_scale(values: Sequence[float]) -> float:
    """1 when the largest magnitude among `values` is ordinary, else a power of ten near it."""
    largest = max((abs(v) for v in values), default=0.0)
    if largest == 0 or PLAIN_RANGE[0] <= largest < PLAIN_RANGE[1]:
        return 1.0
    return 10.0 ** max(FINEST_SCALE, math.floor(math.log10(largest)))


def runs(xs: Sequence[float], ys: Sequence[float]) -> list[tuple[list[float], list[float]]]:
    """The stretches of consecutive finite `ys`: each is drawn as its own line, leaving gaps."""
    out: list[tuple[list[float], list[float]]] = []
    current: tuple[list[float], list[float]] = ([], [])
    for x, y in zip(xs, ys):
        if math.isfinite(y):
            current[0].append(x)
            current[1].append(y)
        elif current[0]:
            out.append(current)
            current = ([], [])
    if current[0]:
        out.append(current)
    return out


class MetricChart(PlotextPlot):
    """Average per bucket as a line (with the bucket maxima faint above it when they differ)."""

    def __init__(self, title: str, unit: str, color: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.title = title
        self.unit = unit
        self.color = color
        self._points: Sequence[Bucket] = ()
        self._window = (0, 1)
        self._empty_note = "loading…"

    def show_points(
        self, points: Sequence[Bucket], start_ms: int, end_ms: int, empty_note: str = "no readings in this range"
    ) -> None:
        self._points = list(points)
        self._window = (start_ms, end_ms)
        self._empty_note = empty_note
        self.refresh()

    def render(self):
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        start_ms, end_ms = self._window
        plt.xlim(start_ms / 1000, end_ms / 1000)
        positions = time_ticks(start_ms, end_ms, max(10, self.size.width - CHROME_COLUMNS))
        plt.xticks([ts / 1000 for ts, _ in positions], [label for _, label in positions])
        points = self._points
        finite = [v for p in points for v in p[1:4] if math.isfinite(v)]
        scale = axis_scale(finite)
        unit = self.unit if scale == 1 else f"×{scientific(scale)} {self.unit}"
        plt.title(f"{self.title} ({unit})")
        if finite:
            xs = [p[0] / 1000 for p in points]
            averages = [p[2] / scale for p in points]
            highs = [p[3] / scale for p in points]
            for run_xs, run_ys in runs(xs, averages):
                plt.plot(run_xs, run_ys, marker="braille", color=self.color)
            if len(points) < 2000 and any(h - a > 1e-9 for a, h in zip(averages, highs)):
                for run_xs, run_ys in runs(xs, highs):
                    plt.plot(run_xs, run_ys, marker="braille", color="gray")
            low, high = min(finite) / scale, max(finite) / scale
            ticks = value_ticks(min(0.0, low), max(0.0, high), max(2, min(6, self.size.height - CHROME_ROWS)))
            step = ticks[1] - ticks[0]
            plt.ylim(ticks[0], ticks[-1])
            # Labels of one width: the plot keeps its place when a live value moves the scale.
            plt.yticks(ticks, [value_label(t, step).rjust(Y_LABEL_WIDTH) for t in ticks])
        else:
            plt.ylim(0, 1)
            plt.yticks([0, 1], [" " * Y_LABEL_WIDTH] * 2)  # no values: no scale to claim
            note = self._empty_note if not points else "no numeric readings in this range"
            plt.text(note, (start_ms + end_ms) / 2000, 0.5, alignment="center")
        return super().render()
