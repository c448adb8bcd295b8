"""Inline SVG charts of an incident's signals, drawn on the server.

One small chart per deviating signal: the series over the hour before the finding, its
learned baseline dashed, the anomaly's onset and the finding marked. Plain SVG text in
the page: no JavaScript, no chart library, nothing to build.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from html import escape

from healer.types import JsonObject, JsonValue

WIDTH, HEIGHT, PAD = 640, 90, 4
"""Pixels; the chart scales with the page (viewBox), these only fix its aspect."""


def _numbers(values: JsonValue) -> list[float | None]:
    if not isinstance(values, list):
        return []
    out: list[float | None] = []
    for v in values:
        ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        out.append(float(v) if ok else None)  # type: ignore[arg-type] # checked just above
    return out


def signal_charts(finding: JsonObject) -> list[tuple[str, str]]:
    """(signal, svg) for each signal with a stored series in a finding step's data."""
    series = finding.get("series")
    signals = finding.get("signals")
    if not isinstance(series, dict) or not isinstance(signals, list):
        return []
    times = _numbers(series.get("t"))
    onset, at = _epoch(finding.get("onset")), _epoch(finding.get("at"))
    charts = []
    for item in signals:
        if not isinstance(item, dict) or not isinstance(item.get("signal"), str):
            continue
        name = str(item["signal"])
        values = _numbers(series.get(name))
        baseline = _numbers([item.get("baseline")])[0]
        if values and len(values) == len(times):
            charts.append((name, _chart(name, times, values, baseline, onset, at)))
    return charts


def _epoch(value: JsonValue) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _chart(
    name: str,
    times: Sequence[float | None],
    values: Sequence[float | None],
    baseline: float | None,
    onset: float | None,
    at: float | None,
) -> str:
    points = [(t, v) for t, v in zip(times, values, strict=True) if t is not None and v is not None]
    if not points:
        return ""
    t0, t1 = points[0][0], points[-1][0]
    ys = [v for _, v in points] + ([baseline] if baseline is not None else [])
    lo, hi = min(ys), max(ys)
    span_t, span_v = (t1 - t0) or 1.0, (hi - lo) or 1.0

    def x(t: float) -> float:
        return PAD + (t - t0) / span_t * (WIDTH - 2 * PAD)

    def y(v: float) -> float:
        return HEIGHT - PAD - (v - lo) / span_v * (HEIGHT - 2 * PAD)

    line = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in points)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(name)}" xmlns="http://www.w3.org/2000/svg">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#fafbfc"/>',
    ]
    if onset is not None and t0 <= onset <= t1:
        parts.append(
            f'<rect x="{x(onset):.1f}" y="0" width="{max(x(at or t1) - x(onset), 1):.1f}" '
            f'height="{HEIGHT}" fill="#fde8e6"><title>anomalous</title></rect>'
        )
    if baseline is not None:
        parts.append(
            f'<line x1="{PAD}" x2="{WIDTH - PAD}" y1="{y(baseline):.1f}" y2="{y(baseline):.1f}" '
            'stroke="#9aa5b1" stroke-dasharray="4 3"><title>baseline</title></line>'
        )
    parts.append(f'<polyline points="{line}" fill="none" stroke="#2357a6" stroke-width="1.5"/>')
    if at is not None and t0 <= at <= t1:
        parts.append(
            f'<line x1="{x(at):.1f}" x2="{x(at):.1f}" y1="0" y2="{HEIGHT}" stroke="#b3261e">'
            "<title>finding</title></line>"
        )
    parts.append(
        f'<text x="{PAD + 2}" y="12" font-size="11" fill="#1d2430">{escape(name)} '
        f"{lo:.3g}–{hi:.3g}</text></svg>"
    )
    return "".join(parts)
