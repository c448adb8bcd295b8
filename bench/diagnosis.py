"""Diagnosis quality on the simulator's ground truth: the rules against the learned
diagnoser (with the rules behind it), leave one scenario out.

Each scenario runs in dry-run mode for each seed; every diagnosis is labelled with the
fault the scenario had on that workload (``unknown`` where it had none). The learned
diagnoser is trained on every other scenario's examples and judged on this one's, so a
scenario never grades a model that saw it. Printed: accuracy per true cause, and how
often a fault was called ``unknown`` (escalated: safe but slow) or another fault
(a wrong action: harmful).

    python bench/diagnosis.py [--seeds 2] [--hours 2.5]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

from healer.diagnose.learned import Example, LearnedDiagnoser
from healer.groundtruth import examples_from_scenarios
from healer.logs import configure
from healer.types import Cause

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = (
    "memory-leak",
    "overload",
    "bad-release",
    "crash-loop",
    "cpu-hog",
    "benign-day",
    "default",
    "storm",
)


def learned_causes(examples: list[Example]) -> list[Cause]:
    out = []
    for example in examples:
        train = [e for e in examples if e.source != example.source]
        model = LearnedDiagnoser().fit(train) if train else None
        cause = example.rules_cause or Cause.UNKNOWN
        if model is not None:
            proba = {c: float(p[0]) for c, p in model.predict_proba(example.row).items()}
            best, p = max(proba.items(), key=lambda item: item[1])
            if model.support_.get(best, 0) >= model.min_examples and p >= model.min_confidence:
                cause = best
        out.append(cause)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--hours", type=float, default=2.5)
    args = parser.parse_args()
    configure(level="warning")
    started = time.perf_counter()
    examples = examples_from_scenarios(
        SCENARIOS, hours=args.hours, playbooks_dir=REPO / "playbooks", seeds=range(args.seeds)
    )
    collected_s = time.perf_counter() - started
    learned = learned_causes(examples)
    rules = [e.rules_cause or Cause.UNKNOWN for e in examples]
    truth = [e.cause for e in examples]
    print(
        f"{len(examples)} labelled diagnoses from {len(SCENARIOS)} scenarios x {args.seeds} seeds"
    )
    print(f"{'true cause':<14}{'n':>4}{'rules right':>13}{'learned right':>15}")
    for cause in Cause:
        idx = [i for i, t in enumerate(truth) if t is cause]
        if idx:
            r = sum(rules[i] is cause for i in idx)
            lr = sum(learned[i] is cause for i in idx)
            print(f"{cause.value:<14}{len(idx):>4}{r:>9}/{len(idx):<3}{lr:>11}/{len(idx):<3}")
    for name, said in (("rules", rules), ("learned", learned)):
        harmful = sum(
            1 for s, t in zip(said, truth, strict=True) if s is not t and s is not Cause.UNKNOWN
        )
        missed = sum(
            1
            for s, t in zip(said, truth, strict=True)
            if t is not Cause.UNKNOWN and s is Cause.UNKNOWN
        )
        print(f"{name}: wrong cause (harmful) {harmful}, fault called unknown {missed}")
    pairs = zip(learned, truth, strict=True)
    confusions = Counter((t.value, s.value) for s, t in pairs if s is not t)
    print(f"confusions (learned; true, said): {dict(confusions)}")
    print(f"collection took {collected_s:.0f} s")


if __name__ == "__main__":
    main()
