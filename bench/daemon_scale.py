"""The whole daemon at scale: memory and cycle time at 10,000 and 100,000 workloads.

    python bench/daemon_scale.py [--workloads 10000,100000] [--cycles 40] [--pods 5]

Each size runs in its own process, pinned to one core with one BLAS thread, so that its
peak memory (ru_maxrss) is its own. The process builds the daemon as ``healer run`` does
(the default detector with the shape stage, the store on SQLite, the playbooks, dry-run
mode) behind a synthetic metrics source: every workload's seven signals follow a daily
cycle with noise, one new 30 s sample per cycle over the daemon's one-hour window, the
frame a view of one preallocated array (the same memory ``PrometheusSource`` holds for
its window).

The shape stage is measured warm, as in a daemon's second week: after the first cycle,
every array of its state is written once (so its pages are resident, as they are once a
week of history has filled them) and every series is marked as holding a full history,
so every bucket closing does the full discord search. The timed cycles cross several
5-minute bucket closings (one cycle in ten at a 30 s interval), which is why the 90th
percentile is reported beside the median. Beside the wall time of a cycle, its CPU time
(the process's), which other work on the machine inflates less. The first cycle, not
timed, also compiles the shape stage's search (``healer/detect/discord_scan.py``).

With ``--pods N`` (5 by default; 0 for none) the source also serves the per-pod view
(``PodSource``) of N pods a workload, which the daemon reads for the workloads it
diagnoses in a cycle, as with Prometheus; beside the cycle, the robust z-score of every
pod of every workload at once (``diagnose.outliers.find``) is timed, the cost if the
whole cluster were diagnosed in one cycle.

Targets (issue 14): the whole daemon under 1.5 GB at 10,000 workloads, every cycle (the
90th percentile too) under 1 s there, and under 5 s at 100,000 workloads on one core.
The shape stage keeps about 16 kB a scored series (six a workload): 100,000 workloads
take about 11 GB, so the default sizes need a machine with that much free; the cost of a
cycle is linear in the workloads, and ``--workloads 50000`` measures it in half of that.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import tempfile
import time
from collections.abc import Collection, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from healer.audit.store import AuditStore
from healer.compose import build_loop
from healer.config import Settings
from healer.decide import load_playbooks
from healer.detect.univariate import PAST_BLOCK_ROWS
from healer.diagnose.outliers import find
from healer.types import (
    POD_SIGNALS,
    ActionRecord,
    ActionStatus,
    Frame,
    Mode,
    Plan,
    PodFrame,
    Revision,
    Signal,
    WorkloadRef,
    WorkloadState,
)

REPO = Path(__file__).resolve().parent.parent
STEP_S = 30.0
START = datetime(2026, 3, 2, tzinfo=UTC)
TARGET_RSS_GB_10K = 1.5
TARGET_P90_S_10K = 1.0
TARGET_P90_S_100K = 5.0


class SyntheticSource:
    """Daily cycles with noise for every workload and signal, one new sample per cycle."""

    def __init__(self, workloads: int, window_s: float, cycles: int) -> None:
        self.window = int(window_s // STEP_S)
        steps = self.window + cycles + 1
        rng = np.random.default_rng(0)
        self.workloads = tuple(
            WorkloadRef(f"ns{i % 100}", "Deployment", f"svc{i}") for i in range(workloads)
        )
        self.signals = tuple(Signal)
        t = np.arange(steps, dtype=np.float64) * STEP_S
        day = 1.0 + 0.3 * np.sin(2 * np.pi * t / 86_400.0)
        level = rng.uniform(0.2, 0.8, size=(workloads, len(self.signals), 1))
        values = rng.standard_normal((workloads, len(self.signals), steps))
        values *= 0.03
        values += day
        values *= level
        self.values: NDArray[np.float64] = values
        self.timestamps = START.timestamp() + t
        self.served = 0

    @property
    def nbytes(self) -> int:
        return int(self.values.nbytes)

    def fetch(self, *, until: datetime, window_s: float) -> Frame:
        end = self.window + self.served
        # The first frame only its newest samples: the timed cycles do not depend on how
        # the state got there (it is overwritten as a week's), and the whole hour would
        # cost the shape search of 12 buckets of every series (minutes at 100,000).
        begin = end - self.window if self.served else end - 2
        self.served += 1
        return Frame(
            self.timestamps[begin:end], self.workloads, self.signals, self.values[..., begin:end]
        )


class SyntheticPodSource(SyntheticSource):
    """The same, with ``pods`` pods a workload whose values vary around their workload's."""

    def __init__(self, workloads: int, window_s: float, cycles: int, pods: int) -> None:
        super().__init__(workloads, window_s, cycles)
        rng = np.random.default_rng(2)
        self.pods = pods
        self.pod_values = rng.uniform(0.2, 0.8, size=(workloads, 1, len(POD_SIGNALS)))
        self.pod_values = self.pod_values * rng.normal(1.0, 0.03, (workloads, pods, 1))
        self.asked: list[int] = []
        """How many workloads each fetch_pods asked for."""

    @property
    def nbytes(self) -> int:
        return int(self.values.nbytes + self.pod_values.nbytes)

    def fetch_pods(self, *, until: datetime, workloads: Collection[WorkloadRef]) -> PodFrame:
        rows = [int(w.name.removeprefix("svc")) for w in workloads]
        self.asked.append(len(rows))
        return self.frame_of(rows, until.timestamp())

    def frame_of(self, rows: list[int], at: float) -> PodFrame:
        count = len(rows) * self.pods
        return PodFrame(
            at=at,
            workloads=tuple(self.workloads[r] for r in rows),
            owner=np.repeat(np.arange(len(rows), dtype=np.int64), self.pods),
            pods=tuple(f"{self.workloads[r].name}-{p}" for r in rows for p in range(self.pods)),
            ready=np.ones(count, dtype=bool),
            signals=POD_SIGNALS,
            values=self.pod_values[rows].reshape(count, len(POD_SIGNALS)),
            memory_slope=np.zeros(count),
        )


class DryRunActuator:
    """What the cluster would say of every workload; actions are validated, never applied."""

    def read_state(self, workload: WorkloadRef) -> WorkloadState:
        rev = Revision(2, f"{workload.name}-b", START - timedelta(days=3), ("img:2",))
        old = Revision(1, f"{workload.name}-a", START - timedelta(days=9), ("img:1",))
        return WorkloadState(workload, 3, 3, 3, 3, 2, 2, False, (rev, old))

    def apply(self, plan: Plan, *, now: datetime) -> ActionRecord:
        status = ActionStatus.DRY_RUN if plan.mode == Mode.DRY_RUN else ActionStatus.SUCCEEDED
        return ActionRecord(plan.action, plan.workload, {"verb": "PATCH"}, status, now, now)

    def already_applied(self, intent: ActionRecord) -> bool:
        return False


def arrays_of(obj: object, depth: int = 0) -> Iterator[NDArray[np.generic]]:
    """Every numpy array an object holds, through attributes, lists and dicts."""
    if isinstance(obj, np.ndarray):
        yield obj
        return
    if depth > 4:
        return
    if isinstance(obj, list | tuple):
        for item in obj:
            yield from arrays_of(item, depth + 1)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from arrays_of(item, depth + 1)
    elif hasattr(obj, "__dict__") and type(obj).__module__.startswith("healer."):
        for item in vars(obj).values():
            yield from arrays_of(item, depth + 1)


def warm_shape_state(detector: object) -> int:
    """Make the shape stage's state resident and full, as after a week; its bytes."""
    stage = getattr(detector, "stage_", None)
    if stage is None:
        return 0
    rng = np.random.default_rng(1)
    total = 0
    for array in arrays_of(stage):
        total += array.nbytes
        if array.dtype.kind == "f" and array.ndim == 2:
            # A thousand series at a time: a whole-array temporary would count in the
            # peak RSS as if the daemon had held it.
            for lo in range(0, len(array), 1_024):
                part = array[lo : lo + 1_024]
                part[...] = rng.random(part.shape)
    rows = getattr(stage, "rows_", None)
    if rows is not None:
        rows[:] = 10 * 2_160
    squares = getattr(stage, "sum_squares_", None)
    if squares is not None and rows is not None:
        squares[:] = rows
    # Every block of the past full of learned distances.
    for counts in getattr(stage, "block_count_", []):
        counts[:] = PAST_BLOCK_ROWS
    return total


def rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def run_size(workloads: int, cycles: int, pods: int = 0) -> dict[str, float]:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    settings = Settings()
    source: SyntheticSource = (
        SyntheticPodSource(workloads, settings.daemon.window_s, cycles + 1, pods)
        if pods
        else SyntheticSource(workloads, settings.daemon.window_s, cycles + 1)
    )
    with tempfile.TemporaryDirectory() as folder, threadpool_limits(limits=1):
        store = AuditStore(f"sqlite:///{folder}/bench.db")
        healer = build_loop(
            settings,
            source=source,
            actuator=DryRunActuator(),
            store=store,
            playbooks=load_playbooks(REPO / "playbooks"),
        )
        now = START + timedelta(seconds=settings.daemon.window_s)
        healer.cycle(now)
        shape_bytes = warm_shape_state(healer.detector)
        took, cpu = [], []
        for _ in range(cycles):
            now += timedelta(seconds=STEP_S)
            started, started_cpu = time.perf_counter(), time.process_time()
            healer.cycle(now)
            took.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
        store.close()
    whole_s, asked = 0.0, 0.0
    if isinstance(source, SyntheticPodSource):
        everyone = source.frame_of(list(range(workloads)), now.timestamp())
        spent = []
        for _ in range(5):
            started = time.perf_counter()
            find(everyone)
            spent.append(time.perf_counter() - started)
        whole_s = float(np.median(spent))
        asked = float(np.mean(source.asked)) if source.asked else 0.0
    return {
        "median_s": float(np.median(took)),
        "p90_s": float(np.percentile(took, 90)),
        "max_s": float(np.max(took)),
        "median_cpu_s": float(np.median(cpu)),
        "p90_cpu_s": float(np.percentile(cpu, 90)),
        "rss_gb": rss_gb(),
        "source_gb": source.nbytes / 1e9,
        "shape_gb": shape_bytes / 1e9,
        "findings": float(healer.vitals.findings),
        "pods_asked": asked,
        "find_all_s": whole_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workloads", default="10000,100000")
    parser.add_argument("--cycles", type=int, default=40)
    parser.add_argument("--pods", type=int, default=5, help="pods a workload; 0: no pod view")
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    for size in (int(s) for s in args.workloads.split(",")):
        with context.Pool(1) as pool:
            r = pool.apply(run_size, (size, args.cycles, args.pods))
        daemon_gb = r["rss_gb"] - r["source_gb"]
        print(
            f"daemon, {size:,} workloads x {len(Signal)} signals, {args.cycles} cycles on one "
            f"core: median {r['median_s']:.2f} s, p90 {r['p90_s']:.2f} s, max "
            f"{r['max_s']:.2f} s (CPU: median {r['median_cpu_s']:.2f} s, p90 "
            f"{r['p90_cpu_s']:.2f} s); peak RSS {r['rss_gb']:.2f} GB ({daemon_gb:.2f} GB without "
            f"the synthetic source's {r['source_gb']:.2f} GB window, shape stage "
            f"{r['shape_gb']:.2f} GB); {r['findings']:.0f} findings"
        )
        if args.pods:
            print(
                f"  pod view: {args.pods} pods a workload, {r['pods_asked']:.1f} workloads "
                f"read a cycle on average; every pod of every workload judged at once in "
                f"{r['find_all_s'] * 1000:.0f} ms"
            )
    print(
        f"targets: under {TARGET_RSS_GB_10K} GB and p90 under {TARGET_P90_S_10K} s at "
        f"10,000 workloads; p90 under {TARGET_P90_S_100K} s at 100,000"
    )


if __name__ == "__main__":
    main()
