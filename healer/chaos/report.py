"""The benchmark's outputs: tables for people, JSON records, one chart per scenario.

Medians over seeds treat a fault never healed as infinitely long, so a median heal time
is shown only when more than half the seeds healed; ``healed`` says how many did.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure
from rich.table import Table

from healer.chaos.contenders import CONTENDERS, Trace
from healer.chaos.score import (
    HEAL_SIGNALS,
    baseline_upper,
    faults_of,
    slo_of,
)
from healer.sim.cluster import SIGNALS
from healer.sim.scenario import Scenario
from healer.types import JsonObject, Signal

COLOURS = {
    "kubernetes": "tab:gray",
    "static": "tab:orange",
    "healer-cold": "tab:cyan",
    "healer-undo": "tab:red",
    "healer": "tab:blue",
}
WIDTHS = {"kubernetes": 3.0, "static": 1.6, "healer-cold": 1.3, "healer-undo": 1.15, "healer": 1.0}
"""Wide to narrow, so that a contender that changed nothing shows under the others."""
MARKS = {"restart": "o", "scale": "^", "rollback": "s"}


def _median(values: Sequence[float | None]) -> float:
    """The median with None (never) as infinity; NaN for no values."""
    if not values:
        return math.nan
    return float(statistics.median([math.inf if v is None else v for v in values]))


def _seconds(value: float) -> str:
    if math.isnan(value):
        return ""
    return "never" if math.isinf(value) else f"{value:.0f}"


def _contenders(records: list[JsonObject]) -> list[str]:
    """The contenders that ran, in the order of ``CONTENDERS``."""
    ran = {r["contender"] for r in records}
    return [c for c in CONTENDERS if c in ran]


def _of(records: list[JsonObject], contender: str) -> list[JsonObject]:
    return [r for r in records if r["contender"] == contender]


def _float_or_none(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _stats(rows: list[JsonObject]) -> list[str]:
    right = sum(1 for r in rows if r["action"] == r["expected_action"])
    healed = sum(1 for r in rows if r["time_to_heal_s"] is not None)
    detect = _median([_float_or_none(r["time_to_detect_s"]) for r in rows])
    heal = _median([_float_or_none(r["time_to_heal_s"]) for r in rows])
    slo = statistics.median(float(str(r["slo_minutes_lost"])) for r in rows)
    ooms = sum(int(str(r["oom_kills"])) for r in rows)
    returned = sum(1 for r in rows if r.get("cause_returned"))
    return [
        f"{right}/{len(rows)}",
        "" if rows[0]["contender"] == "kubernetes" else _seconds(detect),
        f"{healed}/{len(rows)}",
        _seconds(heal),
        f"{slo:.0f}",
        str(ooms),
        f"{returned}/{len(rows)}",
    ]


_HEADERS = (
    "right action",
    "detect s",
    "healed",
    "heal s",
    "SLO min lost",
    "OOM kills",
    "came back",
)


def fault_table(records: list[JsonObject]) -> Table:
    """Per scenario and fault: each contender's results over the seeds (medians)."""
    table = Table(title="Faults, per scenario (medians over seeds)")
    for name in ("scenario", "fault", "expected", "contender", *_HEADERS):
        table.add_column(name, justify="left" if name in ("scenario", "fault") else "right")
    keys: list[tuple[str, str]] = []
    for r in records:
        key = (str(r["scenario"]), str(r["fault"]))
        if r["fault"] is not None and key not in keys:
            keys.append(key)
    contenders = _contenders(records)
    for scenario, fault in keys:
        for i, contender in enumerate(contenders):
            rows = [
                r
                for r in _of(records, contender)
                if r["scenario"] == scenario and r["fault"] == fault
            ]
            if rows:
                first = i == 0
                table.add_row(
                    scenario if first else "",
                    fault if first else "",
                    str(rows[0]["expected_action"]) if first else "",
                    contender,
                    *_stats(rows),
                    end_section=i == len(contenders) - 1,
                )
    return table


def class_table(records: list[JsonObject]) -> Table:
    """Per fault class, every scenario and seed together; then benign actions per contender."""
    table = Table(title="By fault class, all scenarios and seeds (medians)")
    for name in ("fault class", "contender", *_HEADERS):
        table.add_column(name, justify="left" if name == "fault class" else "right")
    classes: list[str] = []
    for r in records:
        if r["fault"] is not None and str(r["fault"]).split()[0] not in classes:
            classes.append(str(r["fault"]).split()[0])
    contenders = _contenders(records)
    for cls in classes:
        for i, contender in enumerate(contenders):
            rows = [
                r
                for r in _of(records, contender)
                if r["fault"] is not None and str(r["fault"]).split()[0] == cls
            ]
            if rows:
                table.add_row(
                    cls if i == 0 else "",
                    contender,
                    *_stats(rows),
                    end_section=i == len(contenders) - 1,
                )
    runs = {
        (r["scenario"], r["seed"], r["contender"]): int(str(r["benign_actions"])) for r in records
    }
    for contender in contenders:
        benign = [n for (_, _, c), n in runs.items() if c == contender]
        if benign:
            table.add_row(
                "benign actions" if contender == contenders[0] else "",
                contender,
                f"{sum(benign)} in {len(benign)} runs",
            )
    return table


def markdown_table(records: list[JsonObject]) -> str:
    """``class_table`` as Markdown, for the README."""
    lines = [
        "| fault class | contender | " + " | ".join(_HEADERS) + " |",
        "|---|---|" + "---:|" * len(_HEADERS),
    ]
    for row in _rows(class_table(records)):
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _rows(table: Table) -> list[list[str]]:
    cells = [[str(c) for c in column.cells] for column in table.columns]
    return [list(row) for row in zip(*cells, strict=True)]


def write_json(records: list[JsonObject], path: Path) -> None:
    path.write_text(json.dumps(records, indent=1) + "\n")


def _panels(scenario: Scenario) -> list[tuple[str, Signal]]:
    faults = faults_of(scenario)
    if faults:  # a node fault: each workload it hurts
        return [(w, s) for f in faults for w in f.judged for s in HEAL_SIGNALS[f.fault_class]]
    names = [f"{w.namespace}/{w.name}" for w in scenario.expanded()][:4]
    return [(w, Signal.LATENCY_P99) for w in names]


def plot_scenario(scenario: Scenario, seed: int, traces: dict[str, Trace], path: Path) -> None:
    """Signals of the faulty workloads under each contender, fault windows and actions."""
    panels = _panels(scenario)
    fig = Figure(figsize=(10, 1.9 * len(panels) + 0.8), layout="constrained")
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    start = scenario.start.timestamp()
    faults = faults_of(scenario)
    slos = slo_of(scenario)
    end = max(float(t.timestamps[-1]) for t in traces.values() if t.timestamps.size)
    for ax, (workload, signal) in zip(axes, panels, strict=True):
        for contender, trace in traces.items():
            minutes = (trace.timestamps - start) / 60
            row = trace.values[trace.workloads.index(workload), SIGNALS.index(signal)]
            ax.plot(
                minutes,
                row,
                color=COLOURS[contender],
                lw=WIDTHS[contender],
                alpha=0.5 if contender == "kubernetes" else 1.0,
                label=contender,
            )
            for act in trace.actions:
                if act.workload == workload or any(
                    act.workload == f.workload and workload in f.hurt for f in faults
                ):
                    ax.plot(
                        (act.at_s - start) / 60,
                        1.0,
                        marker=MARKS.get(act.kind, "x"),
                        color=COLOURS[contender],
                        transform=ax.get_xaxis_transform(),
                        clip_on=False,
                        ms=7,
                        ls="",
                    )
        for fault in faults:
            if workload in fault.judged:
                ax.axvspan((fault.at_s - start) / 60, (end - start) / 60, color="red", alpha=0.06)
                ax.axvline((fault.at_s - start) / 60, color="red", lw=1)
                edge = baseline_upper(traces["kubernetes"], fault, workload).get(signal)
                if edge is not None and math.isfinite(edge):
                    ax.axhline(edge, color="green", ls=":", lw=1)
        for event in scenario.events:
            if event.expect == "none" and event.workload in ("*", workload):
                if event.duration_s:
                    ax.axvspan(event.at_s / 60, event.end_s / 60, color="gray", alpha=0.15)
                else:
                    ax.axvline(event.at_s / 60, color="gray", ls="--", lw=1)
        slo = slos[workload]
        if signal == Signal.LATENCY_P99:
            ax.axhline(slo.latency_p99_s, color="black", ls="--", lw=0.8)
        elif signal == Signal.ERROR_RATIO:
            ax.axhline(slo.error_ratio, color="black", ls="--", lw=0.8)
        ax.set_ylabel(f"{workload}\n{signal}", fontsize=8)
        ax.tick_params(labelsize=8)
    axes[0].legend(loc="upper left", fontsize=8, ncols=3)
    axes[-1].set_xlabel("minutes since the scenario's start")
    fig.suptitle(
        f"{scenario.name}, seed {seed}: red = fault (from its start), gray = benign event, "
        "dotted green = edge of baseline, dashed = SLO;\nmarkers = actions "
        "(o restart, ^ scale, s rollback)",
        fontsize=9,
    )
    fig.savefig(path, dpi=90)
