"""Scores: accuracy, macro-/weighted-F1 and calibration, per task and per prediction set (the one scoring module).

Everything that turns gold labels and predictions into a number lives here: the Trainer's `compute_metrics`,
`evaluate`, the shadow comparison and the benchmarks all call these functions, so they count alike. Statistical
tests over two models' scores (bootstrap CIs, McNemar) live in `ticket_router.stats`.

F1 is taken over the union of gold and predicted labels, so a gold label the model never predicts (or never saw)
counts as a class with F1 0 instead of silently vanishing. In label-id matrices, rows without a gold label for a
task (IGNORE_INDEX) are left out of that task; a gold label the model never saw (UNSEEN_INDEX) stays in: it can
never be predicted, so it counts as an error. Pure numpy / scikit-learn, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import f1_score

from .tasks import IGNORE_INDEX

DEFAULT_ECE_BINS = 15


def accuracy(y_true: Sequence, y_pred: Sequence) -> float:
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def _f1(y_true: Sequence, y_pred: Sequence, average: str) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels = np.union1d(y_true, y_pred)
    return float(f1_score(y_true, y_pred, labels=labels, average=average, zero_division=0))


def macro_f1(y_true: Sequence, y_pred: Sequence) -> float:
    """Unweighted mean of per-class F1 over the union of gold and predicted labels."""
    return _f1(y_true, y_pred, "macro")


def weighted_f1(y_true: Sequence, y_pred: Sequence) -> float:
    """Per-class F1 averaged with gold-class support as weights (same label union as macro_f1)."""
    return _f1(y_true, y_pred, "weighted")


def label_scores(y_true: Sequence, y_pred: Sequence) -> dict[str, float | int]:
    """Accuracy, macro-F1 and n of label strings (any objects are compared as strings)."""
    y_true = np.asarray(y_true, dtype=object).astype(str)
    y_pred = np.asarray(y_pred, dtype=object).astype(str)
    return {"accuracy": accuracy(y_true, y_pred), "macro_f1": macro_f1(y_true, y_pred), "n": len(y_true)}


# --------------------------------------------------------------------------- calibration


def reliability_bins(confidence: Sequence[float], correct: Sequence[bool],
                     n_bins: int = DEFAULT_ECE_BINS) -> dict[str, np.ndarray]:
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
        acc = np.bincount(idx, weights=corr, minlength=n_bins) / count
    edges = np.arange(n_bins + 1) / n_bins
    return {"lower": edges[:-1], "upper": edges[1:], "mean_confidence": mean_conf, "accuracy": acc, "count": count}


def ece_from_bins(bins: dict[str, np.ndarray]) -> float:
    """Expected calibration error from ``reliability_bins`` output (count-weighted |acc - conf|)."""
    count = np.asarray(bins["count"], dtype=float)
    total = count.sum()
    if total == 0:
        raise ValueError("no samples in bins")
    filled = count > 0
    gaps = np.abs(bins["accuracy"][filled] - bins["mean_confidence"][filled])
    return float(np.sum(count[filled] / total * gaps))


def expected_calibration_error(confidence: Sequence[float], correct: Sequence[bool],
                               n_bins: int = DEFAULT_ECE_BINS) -> float:
    """ECE: sum over equal-width bins of (bin count / N) * |bin accuracy - bin mean confidence|.

    0 means the model's confidence matches how often it is right. Raises
    ValueError on empty input (undefined, and a caller bug to ask for).
    """
    if len(confidence) == 0:
        raise ValueError("expected_calibration_error needs at least one sample")
    return ece_from_bins(reliability_bins(confidence, correct, n_bins))


def prediction_scores(gold: Sequence, predicted: Sequence, confidence: Sequence[float],
                      n_bins: int = DEFAULT_ECE_BINS) -> dict[str, float]:
    """Accuracy, macro-F1, weighted-F1 and ECE of one model's labels and top-class confidences."""
    gold, predicted = np.asarray(gold), np.asarray(predicted)
    correct = predicted == gold
    return {
        "accuracy": float(correct.mean()),
        "macro_f1": macro_f1(gold, predicted),
        "weighted_f1": weighted_f1(gold, predicted),
        "ece": expected_calibration_error(confidence, correct, n_bins),
    }


# --------------------------------------------------------------------------- per task, from label ids


def task_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float | int]:
    keep = y_true != IGNORE_INDEX
    y_true, y_pred = y_true[keep], y_pred[keep]
    if len(y_true) == 0:
        return {"accuracy": None, "macro_f1": None, "n": 0}
    return {"accuracy": accuracy(y_true, y_pred), "macro_f1": macro_f1(y_true, y_pred), "n": int(len(y_true))}


def mean_macro_f1(per_task: dict[str, dict]) -> float | None:
    """Mean of the tasks' macro-F1, tasks without a score (no gold labels) left out."""
    scores = [m["macro_f1"] for m in per_task.values() if m.get("macro_f1") is not None]
    return float(np.mean(scores)) if scores else None


def multitask_metrics(labels: np.ndarray, logits: Sequence[np.ndarray], task_names: Sequence[str]) -> dict:
    """{"tasks": {name: {accuracy, macro_f1, n}}, "mean_macro_f1"} from a label matrix and per-task logits."""
    per_task = {
        name: task_metrics(labels[:, t], np.asarray(logits[t]).argmax(-1)) for t, name in enumerate(task_names)
    }
    return {"tasks": per_task, "mean_macro_f1": mean_macro_f1(per_task)}
