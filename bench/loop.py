"""Closed-loop benchmark on the simulated cluster: how fast healer detects and heals.

For each seed, the scenario runs in virtual time with healer's actuator talking to the
simulated Kubernetes API over HTTP. Printed per fault: time to detect (fault start to the
incident's finding), time to heal (fault start to the healed outcome), the action taken
against the one expected; then actions on workloads without a fault (must be 0) and
the wall-clock cost of a cycle. Medians over seeds, because the machine is noisy.

    python bench/loop.py [--scenario default] [--seeds 5] [--hours 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from healer.audit.store import AuditStore
from healer.config import load_settings
from healer.harness import SimHarness
from healer.logs import configure
from healer.sim.scenario import load_scenario

REPO = Path(__file__).resolve().parent.parent


def run_once(scenario_name: str, seed: int, hours: float) -> dict[str, object]:
    scenario = load_scenario(scenario_name).model_copy(update={"seed": seed})
    folder = Path(tempfile.mkdtemp(prefix="healer-bench-"))
    settings = load_settings(None, guards={"mode": "auto"}, playbooks_dir=str(REPO / "playbooks"))
    store = AuditStore(f"sqlite:///{folder / 'audit.db'}")
    harness = SimHarness.start(scenario, settings=settings, store=store, workdir=folder)
    cycle_s: list[float] = []
    original = harness.healer.cycle

    def timed(now):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        result = original(now)
        cycle_s.append(time.perf_counter() - started)
        return result

    harness.healer.cycle = timed  # type: ignore[method-assign]
    wall = time.perf_counter()
    harness.run_for(hours * 3600)
    wall = time.perf_counter() - wall
    incidents = {str(s.workload): s for s in store.list_incidents(limit=1000)}
    faults = []
    for event in scenario.events:
        start = scenario.start + timedelta(seconds=event.at_s)
        found = incidents.get(event.workload)
        if event.expect == "none":
            continue
        detail = store.get_incident(found.id) if found else None
        healed = found is not None and found.outcome is not None and found.outcome == "healed"
        faults.append(
            {
                "workload": event.workload,
                "kind": event.kind,
                "expect": event.expect,
                "action": str(found.action) if found and found.action else None,
                "detect_s": (detail.timeline[0].at - start).total_seconds() if detail else None,
                "heal_s": (found.closed - start).total_seconds()
                if healed and found.closed
                else None,
            }
        )
    faulty = {e.workload for e in scenario.events if e.expect != "none"}
    wrong = sum(1 for w, s in incidents.items() if w not in faulty and s.action is not None)
    harness.close()
    store.close()
    return {
        "faults": faults,
        "wrong_actions": wrong,
        "wall_s": wall,
        "cycle_ms_median": statistics.median(cycle_s) * 1000,
        "cycles": len(cycle_s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="default")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--hours", type=float, default=3.0)
    args = parser.parse_args()
    configure(level="warning")
    runs = [run_once(args.scenario, seed, args.hours) for seed in range(args.seeds)]
    print(f"scenario {args.scenario}, {args.seeds} seeds, {args.hours:g} h of cluster time each")
    print(f"{'fault':<28}{'expected':<10}{'right action':>13}{'detect s':>10}{'heal s':>9}")
    names = [(f["workload"], f["kind"], f["expect"]) for f in runs[0]["faults"]]  # type: ignore[index]
    for i, (workload, kind, expect) in enumerate(names):
        rows = [r["faults"][i] for r in runs]  # type: ignore[index]
        right = sum(1 for r in rows if r["action"] == expect)
        detect = [r["detect_s"] for r in rows if r["detect_s"] is not None]
        heal = [r["heal_s"] for r in rows if r["heal_s"] is not None]
        print(
            f"{workload + ' ' + kind:<28}{expect:<10}{right:>7}/{len(rows):<5}"
            f"{statistics.median(detect) if detect else float('nan'):>10.0f}"
            f"{statistics.median(heal) if heal else float('nan'):>9.0f}"
        )
    wrong = sum(int(str(r["wrong_actions"])) for r in runs)
    print(f"actions where there was no fault: {wrong}")
    print(
        f"median wall time per run: {statistics.median(r['wall_s'] for r in runs):.1f} s; "  # type: ignore[misc]
        f"median cycle: {statistics.median(r['cycle_ms_median'] for r in runs):.2f} ms"
    )  # type: ignore[misc]


if __name__ == "__main__":
    main()
