"""The learned diagnoser: a scikit-learn classifier over finding features, with the rules
as its fallback.

Trained on labelled diagnoses: the simulator's ground truth (which fault a workload had
when it was found anomalous; a finding without a fault is labelled ``unknown``) and
operators' feedback (``Feedback.cause``). It answers only for causes it has seen often
enough (``min_examples``) and when it is sure enough (``min_confidence``); otherwise the
rules answer. ``unknown``, learned or not, is never remediated: the planner escalates it.

Decisions:

- A random forest: small data, mixed scales, no feature scaling to get wrong, and
  probabilities that mean something for a planner that gates on confidence.
  ``class_weight="balanced"``: rare causes are the costly ones to miss.
- Saved with skops (never pickle, which runs code on load) beside a JSON card holding
  the features, the classes, their example counts and the file's sha256. Loading
  refuses a file whose digest or features disagree with its card, and any type outside
  scikit-learn and numpy.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from sklearn.ensemble import RandomForestClassifier

from healer.diagnose.features import FEATURES, features
from healer.diagnose.rules import explain
from healer.errors import ModelMismatch, ModelNotFitted
from healer.types import Cause, Diagnosis, Finding, Frame, WorkloadState

VERSION = "diagnosis-forest/1"
_TRUSTED_PREFIXES = ("sklearn.", "numpy.", "builtins.")


@dataclass(frozen=True)
class Example:
    """One labelled diagnosis: a ``FEATURES`` row and the cause it turned out to be."""

    row: NDArray[np.float64]
    cause: Cause
    source: str
    """``sim:<scenario>`` or ``feedback:<incident id>``."""
    rules_cause: Cause | None = None
    """What the rules said at the time, when known: to compare the two."""


class LearnedDiagnoser:
    """scikit-learn style: hyperparameters in ``__init__``, learned state ends in ``_``."""

    def __init__(
        self, *, min_examples: int = 5, min_confidence: float = 0.6, random_state: int = 0
    ) -> None:
        self.min_examples = min_examples
        self.min_confidence = min_confidence
        self.random_state = random_state

    def fit(self, examples: Sequence[Example]) -> LearnedDiagnoser:
        if not examples:
            raise ValueError("no labelled examples to learn from")
        x = np.vstack([e.row for e in examples])
        y = np.array([e.cause.value for e in examples])
        self.model_ = RandomForestClassifier(
            n_estimators=100,
            min_samples_leaf=2,
            class_weight="balanced",
            random_state=self.random_state,
        ).fit(x, y)
        causes, counts = np.unique(y, return_counts=True)
        self.support_ = {Cause(c): int(n) for c, n in zip(causes, counts, strict=True)}
        return self

    def predict_proba(self, rows: NDArray[np.float64]) -> dict[Cause, NDArray[np.float64]]:
        """Probability of each known cause for each row of ``FEATURES``."""
        if not hasattr(self, "model_"):
            raise ModelNotFitted("the diagnoser has not been fitted")
        probabilities = np.asarray(self.model_.predict_proba(np.atleast_2d(rows)))
        classes = [Cause(str(c)) for c in self.model_.classes_]
        return {cause: probabilities[:, i] for i, cause in enumerate(classes)}

    def diagnose(
        self, finding: Finding, frame: Frame, state: WorkloadState, anomalous_share: float
    ) -> Diagnosis | None:
        """The learned diagnosis, or None where it lacks the history or the certainty."""
        row = features(finding, frame, state, anomalous_share)
        proba = {cause: float(p[0]) for cause, p in self.predict_proba(row).items()}
        cause, p = max(proba.items(), key=lambda item: item[1])
        seen = self.support_.get(cause, 0)
        if seen < self.min_examples or p < self.min_confidence:
            return None
        runner_up = sorted(proba.items(), key=lambda item: -item[1])[1:2]
        other = f"; next {runner_up[0][0]} at {runner_up[0][1]:.0%}" if runner_up else ""
        rules = explain(finding, frame, state)
        because = f" Rules: {rules.explanation}" if rules.cause == cause else ""
        return Diagnosis(
            finding.workload,
            cause,
            round(p, 2),
            f"Learned from {sum(self.support_.values())} labelled diagnoses ({seen} of "
            f"{cause}): {cause} at {p:.0%}{other}.{because}",
        )

    # ---- files -----------------------------------------------------------------------

    def save(self, path: Path) -> Path:
        """Write ``path`` (skops) and ``path.with_suffix('.json')`` (the card)."""
        if not hasattr(self, "model_"):
            raise ModelNotFitted("the diagnoser has not been fitted")
        import skops.io as sio  # here: a daemon without a model never pays its import

        sio.dump(self.model_, path)
        card = {
            "version": VERSION,
            "features": list(FEATURES),
            "classes": [str(c) for c in self.model_.classes_],
            "support": {str(c): n for c, n in self.support_.items()},
            "min_examples": self.min_examples,
            "min_confidence": self.min_confidence,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        }
        card_path = path.with_suffix(".json")
        card_path.write_text(json.dumps(card, indent=2) + "\n")
        return card_path

    @classmethod
    def load(cls, path: Path) -> LearnedDiagnoser:
        """Read a saved diagnoser; ModelMismatch when the file and its card disagree."""
        card_path = path.with_suffix(".json")
        try:
            card = json.loads(card_path.read_text())
            data = path.read_bytes()
        except (OSError, ValueError) as exc:
            raise ModelMismatch(f"{path}: cannot read the model or its card: {exc}") from exc
        digest = hashlib.sha256(data).hexdigest()
        if card.get("sha256") != digest:
            raise ModelMismatch(f"{path}: sha256 {digest} differs from the card's")
        if card.get("version") != VERSION or card.get("features") != list(FEATURES):
            raise ModelMismatch(f"{card_path}: version or features differ from {VERSION}")
        import skops.io as sio  # here: a daemon without a model never pays its import

        untrusted = sio.get_untrusted_types(data=data)
        refused = [t for t in untrusted if not t.startswith(_TRUSTED_PREFIXES)]
        if refused:
            raise ModelMismatch(f"{path}: refusing types {', '.join(refused)}")
        diagnoser = cls(min_examples=card["min_examples"], min_confidence=card["min_confidence"])
        diagnoser.model_ = sio.loads(data, trusted=untrusted)
        diagnoser.support_ = {Cause(c): int(n) for c, n in card["support"].items()}
        return diagnoser


Diagnose = Callable[[Finding, Frame, WorkloadState, float], Diagnosis]


def diagnoser(model: LearnedDiagnoser | None = None) -> Diagnose:
    """The daemon's diagnosis step: learned where the model knows, rules elsewhere."""

    def diagnose(
        finding: Finding, frame: Frame, state: WorkloadState, anomalous_share: float
    ) -> Diagnosis:
        if model is not None:
            learned = model.diagnose(finding, frame, state, anomalous_share)
            # Only the per-pod view can name the pod an outlier is: a model that says
            # pod_outlier from workload features alone would have an eviction pick one.
            if learned is not None and learned.cause is not Cause.POD_OUTLIER:
                return learned
        return explain(finding, frame, state)

    return diagnose
