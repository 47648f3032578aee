"""A line chart of one metric over a time range (textual-plotext), drawn from points it is given.

Whatever the points hold, the chart draws: a value that is not a finite number breaks the line
(a gap, as a missing reading does), and magnitudes plotext cannot scale (1e308, 1e-300) are drawn
in units of a power of ten named in the title.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timezone

from textual_plotext import PlotextPlot

from tasker_tui.format import scientific

Bucket = tuple[int, float, float, float]
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


def tick_labels(start_ms: int, end_ms: int, count: int) -> tuple[list[float], list[str]]:
    """Evenly spaced x ticks (epoch seconds) with labels that fit the span: HH:MM:SS, HH:MM or MM-DD."""
    span_s = max(1.0, (end_ms - start_ms) / 1000)
    if span_s <= 15 * 60:
        pattern = "%H:%M:%S"
    elif span_s <= 2 * 86400:
        pattern = "%H:%M"
    else:
        pattern = "%m-%d"
    count = max(2, count)
    positions = [start_ms / 1000 + span_s * i / (count - 1) for i in range(count)]
    labels = [datetime.fromtimestamp(p, tz=timezone.utc).strftime(pattern) for p in positions]
    return positions, labels


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

    def show_points(self, points: Sequence[Bucket], start_ms: int, end_ms: int, empty_note: str = "no readings in this range") -> None:
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
        width = max(10, self.size.width)
        positions, labels = tick_labels(start_ms, end_ms, max(2, min(6, width // 14)))
        plt.xticks(positions, labels)
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
            pad = (high - low) * 0.1 or max(1.0, abs(high) * 0.05)
            plt.ylim(max(0.0, low - pad) if low >= 0 else low - pad, high + pad)
        else:
            plt.ylim(0, 1)
            note = self._empty_note if not points else "no numeric readings in this range"
            plt.text(note, (start_ms + end_ms) / 2000, 0.5, alignment="center")
        return super().render()
