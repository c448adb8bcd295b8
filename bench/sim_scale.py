"""How fast the simulated cluster runs at scale: Deployments x pods x simulated hours.

    python bench/sim_scale.py [--deployments 1000] [--statefulsets 0] [--pods 5] [--hours 24]
                              [--sample-hours H] [--nodes N]

The target (issue 3): 1,000 Deployments x 5 pods for 24 simulated hours at 15 s
resolution in under 60 s of wall time on one core. The process is pinned to one CPU
(where the platform allows) and runs the whole span unless ``--sample-hours`` asks for
a shorter one, projected to ``--hours``. It prints the build and run wall times, the
CPU time (less sensitive than wall time to other processes on a busy machine), the
cost per simulated step and per workload-step, and peak memory (ru_maxrss), which
includes the recorded samples: (workloads x 7 signals) float64 per step.
``--statefulsets`` adds that many StatefulSets of ``--pods`` ordered pods each.
``--nodes`` sets the number of nodes the pods are scheduled onto (by default the
scenario's pool: room for four times the pods, 110 pods a node).
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from datetime import UTC, datetime

from healer.sim.cluster import Cluster
from healer.sim.scenario import NodePool, Scenario, Traffic, WorkloadSpec

TARGET_S = 60.0


def scenario(
    deployments: int, pods: int, statefulsets: int = 0, nodes: int | None = None
) -> Scenario:
    workload = WorkloadSpec(
        name="svc",
        namespace="bench",
        replicas=pods,
        copies=deployments,
        image="registry.local/bench/svc:1.0.0",
        traffic=Traffic(base_rps=50, peak_factor=1.6, noise=0.04),
    )
    workloads = [workload]
    if statefulsets:
        workloads.append(
            workload.model_copy(
                update={"name": "db", "kind": "StatefulSet", "copies": statefulsets}
            )
        )
    return Scenario(
        name="bench",
        description="scale benchmark",
        start=datetime(2026, 3, 2, 0, 0, tzinfo=UTC),
        seed=1,
        workloads=workloads,
        nodes=NodePool(count=nodes),
    )


def pin_to_one_core() -> str:
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity here)"
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return f"pinned to CPU {core}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=1000)
    parser.add_argument("--statefulsets", type=int, default=0)
    parser.add_argument("--pods", type=int, default=5)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--sample-hours", type=float, default=None)
    parser.add_argument("--nodes", type=int, default=None)
    args = parser.parse_args()
    sample_h = args.hours if args.sample_hours is None else args.sample_hours
    pinned = pin_to_one_core()
    cpu_started, started = time.process_time(), time.perf_counter()
    cluster = Cluster(scenario(args.deployments, args.pods, args.statefulsets, args.nodes))
    build_s, build_cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    cpu_started, started = time.process_time(), time.perf_counter()
    cluster.advance(sample_h * 3600)
    run_s, run_cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    steps = len(cluster.timestamps)
    per_step = run_s / steps
    span_steps = args.hours * 3600 / cluster.scenario.step_s
    total_s = build_s + per_step * span_steps
    total_cpu_s = build_cpu_s + run_cpu_s / steps * span_steps
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workloads = args.deployments + args.statefulsets
    print(
        f"{args.deployments} Deployments and {args.statefulsets} StatefulSets x {args.pods} "
        f"pods on {len(cluster.store.list('nodes'))} nodes, {pinned}: "
        f"built in {build_s:.1f} s wall ({build_cpu_s:.1f} s CPU)"
    )
    print(
        f"{steps} steps of {cluster.scenario.step_s:g} s in {run_s:.1f} s wall "
        f"({run_cpu_s:.1f} s CPU): {per_step * 1000:.2f} ms per step, "
        f"{per_step / workloads * 1e6:.1f} µs per workload-step"
    )
    what = "measured" if sample_h == args.hours else "projected"
    verdict = "met" if total_s < TARGET_S else "missed"
    print(
        f"{args.hours:g} simulated hours with the build, {what}: {total_s:.1f} s wall "
        f"(target {TARGET_S:g} s: {verdict}), {total_cpu_s:.1f} s CPU"
    )
    print(f"peak memory: {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
