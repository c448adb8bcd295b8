"""A sequential test of a release: is the new revision drawn from the old one's normal?

The streaming detector (``streaming.py``) gives each sample of a workload a calibrated
score: ``1 - score`` is a p-value, uniform while the workload behaves as its learned
baseline says (the Šidák-combined tail of its most harmful signal). A release gate asks,
sample after sample, whether those p-values still look uniform (H0: healthy) or lean
towards zero (H1: unhealthy), and wants to stop as soon as the answer is clear.

That is Wald's sequential probability ratio test. Under H1 the p-values follow
Beta(``KAPPA``, 1), density ``κ p^(κ-1)``; each p-value adds ``ln κ + (κ - 1) ln p`` to
the log-likelihood ratio, and the test stops:

- unhealthy when the ratio reaches ``ln((1 - beta) / alpha)``,
- healthy when it falls to ``ln(beta / (1 - alpha))``,

so that a healthy release is failed with probability at most alpha (``false_fail``) and a
release that is bad in H1's sense passes with probability at most beta (``false_pass``),
the error rates Wald's bounds guarantee for independent samples.

Decisions:

- Samples one rate window apart only (``thin_s``): the detector's samples within a
  rate window share most of their requests, and counting them as independent would
  make the stated error rates a fiction.
- A p-value counts at most as much as ``P_FLOOR`` does, so that no single sample
  decides: one scrape's burst is not a bad release, as the daemon's ``persistence_s``
  says for findings. It takes two samples at the floor (two rate windows of clearly
  bad data) to fail a release.
- κ = 0.3: under H1 the median p-value is 0.1. The detector's scales have floors (an
  error ratio three points up is a few spreads, however quiet it was), so a release
  failing 3% of requests gives p-values about 0.03 sample after sample; κ = 0.3 is the
  shape under which such p-values weigh most (1.2 each: four samples fail it), and
  healthy samples pull the ratio down by 0.5 or more each, so a healthy release passes
  after about six to nine rate windows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

KAPPA = 0.3
"""The shape of H1's p-value distribution, Beta(κ, 1) (see the module's decisions)."""
ROUNDING = 1e-9
"""Slack on the bounds: two samples at the floor add up to ``upper`` exactly, which a
float sum may miss by its last bit."""


class Decision(StrEnum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    UNDECIDED = "undecided"


@dataclass(frozen=True)
class SequentialTest:
    """Wald's bounds for the stated error rates; ``llr`` of one p-value."""

    false_fail: float = 0.01
    """alpha: the chance of failing a healthy release."""
    false_pass: float = 0.01
    """beta: the chance of passing a release that is bad in H1's sense."""
    kappa: float = KAPPA

    def __post_init__(self) -> None:
        for name in ("false_fail", "false_pass"):
            value = getattr(self, name)
            if not 0.0 < value < 0.5:
                raise ValueError(f"{name} must be between 0 and 0.5, not {value}")
        if not 0.0 < self.kappa < 1.0:
            raise ValueError(f"kappa must be between 0 and 1, not {self.kappa}")

    @property
    def upper(self) -> float:
        """The log-likelihood ratio at which the release is unhealthy."""
        return math.log((1.0 - self.false_pass) / self.false_fail)

    @property
    def lower(self) -> float:
        """The log-likelihood ratio at which the release is healthy."""
        return math.log(self.false_pass / (1.0 - self.false_fail))

    @property
    def p_floor(self) -> float:
        """The p-value below which a sample counts no more: half of ``upper`` each."""
        most = self.upper / 2.0
        return math.exp((most - math.log(self.kappa)) / (self.kappa - 1.0))

    def llr(self, p: float) -> float:
        """One p-value's log-likelihood ratio of H1 over H0, floored at ``p_floor``."""
        p = min(1.0, max(p, self.p_floor))
        return math.log(self.kappa) + (self.kappa - 1.0) * math.log(p)


@dataclass
class Running:
    """The test as samples arrive: the ratio so far, and how many samples made it."""

    test: SequentialTest = field(default_factory=SequentialTest)
    ratio: float = 0.0
    samples: int = 0

    def add(self, p: float) -> Decision:
        """Count one p-value (NaN: no data, counts nothing) and say where the test stands."""
        if not math.isnan(p):
            self.ratio += self.test.llr(p)
            self.samples += 1
        return self.decision

    @property
    def decision(self) -> Decision:
        if self.ratio >= self.test.upper - ROUNDING:
            return Decision.UNHEALTHY
        if self.samples and self.ratio <= self.test.lower + ROUNDING:
            return Decision.HEALTHY
        return Decision.UNDECIDED

    @property
    def leaning(self) -> Decision:
        """Where an undecided test leans when time is up: towards H1 above zero."""
        if self.decision is not Decision.UNDECIDED:
            return self.decision
        return Decision.UNHEALTHY if self.ratio > 0.0 else Decision.HEALTHY
