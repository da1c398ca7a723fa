"""Geometry of the server-rendered SVG charts. Colours come from CSS, so both themes work."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bar:
    label: str
    value: float  # 0..1 for accuracy, a count for reviews
    text: str  # what is written next to the bar (and read by screen readers)
    x: float
    y: float
    w: float
    h: float
    empty: bool = False


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    ticks: list[tuple[float, str]]  # (position, label) of the value axis
    max_value: float


def accuracy_bars(rows: list[tuple[str, int, int]], width: int = 340) -> Chart:
    """Horizontal bars, one per port: rows are (label, correct, answered)."""
    row_h, gap, left, right = 26, 8, 40, 92
    plot = width - left - right
    bars = []
    for i, (label, correct, answered) in enumerate(rows):
        share = correct / answered if answered else 0.0
        y = 8 + i * (row_h + gap)
        text = f"{round(share * 100)}% ({correct}/{answered})" if answered else "–"
        bars.append(Bar(label, share, text, left, y, plot * share, row_h, empty=not answered))
    height = 8 + len(rows) * (row_h + gap) + 18
    ticks = [(left + plot * f, f"{int(f * 100)}%") for f in (0, 0.5, 1)]
    return Chart(width, height, bars, ticks, 1.0)


def day_columns(rows: list[tuple[str, int, int]], width: int = 340, height: int = 170) -> Chart:
    """Vertical columns, one per day: rows are (YYYY-MM-DD, answers, correct)."""
    top, bottom, left, right = 12, 34, 30, 6
    plot_h = height - top - bottom
    plot_w = width - left - right
    peak = max([n for _, n, _ in rows] + [1])
    scale = _nice_max(peak)
    slot = plot_w / max(len(rows), 1)
    bars = []
    for i, (day, n, correct) in enumerate(rows):
        h = plot_h * n / scale
        x = left + i * slot + slot * 0.15
        bars.append(
            Bar(
                day[5:].replace("-", "/"),
                n,
                f"{day}: {n} ({correct})",
                x,
                top + plot_h - h,
                slot * 0.7,
                h,
                empty=n == 0,
            )
        )
    ticks = [(top + plot_h - plot_h * f, str(round(scale * f))) for f in (0, 0.5, 1)]
    return Chart(width, height, bars, ticks, scale)


def _nice_max(n: int) -> int:
    for step in (2, 4, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000):
        if n <= step:
            return step
    return ((n // 1000) + 1) * 1000
