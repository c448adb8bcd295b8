"""Warming the daemon's detector from the history Prometheus holds, at start-up.

``healer run`` calls ``warm_from_prometheus`` each time it takes the lead (a fresh
detector would otherwise judge with half an hour of history, and the shape stage would
take over only after 50 hours). It reads what ``detect.warm.wanted`` asks for in
chunks, oldest first, one log line per chunk, and hands the frames to
``detect.warm.warm``. A chunk spans at most ``WARM_CHUNK_POINTS`` steps, fewer when
the workloads are many: ``WARM_CHUNK_VALUES`` bounds what one chunk holds, and the
signals are read one at a time, so that warming at 10,000 workloads does not take
gigabytes of response objects.

Chunks are read one ahead of learning, in a thread (``_ReadAhead``): the shape stage
learns a day of buckets while Prometheus answers for the next, and only one chunk waits
at a time.

Decisions: this module joins two steps (``collect`` reads, ``detect`` learns), so it
sits beside the daemon, which joins them every cycle, and not in either step.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog

from healer.collect.prometheus import PrometheusSource, RangeClient
from healer.config import DetectorSettings, PrometheusSettings
from healer.detect.warm import Warmable, WarmReport, wanted, warm
from healer.errors import CollectError
from healer.types import Frame

log = structlog.get_logger("healer.warmup")

WARM_CHUNK_POINTS = 288
"""Steps per range query at most: a day of 5-minute buckets, so a week is read in a
handful of queries per signal, each far under Prometheus' limit of 11,000 points per
series, with a progress line after each."""

WARM_CHUNK_VALUES = 2_000_000
"""Values (workloads x signals x steps) one chunk reads at most, over all its signals.
A value arrives as a ``[timestamp, "value"]`` pair of Python objects, about 150 bytes,
and a chunk's signals are all held until its frame is built: about 300 MB at this
bound. At 1,000 workloads and 7 signals a chunk still spans almost a day of buckets
(285 steps); at 10,000, 28 steps (each query 280,000 points), so a week of buckets
takes 72 chunks."""


@dataclass
class _Reading:
    """What the chunks of both parts share: the failure that stops them all, and the
    workloads the last chunk held, which size the next one."""

    max_values: int
    failed: list[str] = field(default_factory=list)
    workloads: int | None = None
    steps: int = 0

    def next_steps(self, signals: int) -> int:
        """Steps for the next chunk: as many as ``max_values`` allows for the workloads
        last seen. Before any workload is seen the count is unknown: a first chunk of one
        step, doubling while chunks come back empty (a history shorter than wanted)."""
        if not self.workloads:
            self.steps = min(WARM_CHUNK_POINTS, max(1, 2 * self.steps))
        else:
            fit = self.max_values // (self.workloads * max(1, signals))
            self.steps = min(WARM_CHUNK_POINTS, max(1, fit))
        return self.steps


def warm_from_prometheus(
    detector: Warmable,
    *,
    prometheus: PrometheusSettings,
    settings: DetectorSettings,
    now: datetime,
    client: RangeClient | None = None,
    max_values: int = WARM_CHUNK_VALUES,
) -> WarmReport:
    """Warm ``detector`` with the history Prometheus holds before ``now``.

    The past is read at the shape bucket step, each rate over the whole bucket (its
    mean, which is what the shape stage keeps of it); the recent part at the scrape
    step with the configured queries. Prometheus holding less history than wanted, or
    failing part way, is not an error: the detector learns from what was read, and one
    log line (a warning then) says how much. ``client`` replaces the HTTP client built
    from the settings (the daemon passes its own; tests a fake).

    Memory stays bounded whatever the number of workloads: signals are read one at a
    time, and each chunk spans as many steps as ``max_values`` values allow for the
    workloads the chunk before it held.
    """
    span = wanted(settings)
    end_s = now.timestamp()
    bucket_s = max(1, round(span.bucket_s))
    one_at_a_time = prometheus.model_copy(update={"concurrency": 1})
    past_settings = one_at_a_time.model_copy(
        update={"step_s": bucket_s, "rate_window_s": max(prometheus.rate_window_s, bucket_s)}
    )
    past = PrometheusSource.from_settings(past_settings, client=client)
    recent = PrometheusSource.from_settings(one_at_a_time, client=past.client)
    reading = _Reading(max_values=max_values)
    ahead = _ReadAhead(
        _chunks(past, end_s - span.past_s, end_s - span.recent_s, "past", reading),
        _chunks(recent, end_s - span.recent_s, end_s, "recent", reading),
    )
    try:
        report = warm(detector, past=ahead.part(0), recent=ahead.part(1), wanted_s=span.total_s)
    finally:
        ahead.close()
    failed = reading.failed
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
    source: PrometheusSource, start_s: float, end_s: float, part: str, reading: _Reading
) -> Iterator[Frame]:
    """Frames of ``(start_s, end_s]`` at the source's step, oldest first, in chunks
    sized by ``reading``.

    Stops at the first chunk that fails (noted in ``reading.failed``), and reads nothing
    once an earlier part failed: an unreachable Prometheus would fail every further
    chunk, each after its retries.
    """
    chunk = 0
    from_s = start_s
    while from_s < end_s and not reading.failed:
        chunk += 1
        until_s = min(from_s + source.step_s * reading.next_steps(len(source.signals)), end_s)
        until = datetime.fromtimestamp(until_s, UTC)
        source.reset()
        try:
            frame = source.fetch(until=until, window_s=until_s - from_s)
        except CollectError as exc:
            reading.failed.append(str(exc))
            log.warning("warm_read_failed", part=part, chunk=chunk, error=str(exc))
            return
        reading.workloads = len(frame.workloads)
        log.info(
            "warm_read",
            part=part,
            chunk=chunk,
            until=until.isoformat(),
            workloads=len(frame.workloads),
            steps=len(frame.timestamps),
        )
        yield frame
        from_s = until_s


_END = object()
"""Put after the last chunk of a part."""


class _ReadAhead:
    """The chunks of the parts, read in order by one thread, one chunk ahead of the
    learning that consumes them (``part(0)`` to its end, then ``part(1)``).

    Reading and learning then overlap: Prometheus and the decoding of its answers on
    one side, the shape stage's matrix products (which release the GIL) on the other.
    A failure while reading is raised where the chunk would have been consumed.
    """

    def __init__(self, *parts: Iterator[Frame]) -> None:
        self._queue: queue.Queue[object] = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._read, args=(parts,), name="healer-warm-read", daemon=True
        )
        self._thread.start()

    def part(self, index: int) -> Iterator[Frame]:
        """The frames of part ``index``; the parts before it must have been consumed."""
        while True:
            item = self._queue.get()
            if isinstance(item, BaseException):
                raise item
            if item is _END:
                return
            assert isinstance(item, Frame)
            yield item

    def close(self) -> None:
        """Stop reading (learning is done, or stopped early). The thread ends by itself
        once its query in flight returns; nothing waits for it."""
        self._stop.set()

    def _read(self, parts: tuple[Iterator[Frame], ...]) -> None:
        try:
            for part in parts:
                for frame in part:
                    if not self._put(frame):
                        return
                self._put(_END)
        except BaseException as exc:  # raised in the consumer, where it belongs
            self._put(exc)

    def _put(self, item: object) -> bool:
        """Hand ``item`` over once the consumer has room; False once stopped."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False
