"""Server-rendered charts: a temperature history as SVG polyline points and its range; bars for counts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime


def sparkline_points(history: Sequence[tuple[datetime, float]], width: int = 120, height: int = 30,
                     pad: float = 2.0) -> str:
    """Points for an SVG polyline, oldest at the left, scaled to the box; '' below two readings."""
    if len(history) < 2:
        return ""
    times = [moment.timestamp() for moment, _ in history]
    values = [value for _, value in history]
    t0, t1 = min(times), max(times)
    low, high = min(values), max(values)
    span_t = (t1 - t0) or 1.0
    span_v = (high - low) or 1.0
    points = []
    for moment, value in zip(times, values, strict=True):
        x = pad + (moment - t0) / span_t * (width - 2 * pad)
        y = height - pad - (value - low) / span_v * (height - 2 * pad)
        points.append(f"{x:.1f},{y:.1f}")
    return " ".join(points)


def value_range(history: Sequence[tuple[datetime, float]], decimals: int) -> str:
    """What the line spans, as a person reads it: '12.3' for one reading, low and high (en dash) for more."""
    if not history:
        return ""
    values = [value for _, value in history]
    low, high = min(values), max(values)
    return f"{low:.{decimals}f}" if low == high else f"{low:.{decimals}f} \u2013 {high:.{decimals}f}"


def bar_heights(values: Sequence[int], height: int = 30) -> list[int]:
    """Each value as a bar's height in a box `height` tall, the largest filling it (all 0 when none is above 0)."""
    top = max(values, default=0)
    return [round(value / top * height) if top else 0 for value in values]
