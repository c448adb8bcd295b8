"""Inline SVG charts for the review page, drawn on the server.

An incident's page has one chart per signal its finding names, over the whole story:
the series its finding kept (the hour before it) joined to the series its outcome kept
(the hour before the outcome), the learned baseline dashed, the anomalous stretch
shaded, and a marker for each step that happened: onset, finding, action, review,
rollout complete, alert, release, outcome, acknowledgement. The overview has small
horizontal bars. Plain SVG text in the page: no JavaScript, no chart library, nothing to
build; colours come from CSS classes, so dark mode restyles them.

Decisions: while an incident is open the chart's time axis runs to its latest step,
past the series kept with the finding, so a marker for an action taken since shows
at once (the page updates live); the series fills in once the outcome is recorded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

from healer.audit.tables import StepKind
from healer.audit.views import IncidentDetail, StoredRelease, TimelineStep
from healer.types import JsonObject, JsonValue

WIDTH, HEIGHT, PAD = 640, 110, 4
"""Pixels; the chart scales with the page (viewBox), these only fix its aspect."""
LABEL_ROOM = 14
"""Pixels above the plot for the signal's name and range."""


@dataclass(frozen=True)
class Marker:
    at: float
    """UNIX seconds."""
    label: str
    css: str
    """Class of the marker's line: its colour in light and dark mode."""


def _numbers(values: JsonValue) -> list[float | None]:
    if not isinstance(values, list):
        return []
    out: list[float | None] = []
    for v in values:
        ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        out.append(float(v) if ok else None)  # type: ignore[arg-type] # checked just above
    return out


def _epoch(value: JsonValue | datetime) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def story_charts(detail: IncidentDetail) -> list[tuple[str, str]]:
    """(signal, svg) for each signal the incident's first finding names and kept a
    series of, over every series its steps kept, with the story's markers."""
    findings = [s for s in detail.timeline if s.kind == StepKind.FINDING]
    if not findings:
        return []
    first = findings[0].data
    signals = first.get("signals")
    if not isinstance(signals, list):
        return []
    kept = [s.data.get("series") for s in detail.timeline]
    series = [s for s in kept if isinstance(s, dict)]
    markers = story_markers(detail)
    onset, found = _epoch(first.get("onset")), _epoch(first.get("at"))
    charts = []
    for item in signals:
        if not isinstance(item, dict) or not isinstance(item.get("signal"), str):
            continue
        name = str(item["signal"])
        points = _joined(series, name)
        if points:
            baseline = _numbers([item.get("baseline")])[0]
            charts.append((name, _chart(name, points, baseline, onset, found, markers)))
    return charts


def _joined(series: Sequence[JsonObject], name: str) -> list[tuple[float, float]]:
    """One signal's samples from every kept series, by time, each time once."""
    by_time: dict[float, float] = {}
    for kept in series:
        times, values = _numbers(kept.get("t")), _numbers(kept.get(name))
        if len(times) != len(values):
            continue
        for t, v in zip(times, values, strict=True):
            if t is not None and v is not None:
                by_time[t] = v
    return sorted(by_time.items())


def story_markers(detail: IncidentDetail) -> list[Marker]:
    """A marker for each step after the first finding, and for each alert joined."""
    markers = []
    seen_finding = False
    for step in detail.timeline:
        if step.kind == StepKind.FINDING and not seen_finding:
            seen_finding = True
            continue
        marker = _step_marker(step)
        if marker is not None:
            markers.append(marker)
    for alert in detail.alerts:
        name = alert.alert.name
        markers.append(Marker(alert.alert.starts_at.timestamp(), f"alert {name}", "m-alert"))
    for stored in detail.releases:
        markers.append(Marker(stored.release.at.timestamp(), release_label(stored), "m-release"))
    return markers


def release_label(stored: StoredRelease) -> str:
    """``release v2 (shop/cart:2) by ada via gitlab``: what a release marker says."""
    r = stored.release
    what = r.revision[:12] or r.image
    image = f" ({r.image})" if r.image and r.image != what else ""
    by = f" by {r.author}" if r.author else ""
    return f"release {what}{image}{by} via {r.source.value}"


def release_steps(detail: IncidentDetail) -> list[TimelineStep]:
    """The incident's steps with its workload's releases among them, each before the
    first step recorded after it (the steps keep the order they were recorded in)."""
    steps = list(detail.timeline)
    for stored in sorted(detail.releases, key=lambda s: s.release.at, reverse=True):
        r = stored.release
        data: JsonObject = {
            "source": r.source.value,
            "revision": r.revision,
            "image": r.image,
            "commit": r.commit,
            "author": r.author,
            "pipeline": r.pipeline,
            "pipeline_url": r.pipeline_url,
            "environment": r.environment,
            "status": r.status,
            "known": stored.known,
        }
        step = TimelineStep(kind=StepKind.RELEASE, at=r.at, data=data, actor=stored.sender)
        later = next((i for i, s in enumerate(steps) if s.at > r.at), len(steps))
        steps.insert(later, step)
    return steps


def _step_marker(step: TimelineStep) -> Marker | None:
    at, d = step.at.timestamp(), step.data
    match step.kind:
        case StepKind.ACTION:
            label = f"{d.get('kind')} {d.get('status')}"
            return Marker(at, label, "m-action")
        case StepKind.REVIEW:
            return Marker(at, f"{d.get('decision')} by {step.actor}", "m-review")
        case StepKind.OUTCOME:
            kind = str(d.get("kind"))
            return Marker(at, kind, "m-healed" if kind == "healed" else "m-escalated")
        case StepKind.ACKNOWLEDGED:
            return Marker(at, f"acknowledged by {step.actor}", "m-review")
        case StepKind.ROLLOUT:
            return Marker(at, str(d.get("detail") or "rollout complete"), "m-rollout")
        case _:
            return None


def _chart(
    name: str,
    points: Sequence[tuple[float, float]],
    baseline: float | None,
    onset: float | None,
    found: float | None,
    markers: Sequence[Marker],
) -> str:
    times = [t for t, _ in points] + [m.at for m in markers]
    times += [t for t in (onset, found) if t is not None]
    t0, t1 = min(times), max(times)
    ys = [v for _, v in points] + ([baseline] if baseline is not None else [])
    lo, hi = min(ys), max(ys)
    span_t, span_v = (t1 - t0) or 1.0, (hi - lo) or 1.0
    top = LABEL_ROOM

    def x(t: float) -> float:
        return PAD + (t - t0) / span_t * (WIDTH - 2 * PAD)

    def y(v: float) -> float:
        return HEIGHT - PAD - (v - lo) / span_v * (HEIGHT - PAD - top)

    line = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in points)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(name)} over the incident" xmlns="http://www.w3.org/2000/svg">',
        f'<rect class="c-bg" width="{WIDTH}" height="{HEIGHT}"/>',
    ]
    if onset is not None:
        end = x(found) if found is not None else x(t1)
        parts.append(
            f'<rect class="c-anomalous" x="{x(onset):.1f}" y="{top}" '
            f'width="{max(end - x(onset), 1):.1f}" height="{HEIGHT - top}">'
            "<title>from the anomaly's onset to the finding</title></rect>"
        )
    if baseline is not None:
        parts.append(
            f'<line class="c-baseline" x1="{PAD}" x2="{WIDTH - PAD}" y1="{y(baseline):.1f}" '
            f'y2="{y(baseline):.1f}"><title>baseline</title></line>'
        )
    parts.append(f'<polyline class="c-signal" points="{line}"/>')
    named = [Marker(found, "finding", "m-finding")] if found is not None else []
    for marker in [*named, *markers]:
        parts.append(
            f'<line class="marker {marker.css}" x1="{x(marker.at):.1f}" x2="{x(marker.at):.1f}" '
            f'y1="{top}" y2="{HEIGHT}"><title>{escape(marker.label)}</title></line>'
        )
    parts.append(
        f'<text class="c-text" x="{PAD + 2}" y="11" font-size="11">{escape(name)} '
        f"{lo:.3g}–{hi:.3g}</text></svg>"
    )
    return "".join(parts)


def bars(rows: Sequence[tuple[str, Sequence[tuple[str, int]]]], *, label: str) -> str:
    """Horizontal stacked bars: one row per name, each a sequence of (css class, count).

    Every row shares one scale (the largest total), so rows compare at a glance; each
    segment has a tooltip with its count, and the total is written at the bar's end."""
    if not rows:
        return ""
    row_h, name_w, count_w = 18, 130, 40
    largest = max(sum(n for _, n in segments) for _, segments in rows) or 1
    height = row_h * len(rows) + 2
    room = WIDTH - name_w - count_w
    parts = [
        f'<svg class="bars" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for i, (name, segments) in enumerate(rows):
        top = i * row_h + 1
        parts.append(
            f'<text class="c-text" x="0" y="{top + 13}" font-size="12">{escape(name)}</text>'
        )
        left = float(name_w)
        for css, count in segments:
            width = count / largest * room
            if count:
                parts.append(
                    f'<rect class="{escape(css)}" x="{left:.1f}" y="{top + 2}" '
                    f'width="{max(width, 1.5):.1f}" height="{row_h - 5}">'
                    f"<title>{escape(css.removeprefix('b-'))}: {count}</title></rect>"
                )
            left += width
        total = sum(n for _, n in segments)
        parts.append(
            f'<text class="c-text" x="{left + 4:.1f}" y="{top + 13}" font-size="12">{total}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
