"""Warming the daemon's detector from the history Prometheus holds, at start-up.

``healer run`` calls ``warm_from_prometheus`` each time it takes the lead (a fresh
detector would otherwise judge with half an hour of history, and the shape stage would
take over only after 50 hours). It reads what ``detect.warm.wanted`` asks for, in
range queries of ``WARM_CHUNK_POINTS`` steps, oldest first, one log line per chunk, and
hands the frames to ``detect.warm.warm``.

Decisions: this module joins two steps (``collect`` reads, ``detect`` learns), so it
sits beside the daemon, which joins them every cycle, and not in either step.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import structlog

from healer.collect.prometheus import PrometheusSource, RangeClient
from healer.config import DetectorSettings, PrometheusSettings
from healer.detect.warm import Warmable, WarmReport, wanted, warm
from healer.errors import CollectError
from healer.types import Frame

log = structlog.get_logger("healer.warmup")

WARM_CHUNK_POINTS = 288
"""Steps per range query: a day of 5-minute buckets, so a week is read in a handful of
queries per signal, each far under Prometheus' limit of 11,000 points per series, with
a progress line after each."""


def warm_from_prometheus(
    detector: Warmable,
    *,
    prometheus: PrometheusSettings,
    settings: DetectorSettings,
    now: datetime,
    client: RangeClient | None = None,
) -> WarmReport:
    """Warm ``detector`` with the history Prometheus holds before ``now``.

    The past is read at the shape bucket step, each rate over the whole bucket (its
    mean, which is what the shape stage keeps of it); the recent part at the scrape
    step with the configured queries. Prometheus holding less history than wanted, or
    failing part way, is not an error: the detector learns from what was read, and one
    log line (a warning then) says how much. ``client`` replaces the HTTP client built
    from the settings (the daemon passes its own; tests a fake).
    """
    span = wanted(settings)
    end_s = now.timestamp()
    bucket_s = max(1, round(span.bucket_s))
    past_settings = prometheus.model_copy(
        update={"step_s": bucket_s, "rate_window_s": max(prometheus.rate_window_s, bucket_s)}
    )
    past = PrometheusSource.from_settings(past_settings, client=client)
    recent = PrometheusSource.from_settings(prometheus, client=past.client)
    failed: list[str] = []
    report = warm(
        detector,
        past=_chunks(past, end_s - span.past_s, end_s - span.recent_s, "past", failed),
        recent=_chunks(recent, end_s - span.recent_s, end_s, "recent", failed),
        wanted_s=span.total_s,
    )
    event = log.warning if report.short or failed else log.info
    event(
        "warmed",
        history_h=round(report.history_s / 3600, 1),
        wanted_h=round(report.wanted_s / 3600, 1),
        first=report.as_json()["first"],
        workloads=report.workloads,
        seconds=round(report.seconds, 1),
        error=failed[0] if failed else None,
    )
    return report


def _chunks(
    source: PrometheusSource, start_s: float, end_s: float, part: str, failed: list[str]
) -> Iterator[Frame]:
    """Frames of ``(start_s, end_s]`` at the source's step, oldest first, in chunks.

    Stops at the first chunk that fails (noted in ``failed``), and reads nothing once
    an earlier part failed: an unreachable Prometheus would fail every further chunk,
    each after its retries.
    """
    if end_s <= start_s or failed:
        return
    chunk_s = source.step_s * WARM_CHUNK_POINTS
    count = max(1, int(-(-(end_s - start_s) // chunk_s)))
    for k in range(count):
        until_s = min(start_s + (k + 1) * chunk_s, end_s)
        until = datetime.fromtimestamp(until_s, UTC)
        source.reset()
        try:
            frame = source.fetch(until=until, window_s=until_s - (start_s + k * chunk_s))
        except CollectError as exc:
            failed.append(str(exc))
            log.warning("warm_read_failed", part=part, chunk=k + 1, of=count, error=str(exc))
            return
        log.info(
            "warm_read",
            part=part,
            chunk=k + 1,
            of=count,
            until=until.isoformat(),
            workloads=len(frame.workloads),
            steps=len(frame.timestamps),
        )
        yield frame
