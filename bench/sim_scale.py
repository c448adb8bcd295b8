"""How fast the simulated cluster runs at scale: Deployments x pods x simulated hours.

    python bench/sim_scale.py [--deployments 1000] [--pods 5] [--hours 24] [--sample-hours 0.25]

Runs ``--sample-hours`` of simulated time (15 s steps) and prints the wall time per
simulated step, the projection to ``--hours``, and peak memory (ru_maxrss). With
``--sample-hours`` equal to ``--hours`` it runs the whole span.
"""

from __future__ import annotations

import argparse
import resource
import time
from datetime import UTC, datetime

from healer.sim.cluster import Cluster
from healer.sim.scenario import Scenario, Traffic, WorkloadSpec


def scenario(deployments: int, pods: int) -> Scenario:
    workload = WorkloadSpec(
        name="svc",
        namespace="bench",
        replicas=pods,
        copies=deployments,
        image="registry.local/bench/svc:1.0.0",
        traffic=Traffic(base_rps=50, peak_factor=1.6, noise=0.04),
    )
    return Scenario(
        name="bench",
        description="scale benchmark",
        start=datetime(2026, 3, 2, 0, 0, tzinfo=UTC),
        seed=1,
        workloads=[workload],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=5)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--sample-hours", type=float, default=0.25)
    args = parser.parse_args()
    started = time.perf_counter()
    cluster = Cluster(scenario(args.deployments, args.pods))
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    cluster.advance(args.sample_hours * 3600)
    run_s = time.perf_counter() - started
    steps = len(cluster.timestamps)
    per_step = run_s / steps
    projected = per_step * args.hours * 3600 / cluster.scenario.step_s
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.deployments} Deployments x {args.pods} pods: built in {build_s:.1f} s")
    print(
        f"{steps} steps of {cluster.scenario.step_s:g} s in {run_s:.1f} s wall: "
        f"{per_step * 1000:.1f} ms per step, "
        f"{per_step / args.deployments * 1e6:.0f} µs per Deployment-step"
    )
    print(f"projected for {args.hours:g} simulated hours: {projected:.0f} s wall (target 60 s)")
    print(f"peak memory: {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
