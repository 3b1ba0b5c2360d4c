"""Statistics for the shadow comparison (multi-task model vs single-task baselines).

Pure numpy/scipy/scikit-learn; no torch, no I/O. Every function takes plain
sequences/arrays so it can be tested on hand-made examples.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
from scipy import stats as sps
from sklearn.metrics import f1_score

Metric = Callable[[np.ndarray, np.ndarray], float]

# Below this many discordant pairs the chi-square approximation is poor,
# so McNemar uses the exact binomial test instead.
MCNEMAR_EXACT_BELOW = 25


def _union_labels(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    # Explicit union so a gold label the model never predicts (or never saw)
    # still counts as a class with F1 = 0 instead of silently vanishing.
    return np.union1d(np.asarray(y_true), np.asarray(y_pred))


def macro_f1(y_true: Sequence, y_pred: Sequence) -> float:
    """Unweighted mean of per-class F1 over the union of gold and predicted labels."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float(
        f1_score(y_true, y_pred, labels=_union_labels(y_true, y_pred), average="macro", zero_division=0)
    )


def weighted_f1(y_true: Sequence, y_pred: Sequence) -> float:
    """Per-class F1 averaged with gold-class support as weights (same label union as macro_f1)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float(
        f1_score(y_true, y_pred, labels=_union_labels(y_true, y_pred), average="weighted", zero_division=0)
    )


def paired_bootstrap_diff_ci(
    y_true: Sequence,
    pred_a: Sequence,
    pred_b: Sequence,
    metric: Metric,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``metric(y, a) - metric(y, b)``.

    Each resample draws one set of row indices (with replacement) and scores
    *both* models on it: pairing removes the between-row variance the two
    models share, so the CI is much tighter than comparing two separate CIs.
    """
    y_true, pred_a, pred_b = np.asarray(y_true), np.asarray(pred_a), np.asarray(pred_b)
    n = len(y_true)
    if n == 0 or len(pred_a) != n or len(pred_b) != n:
        raise ValueError(f"need equal, non-zero lengths; got {n}, {len(pred_a)}, {len(pred_b)}")
    if n_resamples < 1 or not 0.0 < confidence < 1.0:
        raise ValueError("n_resamples must be >= 1 and confidence in (0, 1)")
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_resamples)
    for i in range(n_resamples):
        idx = rng.integers(0, n, size=n)
        diffs[i] = metric(y_true[idx], pred_a[idx]) - metric(y_true[idx], pred_b[idx])
    alpha = 1.0 - confidence
    lo, hi = np.quantile(diffs, [alpha / 2, 1.0 - alpha / 2])
    return float(lo), float(hi)


def mcnemar_p_value(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> float:
    """Two-sided McNemar test p-value on paired per-row correctness.

    Only discordant rows carry information: b = a right & b wrong,
    c = a wrong & b right. Exact binomial(b; b+c, 0.5) when b+c < 25, else
    chi-square (1 dof) with continuity correction. 1.0 when no row is discordant.
    """
    correct_a = np.asarray(correct_a, dtype=bool)
    correct_b = np.asarray(correct_b, dtype=bool)
    if correct_a.shape != correct_b.shape:
        raise ValueError("correct_a and correct_b must have the same shape")
    b = int(np.sum(correct_a & ~correct_b))
    c = int(np.sum(~correct_a & correct_b))
    n = b + c
    if n == 0:
        return 1.0
    if n < MCNEMAR_EXACT_BELOW:
        return float(min(1.0, sps.binomtest(b, n, 0.5, alternative="two-sided").pvalue))
    statistic = (abs(b - c) - 1.0) ** 2 / n
    return float(sps.chi2.sf(statistic, df=1))


def transfer_ratio(mtl_score: float, single_score: float) -> float | None:
    """Relative change of the multi-task score over the single-task one: (mtl - single) / single.

    Negative means the shared model lost quality (negative transfer).
    When ``single_score`` is 0 the ratio is undefined: we return 0.0 if both
    are 0 (no change) and None otherwise (JSON null rather than +/-inf, which
    is not valid JSON). None also for NaN inputs.
    """
    if mtl_score is None or single_score is None:
        return None
    if math.isnan(mtl_score) or math.isnan(single_score):
        return None
    if single_score == 0:
        return 0.0 if mtl_score == 0 else None
    return float((mtl_score - single_score) / single_score)


def reliability_bins(confidence: Sequence[float], correct: Sequence[bool], n_bins: int = 15) -> dict[str, np.ndarray]:
    """Equal-width confidence bins on [0, 1] for a reliability diagram.

    Bin i covers [i/n_bins, (i+1)/n_bins); the last bin also includes 1.0.
    Returns arrays of length ``n_bins``: ``lower``, ``upper``,
    ``mean_confidence`` and ``accuracy`` (NaN for empty bins) and ``count``.
    """
    conf = np.asarray(confidence, dtype=float)
    corr = np.asarray(correct, dtype=float)
    if conf.shape != corr.shape or conf.ndim != 1:
        raise ValueError("confidence and correct must be 1-D and the same length")
    if n_bins < 1:
        raise ValueError("n_bins must be >= 1")
    # floor(conf * n_bins) gives [lo, hi) bins; clip puts conf == 1.0 in the last one.
    idx = np.clip(np.floor(np.clip(conf, 0.0, 1.0) * n_bins).astype(int), 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(idx, weights=conf, minlength=n_bins) / count
        accuracy = np.bincount(idx, weights=corr, minlength=n_bins) / count
    edges = np.arange(n_bins + 1) / n_bins
    return {
        "lower": edges[:-1],
        "upper": edges[1:],
        "mean_confidence": mean_conf,
        "accuracy": accuracy,
        "count": count,
    }


def ece_from_bins(bins: dict[str, np.ndarray]) -> float:
    """Expected calibration error from ``reliability_bins`` output (count-weighted |acc - conf|)."""
    count = np.asarray(bins["count"], dtype=float)
    total = count.sum()
    if total == 0:
        raise ValueError("no samples in bins")
    filled = count > 0
    gaps = np.abs(bins["accuracy"][filled] - bins["mean_confidence"][filled])
    return float(np.sum(count[filled] / total * gaps))


def expected_calibration_error(confidence: Sequence[float], correct: Sequence[bool], n_bins: int = 15) -> float:
    """ECE: sum over equal-width bins of (bin count / N) * |bin accuracy - bin mean confidence|.

    0 means the model's confidence matches how often it is right. Raises
    ValueError on empty input (undefined, and a caller bug to ask for).
    """
    if len(confidence) == 0:
        raise ValueError("expected_calibration_error needs at least one sample")
    return ece_from_bins(reliability_bins(confidence, correct, n_bins))
