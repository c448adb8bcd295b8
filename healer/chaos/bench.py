"""``healer bench chaos``: run the scenarios, seeds and contenders, then report.

Inputs are checked before anything runs (scenario names, output paths, playbooks), so a
mistake costs a one-line error, not minutes of simulation. Runs are independent: each
(scenario, seed) pair runs its three contenders in a worker process, ``jobs`` at a time.
Workers start with ``spawn``, which shares no threads or locks with the parent.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import statistics
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress, TimeElapsedColumn

from healer.chaos import report
from healer.chaos.contenders import (
    GITOPS_CONTENDERS,
    STARTS,
    Trace,
    Warmed,
    run_contender,
    warm_for,
)
from healer.chaos.score import records as score_records
from healer.config import Settings, load_settings
from healer.decide import load_playbooks
from healer.errors import ConfigError
from healer.logs import configure
from healer.sim.scenario import Scenario, builtin_names, load_scenario
from healer.types import JsonObject

EXCLUDED = (
    "large-cluster",
    "second-week",
)
"""Built-in scenarios left out of the default set: large-cluster measures scale;
second-week spends three days in quiet before its faults, which a cold run at the scrape
interval takes minutes of CPU per contender to reach (its test warms the detector on a
coarse twin of the cluster instead: tests/integration/test_loop_second_week.py).
gitops-bad-release and flux-bad-release are in: healer heals them through Git, and they
run a fifth contender, healer-undo, without the Git path (``GITOPS_CONTENDERS``)."""
AFTER_S = 5400.0
"""Each run lasts until this long after the scenario's last event: long enough for the
slowest contender to heal, or to show that it does not."""


WIDE = 150
"""Characters per line of the tables when stdout is not a terminal."""


def default_scenarios() -> list[str]:
    return [n for n in builtin_names() if n not in EXCLUDED]


def duration_s(scenario: Scenario) -> float:
    return max((e.end_s for e in scenario.events), default=0.0) + AFTER_S


def bench_settings(config: Path | None) -> Settings:
    """The daemon's settings as configured, in auto mode: nobody approves in a benchmark."""
    return load_settings(config, guards={"mode": "auto"})


@dataclass(frozen=True)
class BenchPlan:
    sources: list[str]
    """The scenario names (or files) as given."""
    scenarios: list[Scenario]
    seeds: int
    json_out: Path | None
    plots: Path | None
    config: Path | None
    start: str = "warm"
    """warm, cold or both: how healer's detector starts (``STARTS``)."""

    @property
    def contenders(self) -> tuple[str, ...]:
        return STARTS[self.start]


def check_inputs(
    names: Sequence[str] | None,
    *,
    seeds: int,
    json_out: Path | None,
    plots: Path | None,
    config: Path | None,
    start: str = "warm",
) -> BenchPlan:
    """Everything that can be wrong with the input, found before anything runs.

    Raises ConfigError naming the scenario, path or setting at fault.
    """
    if start not in STARTS:
        raise ConfigError(f"--start must be one of {', '.join(STARTS)}, not {start!r}")
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, not {seeds}")
    sources = list(names or default_scenarios())
    scenarios = [load_scenario(n) for n in sources]
    if json_out is not None:
        _check_writable_file(json_out, "--json")
    if plots is not None:
        _check_writable_dir(plots, "--plots")
    load_playbooks(bench_settings(config).playbooks_dir)
    return BenchPlan(sources, scenarios, seeds, json_out, plots, config, start)


def _check_writable_file(path: Path, option: str) -> None:
    existed = path.exists()
    try:
        with path.open("a"):
            pass
    except OSError as exc:
        raise ConfigError(f"{option} {path}: cannot write: {exc.strerror or exc}") from exc
    if not existed:
        path.unlink()


def _check_writable_dir(path: Path, option: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".healer-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"{option} {path}: cannot write: {exc.strerror or exc}") from exc


@dataclass
class SeedResult:
    scenario: str
    seed: int
    records: list[JsonObject]
    traces: dict[str, Trace] | None
    """Kept for the chart of the first seed only."""
    wall_s: dict[str, float]
    healer_cycle_s: float
    """Median wall-clock time of healer's cycle in this run."""
    warm_s: float = math.nan
    """Wall-clock time the scenario's quiet days took to learn (NaN: no warm healer)."""
    warm_wall_s: float = 0.0
    """Wall-clock time of the whole benchmark's warming phase, every scenario together."""


def run_seed(
    name: str,
    seed: int,
    config: Path | None,
    keep_traces: bool,
    contenders: Sequence[str] = STARTS["warm"],
    warmed: Warmed | None = None,
) -> SeedResult:
    """One scenario and seed under every contender; runs in a worker process."""
    scenario = load_scenario(name).model_copy(update={"seed": seed})
    settings = bench_settings(config)
    if scenario.gitops is not None:  # with the Git path and without it
        contenders = (*contenders, *(c for c in GITOPS_CONTENDERS if c not in contenders))
    traces = {
        c: run_contender(
            c, scenario, duration_s=duration_s(scenario), settings=settings, warmed=warmed
        )
        for c in contenders
    }
    healer = traces.get("healer") or traces["healer-cold"]
    warm = traces["healer"].warm if "healer" in traces else None
    return SeedResult(
        scenario.name,
        seed,
        score_records(scenario, seed, traces),
        traces if keep_traces else None,
        {c: t.wall_s for c, t in traces.items()},
        statistics.median(healer.cycle_s or [math.nan]),
        warm.seconds if warm is not None else math.nan,
    )


def _quiet() -> None:
    configure(level="error")


def run(plan: BenchPlan, *, jobs: int, progress_console: Console) -> list[SeedResult]:
    tasks = [
        (source, s, s.seed + i)
        for source, s in zip(plan.sources, plan.scenarios, strict=True)
        for i in range(plan.seeds)
    ]
    results: list[SeedResult] = []
    columns = (*Progress.get_default_columns()[:-1], MofNCompleteColumn(), TimeElapsedColumn())
    context = multiprocessing.get_context("spawn")
    with (
        Progress(*columns, console=progress_console, transient=True) as progress,
        ProcessPoolExecutor(jobs, mp_context=context, initializer=_quiet) as pool,
    ):
        began = time.perf_counter()
        warmed = _warm_all(plan, pool, progress) if "healer" in plan.contenders else {}
        warm_wall_s = time.perf_counter() - began
        bar = progress.add_task("chaos runs", total=len(tasks))
        futures = [
            pool.submit(
                run_seed,
                source,
                seed,
                plan.config,
                seed == s.seed,
                plan.contenders,
                warmed.get(source),
            )
            for source, s, seed in tasks
        ]
        for future in as_completed(futures):
            results.append(future.result())
            progress.advance(bar)
    order = {(s.name, seed): i for i, (_, s, seed) in enumerate(tasks)}
    for result in results:
        result.warm_wall_s = warm_wall_s
    return sorted(results, key=lambda r: order[(r.scenario, r.seed)])


def warm_scenario(name: str, config: Path | None) -> Warmed:
    """The warm healer's detector for a scenario, warmed on its quiet days; in a worker."""
    return warm_for(load_scenario(name), bench_settings(config))


def _warm_all(plan: BenchPlan, pool: ProcessPoolExecutor, progress: Progress) -> dict[str, Warmed]:
    """Each scenario's warmed detector, once for all its seeds, warmed in parallel."""
    bar = progress.add_task("warming detectors", total=len(plan.sources))
    futures = {pool.submit(warm_scenario, source, plan.config): source for source in plan.sources}
    out = {}
    for future in as_completed(futures):
        out[futures[future]] = future.result()
        progress.advance(bar)
    return out


def main(
    names: Sequence[str] | None,
    *,
    seeds: int,
    json_out: Path | None,
    plots: Path | None,
    config: Path | None,
    jobs: int | None,
    start: str = "warm",
) -> list[JsonObject]:
    plan = check_inputs(
        names, seeds=seeds, json_out=json_out, plots=plots, config=config, start=start
    )
    console, errors = Console(), Console(stderr=True)
    if not console.is_terminal:
        console = Console(width=WIDE)  # a file or a pipe: no wrapped cells
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(plan.scenarios) * seeds))
    started = time.perf_counter()
    results = run(plan, jobs=jobs, progress_console=errors)
    wall_s = time.perf_counter() - started
    records = [r for result in results for r in result.records]
    console.print(report.fault_table(records))
    console.print(report.class_table(records))
    runs = [w for result in results for w in result.wall_s.values()]
    warming = [r.warm_s for r in results if not math.isnan(r.warm_s)]
    ran = len({c for result in results for c in result.wall_s})  # GitOps scenarios add one
    console.print(
        f"{len(plan.scenarios)} scenarios x {seeds} seeds x {ran} contenders "
        f"in {wall_s:.0f} s wall time with {jobs} processes "
        f"(median run {statistics.median(runs):.1f} s, median healer cycle "
        f"{1000 * statistics.median(r.healer_cycle_s for r in results):.1f} ms"
        + (
            f", median warm-up {statistics.median(warming):.1f} s a scenario, "
            f"{results[0].warm_wall_s:.0f} s of wall time for all"
            if warming
            else ""
        )
        + f"); healer in auto mode, started {_started(plan.start)}"
    )
    if plan.json_out is not None:
        report.write_json(records, plan.json_out)
    if plan.plots is not None:
        for result in results:
            if result.traces is not None:
                scenario = next(s for s in plan.scenarios if s.name == result.scenario)
                path = plan.plots / f"{scenario.name}.png"
                report.plot_scenario(scenario, result.seed, result.traces, path)
    return records


def _started(start: str) -> str:
    return {
        "warm": "warm (the quiet days before each scenario learned)",
        "cold": "cold (an empty detector)",
        "both": "cold (healer-cold) and warm (healer)",
    }[start]
