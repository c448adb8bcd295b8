"""Where training history comes from: the simulator, Prometheus, or CSV files.

Each loader returns a ``detect.train.History``: a Frame of every workload's signals and
the windows whose truth is known. The simulator knows its faults, so its history comes
labelled (a fault's window runs from its start to its end, or to the end of the history
when nothing fixes it: the simulator is run without healer acting). Prometheus and CSV
history come unlabelled; operators' feedback labels them.

This module sits beside the harness, above the pipeline steps, because it joins two of
them (``collect`` reads Prometheus, ``detect`` trains) and drives the simulator.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from healer.config import PrometheusSettings
from healer.detect.framecsv import concat_frames, read_frame_csv
from healer.detect.train import History, LabelledWindow
from healer.errors import ConfigError
from healer.types import WorkloadRef

if TYPE_CHECKING:
    from healer.collect.prometheus import RangeClient

# Prometheus answers at most 11,000 points per series; six hours of 15 s steps is 1,440.
PROMETHEUS_CHUNK_S = 6 * 3600.0


def sim_history(scenario: str, *, duration_s: float, progress: bool = False) -> History:
    """Run a scenario for ``duration_s`` of virtual time, untouched, and return its metrics."""
    from rich.console import Console
    from rich.progress import Progress

    from healer.sim.cluster import Cluster
    from healer.sim.scenario import load_scenario
    from healer.sim.source import SimSource

    chosen = load_scenario(scenario)
    cluster = Cluster(chosen)
    steps = max(1, round(duration_s / chosen.step_s))
    with Progress(console=Console(stderr=True), disable=not progress, transient=True) as bar:
        task = bar.add_task(f"simulating {chosen.name}", total=steps)
        for _ in range(steps):
            cluster.advance(chosen.step_s)
            bar.advance(task)
    frame = SimSource(cluster).fetch(until=cluster.clock.now(), window_s=duration_s + 1.0)
    start_s, end_s = chosen.start.timestamp(), float(frame.timestamps[-1])
    windows = []
    refs = {f"{w.namespace}/{w.name}": w for w in cluster.workloads}
    for event in chosen.events:
        if event.expect == "none" or event.workload == "*":
            continue
        namespace, name = event.workload.split("/")
        begin = start_s + event.at_s
        if begin > end_s:
            continue
        end = start_s + event.end_s if event.duration_s else end_s
        ref = refs.get(event.workload, WorkloadRef(namespace, "Deployment", name))
        windows.append(LabelledWindow(ref, begin, min(end, end_s), anomalous=True))
    return History(frame, tuple(windows), source=f"sim:{chosen.name}")


def prometheus_history(
    settings: PrometheusSettings,
    *,
    start: datetime,
    end: datetime,
    progress: bool = False,
    client: RangeClient | None = None,
) -> History:
    """Every workload's signals from Prometheus between ``start`` and ``end``, in chunks.

    ``client`` replaces the HTTP client built from the settings (tests pass a fake).
    """
    from rich.console import Console
    from rich.progress import Progress

    from healer.collect.prometheus import PrometheusSource

    if settings.url is None:
        raise ConfigError("prometheus.url is not set; give --prometheus URL")
    if end <= start:
        raise ConfigError(f"the time range is empty: {start.isoformat()} .. {end.isoformat()}")
    source = PrometheusSource.from_settings(settings, client=client)
    total_s = (end - start).total_seconds()
    chunks = max(1, int(-(-total_s // PROMETHEUS_CHUNK_S)))
    frames = []
    with Progress(console=Console(stderr=True), disable=not progress, transient=True) as bar:
        task = bar.add_task("reading Prometheus", total=chunks)
        for k in range(chunks):
            until_s = min(start.timestamp() + (k + 1) * PROMETHEUS_CHUNK_S, end.timestamp())
            window_s = until_s - (start.timestamp() + k * PROMETHEUS_CHUNK_S)
            source.reset()
            frames.append(
                source.fetch(until=datetime.fromtimestamp(until_s, start.tzinfo), window_s=window_s)
            )
            bar.advance(task)
    return History(concat_frames(frames), source=settings.url)


def csv_history(paths: Sequence[Path]) -> History:
    """History from CSV files (``detect.framecsv`` format), joined into one Frame."""
    if not paths:
        raise ConfigError("no CSV file given")
    frame = concat_frames([read_frame_csv(p) for p in paths])
    return History(frame, source=",".join(str(p) for p in paths))
