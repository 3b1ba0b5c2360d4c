"""Statistical tests between two models scored on the same tickets (paired bootstrap CI, McNemar, transfer ratio).

The scores themselves (accuracy, F1, calibration) live in `ticket_router.metrics`; their names are re-exported
here because callers have long imported them from this module. Pure numpy/scipy; no torch, no I/O. Every
function takes plain sequences/arrays so it can be tested on hand-made examples.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
from scipy import stats as sps

from ticket_router.metrics import (  # noqa: F401 - re-exported: callers import these names from here
    ece_from_bins,
    expected_calibration_error,
    macro_f1,
    reliability_bins,
    weighted_f1,
)

Metric = Callable[[np.ndarray, np.ndarray], float]

# Below this many discordant pairs the chi-square approximation is poor,
# so McNemar uses the exact binomial test instead.
MCNEMAR_EXACT_BELOW = 25


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
