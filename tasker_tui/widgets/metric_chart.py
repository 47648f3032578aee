"""A line chart of one metric over a time range (textual-plotext), drawn from points it is given."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

from textual_plotext import PlotextPlot

Bucket = tuple[int, float, float, float]


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
        plt.title(f"{self.title} ({self.unit})")
        plt.xlim(start_ms / 1000, end_ms / 1000)
        width = max(10, self.size.width)
        positions, labels = tick_labels(start_ms, end_ms, max(2, min(6, width // 14)))
        plt.xticks(positions, labels)
        points = self._points
        if points:
            xs = [p[0] / 1000 for p in points]
            plt.plot(xs, [p[2] for p in points], marker="braille", color=self.color)
            if any(p[3] - p[2] > 1e-9 for p in points) and len(points) < 2000:
                plt.plot(xs, [p[3] for p in points], marker="braille", color="gray")
            low = min(p[1] for p in points)
            high = max(p[3] for p in points)
            pad = (high - low) * 0.1 or max(1.0, abs(high) * 0.05)
            plt.ylim(max(0.0, low - pad), high + pad)
        else:
            plt.ylim(0, 1)
            plt.text(self._empty_note, (start_ms + end_ms) / 2000, 0.5, alignment="center")
        return super().render()
