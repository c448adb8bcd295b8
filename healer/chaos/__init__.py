"""The closed-loop chaos benchmark: healer against Kubernetes alone and static thresholds.

Every scenario of the simulator's library runs with several seeds in virtual time, once
per contender, on identical clusters (same scenario, same seed, same autoscalers):

* ``kubernetes``: the cluster alone. The kubelet restarts OOM-killed and crashing
  containers, a HorizontalPodAutoscaler scales every Deployment on CPU; nothing rolls
  back, nothing restarts a leaking or runaway Deployment.
* ``static``: static-threshold rules of the kind teams write as Prometheus alerts,
  wired to healer's playbooks and guardrails (``healer.chaos.static``).
* ``healer``: the daemon with its default settings, except the mode: ``auto``, because
  a benchmark has nobody to approve actions (the default is ``dry_run``).

Scoring (``healer.chaos.score``) uses the simulator's ground truth: when and where each
fault starts, which remediation fixes it, each workload's signals before the fault.
``healer bench chaos`` prints a table, writes JSON records and one chart per scenario.
"""
