"""The multivariate model: how unusual a workload's signals are together, as one score.

A robust covariance model over the windowed features of ``detect.features``. Each
feature is first put on a common scale (median and interquartile range, never below the
signal's measurement floor). The normal shape of the features' joint distribution is
then learned by trimming: fit a shrunk (Ledoit-Wolf) covariance, drop the rows farthest
from it, fit again on the rest. A row's Mahalanobis distance from that fit measures a
joint deviation, so a workload whose CPU rises while its traffic does not is far out even
when neither signal alone is.

The distance is calibrated into a score in [0, 1] against the normal history itself: the
largest distance each workload reached in each hour (a "block") of the training data.
A score of 0.95 therefore means "a normal workload-hour goes this far in only 1 in 20
hours", which is what an operator can live with at any cluster size. Beyond the
largest distance seen, the score follows the chi-squared tail.

Confirmed false positives are training data: their rows join the normal set with a
guaranteed share of the fit (``feedback_share``) and take part in the calibration, so the
pattern they show stops standing out. A few are kept as exemplars: a row that matches
one is scored by the joint model alone (``combine``).

The combination with the streaming detector's per-signal score is the larger of the two
(``combine``).
"""

from __future__ import annotations

from typing import Self

import numpy as np
from numpy.typing import NDArray
from scipy.stats import chi2
from sklearn.base import BaseEstimator
from sklearn.covariance import LedoitWolf

from healer.detect.features import LONG_WINDOW_S, SHORT_WINDOW_S, FeatureSpec
from healer.errors import ModelNotFitted

F64 = NDArray[np.float64]

# Standardised features are clipped here before fitting: a scrape glitch far out must not
# drag the covariance.
CLIP_Z = 50.0
# Each trimming round keeps this share of rows, the closest to the current fit.
TRIM_KEEP = 0.95
TRIM_ROUNDS = 2
# Points of the calibration curve kept in the model.
CALIBRATION_POINTS = 1001
# Confirmed-normal rows kept as exemplars of the patterns operators accepted.
MAX_EXEMPLARS = 256
# A row within this squared distance of an exemplar (in the fitted metric) matches it: the
# 99th percentile of the chi-squared distance between two draws of one pattern, per feature.
EXEMPLAR_QUANTILE = 0.99


class JointModel(BaseEstimator):  # type: ignore[misc]  # scikit-learn ships no type hints
    """Robust covariance over windowed features, scikit-learn style.

    ``__init__`` stores hyperparameters only; ``fit`` learns ``center_``, ``scale_``,
    ``location_``, ``precision_`` and ``calibration_``.
    """

    def __init__(
        self,
        *,
        short_window_s: float = SHORT_WINDOW_S,
        long_window_s: float = LONG_WINDOW_S,
        max_fit_rows: int = 50_000,
        feedback_share: float = 0.2,
        random_state: int = 0,
    ) -> None:
        self.short_window_s = short_window_s
        self.long_window_s = long_window_s
        self.max_fit_rows = max_fit_rows
        self.feedback_share = feedback_share
        self.random_state = random_state

    @property
    def spec(self) -> FeatureSpec:
        return FeatureSpec(self.short_window_s, self.long_window_s)

    def fit(
        self, X: F64, *, blocks: NDArray[np.int64] | None = None, normal: F64 | None = None
    ) -> Self:
        """Learn the normal joint distribution from rows ``X`` (N, F).

        ``blocks`` (N,) groups rows for calibration (one workload-hour each); ``normal``
        (M, F) are rows confirmed normal by an operator (false positives), which the fit
        must absorb. NaN features count as typical.
        """
        names = self.spec.names
        if X.ndim != 2 or X.shape[1] != len(names) or len(X) == 0:
            raise ValueError(f"expected (rows, {len(names)}) features, got {X.shape}")
        extra = np.empty((0, X.shape[1])) if normal is None else normal
        both = np.vstack([X, extra])
        self.center_ = np.nan_to_num(np.nanmedian(both, axis=0))
        q75, q25 = np.nanpercentile(both, [75, 25], axis=0)
        self.scale_ = np.maximum(np.nan_to_num((q75 - q25) / 1.349), self.spec.floors())
        z, z_extra = self._standardise(X), self._standardise(extra)
        rng = np.random.default_rng(self.random_state)
        if len(z) > self.max_fit_rows:
            z = z[np.sort(rng.choice(len(z), self.max_fit_rows, replace=False))]
        core = self._trimmed(z)
        repeats = _repeats(len(core), len(z_extra), self.feedback_share)
        fit_rows = np.vstack([core, *([z_extra] * repeats)])
        self.location_, self.precision_ = _gaussian(fit_rows)
        self.features_ = names
        keep = min(len(z_extra), MAX_EXEMPLARS)
        self.exemplars_ = z_extra[np.sort(rng.choice(len(z_extra), keep, replace=False))]
        self._calibrate(X, blocks, extra)
        return self

    def _trimmed(self, z: F64) -> F64:
        keep = z
        for _ in range(TRIM_ROUNDS):
            d2 = _mahalanobis(keep, *_gaussian(keep))
            keep = keep[d2 <= np.quantile(d2, TRIM_KEEP)]
        return keep

    def _calibrate(self, X: F64, blocks: NDArray[np.int64] | None, extra: F64) -> None:
        d2 = self.distance(X)
        ids = np.arange(len(X)) if blocks is None else np.asarray(blocks)
        order = np.argsort(ids, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(ids[order]) != 0])
        maxima = np.maximum.reduceat(d2[order], starts)
        if len(extra):
            maxima = np.concatenate([maxima, [self.distance(extra).max()]])
        self.calibration_ = np.quantile(maxima, np.linspace(0.0, 1.0, CALIBRATION_POINTS))
        self.tail_mass_ = 1.0 / (len(maxima) + 1.0)

    def _standardise(self, X: F64) -> F64:
        z = (X - self.center_) / self.scale_
        out: F64 = np.clip(np.nan_to_num(z, nan=0.0), -CLIP_Z, CLIP_Z)
        return out

    def _check(self) -> None:
        if not hasattr(self, "precision_"):
            raise ModelNotFitted("the joint model is not fitted; call fit() or load a version")

    def distance(self, X: F64) -> F64:
        """(N,) squared Mahalanobis distance of each row from the normal fit."""
        self._check()
        return _mahalanobis(self._standardise(X), self.location_, self.precision_)

    def anomaly_score(self, X: F64) -> F64:
        """(N,) calibrated score in [0, 1]: the share of normal workload-hours that stay nearer."""
        d2 = self.distance(X)
        curve, top = self.calibration_, float(self.calibration_[-1])
        inside = np.interp(d2, curve, np.linspace(0.0, 1.0, len(curve))) * (1 - self.tail_mass_)
        dof = len(self.features_)
        with np.errstate(invalid="ignore"):  # both tails underflow: -inf - -inf
            log_ratio = np.nan_to_num(chi2.logsf(d2, dof) - chi2.logsf(top, dof), nan=0.0)
        beyond = 1.0 - self.tail_mass_ * np.exp(np.minimum(log_ratio, 0.0))
        out: F64 = np.where(d2 > top, beyond, inside)
        return out

    def matches_confirmed(self, X: F64) -> NDArray[np.bool_]:
        """(N,) whether each row looks like a pattern an operator confirmed as normal."""
        self._check()
        if not len(self.exemplars_):
            return np.zeros(len(X), dtype=bool)
        root = np.linalg.cholesky(self.precision_)  # precision = root @ root.T
        a, b = self._standardise(X) @ root, self.exemplars_ @ root
        d2 = (a * a).sum(1)[:, None] - 2 * a @ b.T + (b * b).sum(1)[None, :]
        # Two draws of one pattern differ by twice its variance: chi-squared scaled by 2.
        radius = 2.0 * chi2.ppf(EXEMPLAR_QUANTILE, len(self.features_))
        out: NDArray[np.bool_] = d2.min(axis=1) <= radius
        return out

    def contributions(self, X: F64) -> F64:
        """(N, S) each signal's share of the distance (the feature terms summed per signal)."""
        z = self._standardise(X) - self.location_
        per_feature = z * (z @ self.precision_)
        out: F64 = np.maximum(per_feature, 0.0) @ self.spec.signal_weights()
        return out


def combine(stream: F64, joint: F64, confirmed: NDArray[np.bool_] | None = None) -> F64:
    """One score from two: the larger, so either detector alone can raise a finding.

    Where a row matches a pattern operators confirmed as normal (``confirmed``), the
    joint model, which has learned that pattern, speaks alone: the streaming baselines
    cannot learn from feedback, so they would keep flagging it.

    Both are calibrated, and the joint score against hourly maxima, which is much
    stricter than the streaming score's per-sample calibration: the joint model adds at
    most ``1 - s`` chance crossings of level ``s`` per workload-hour to the streaming
    detector's, instead of weakening every streaming score as a Šidák correction would.
    """
    out: F64 = np.maximum(stream, joint)
    if confirmed is not None:
        out = np.where(confirmed, joint, out)
    return out


def _gaussian(z: F64) -> tuple[F64, F64]:
    """Location and precision of standardised rows: Ledoit-Wolf, each variance at least 1.

    Features are scaled by at least their measurement floor, so a variance under 1 is a
    spread finer than the signal's resolution: it is raised to 1, or a change of one
    rounding step would count as many deviations.
    """
    covariance = np.asarray(LedoitWolf().fit(z).covariance_, dtype=np.float64)
    diagonal = np.diag_indices_from(covariance)
    covariance[diagonal] = np.maximum(covariance[diagonal], 1.0)
    location: F64 = z.mean(axis=0)
    precision: F64 = np.asarray(np.linalg.inv(covariance), dtype=np.float64)
    return location, precision


def _mahalanobis(z: F64, location: F64, precision: F64) -> F64:
    centred = z - location
    out: F64 = np.einsum("ij,jk,ik->i", centred, precision, centred)
    return np.maximum(out, 0.0)


def _repeats(core_rows: int, extra_rows: int, share: float) -> int:
    """How many copies of the confirmed-normal rows give them ``share`` of the fit."""
    if extra_rows == 0:
        return 0
    wanted = share / (1.0 - share) * core_rows
    return max(1, int(np.ceil(wanted / extra_rows)))
