"""The shadow comparison's computation: one task's gold labels and both models' predictions in, its report entry out.

Pure: no models, no files, no clock. `ticket_router.shadow` loads the models and runs them, this module scores
and compares their predictions, `ticket_router.shadow_report` turns the result into markdown and plots.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ticket_router import metrics, stats

VERDICT_BETTER = "better"
VERDICT_WORSE = "worse"
VERDICT_SAME = "same within noise"
VERDICT_NO_GOLD = "no gold labels"

NEGATIVE_TRANSFER_BELOW = -0.05  # transfer ratio under which the shared model is flagged
ECE_BINS = metrics.DEFAULT_ECE_BINS
EXAMPLE_TEXT_CHARS = 200
METRIC_NAMES = ("accuracy", "macro_f1", "weighted_f1", "ece", "aurc")  # aurc: area under the risk-coverage curve


@dataclass
class Predictions:
    """One model's answers for one task."""

    labels: np.ndarray  # predicted label strings, one per ticket
    confidence: np.ndarray  # top-class probability, one per ticket
    classes: list[str]  # every label the model knows, in head order (confusion-matrix axes)

    def subset(self, rows: np.ndarray) -> "Predictions":
        return Predictions(self.labels[rows], self.confidence[rows], self.classes)

    @classmethod
    def from_proba(cls, proba: np.ndarray, labels: Sequence[str], task: str, n: int) -> "Predictions":
        proba = np.asarray(proba, dtype=float)
        if proba.shape != (n, len(labels)):
            raise ValueError(f"task {task!r}: expected probabilities of shape {(n, len(labels))}, got {proba.shape}")
        top = proba.argmax(axis=1)
        return cls(np.asarray(labels, dtype=object)[top].astype(str), proba.max(axis=1), list(labels))


@dataclass
class LabeledPredictions:
    """Both models on the rows that have a gold label: what the metrics, and the plots, are drawn from."""

    gold: np.ndarray
    multitask: Predictions
    single_task: Predictions


@dataclass
class TaskComparison:
    """One task's ``report.json`` entry, and the labeled predictions behind it (None without gold labels)."""

    entry: dict[str, Any]
    labeled: LabeledPredictions | None


def verdict(ci: tuple[float, float] | None) -> str:
    """better / worse when the 95% CI of (a - b) excludes 0, else same within noise; no gold labels without a CI."""
    if ci is None:
        return VERDICT_NO_GOLD
    if ci[0] > 0:
        return VERDICT_BETTER
    if ci[1] < 0:
        return VERDICT_WORSE
    return VERDICT_SAME


def _null_metrics() -> dict[str, None]:
    return {name: None for name in METRIC_NAMES}


def _score(gold: np.ndarray, pred: Predictions) -> dict[str, float]:
    from ticket_router.risk_coverage import aurc

    return {**metrics.prediction_scores(gold, pred.labels, pred.confidence, ECE_BINS),
            "aurc": aurc(pred.confidence, pred.labels == gold)}


def _disagreement_counts(gold: np.ndarray | None, multi: Predictions, single: Predictions) -> dict[str, int]:
    differ = multi.labels != single.labels
    counts = {"n": int(differ.sum()), "n_with_gold": 0, "multitask_right": 0, "single_task_right": 0, "both_wrong": 0}
    if gold is not None:
        labeled = differ & (gold != None)  # noqa: E711 - elementwise on an object array
        counts["n_with_gold"] = int(labeled.sum())
        counts["multitask_right"] = int((labeled & (multi.labels == gold)).sum())
        counts["single_task_right"] = int((labeled & (single.labels == gold)).sum())
        counts["both_wrong"] = counts["n_with_gold"] - counts["multitask_right"] - counts["single_task_right"]
    return counts


def _truncate(text: str, limit: int = EXAMPLE_TEXT_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _examples(
    texts: Sequence[str], gold: np.ndarray | None, multi: Predictions, single: Predictions, limit: int
) -> list[dict[str, Any]]:
    """Up to ``limit`` disagreeing tickets, labeled ones first (they show who was right).

    ``row`` is the 1-based data row (header not counted) so users can find the ticket in their file.
    """
    rows = np.flatnonzero(multi.labels != single.labels)
    if gold is not None:
        rows = sorted(rows, key=lambda i: gold[i] is None)  # stable: file order within each group
    return [
        {
            "row": int(i) + 1,  # 1-based data row, as in the data module's messages
            "text": _truncate(texts[i]),
            "multitask": {"label": str(multi.labels[i]), "confidence": float(multi.confidence[i])},
            "single_task": {"label": str(single.labels[i]), "confidence": float(single.confidence[i])},
            "gold": None if gold is None else gold[i],
        }
        for i in list(rows)[:limit]
    ]


def _labeled_statistics(both: LabeledPredictions, n_bootstrap: int, seed: int) -> dict[str, Any]:
    """Metrics of both sides, the paired CI of their macro-F1 difference, McNemar, transfer, unseen gold labels."""
    y, m, s = both.gold, both.multitask, both.single_task
    multi_scores, single_scores = _score(y, m), _score(y, s)
    ratio = stats.transfer_ratio(multi_scores["macro_f1"], single_scores["macro_f1"])
    ci = stats.paired_bootstrap_diff_ci(y, m.labels, s.labels, metrics.macro_f1, n_bootstrap, 0.95, seed)
    seen = set(m.classes) | set(s.classes)
    unseen, counts = np.unique([g for g in y if g not in seen], return_counts=True)
    return {
        "multitask": multi_scores,
        "single_task": single_scores,
        "transfer_ratio": ratio,
        "macro_f1_diff": multi_scores["macro_f1"] - single_scores["macro_f1"],
        "macro_f1_diff_ci95": list(ci),
        "mcnemar_p": stats.mcnemar_p_value(m.labels == y, s.labels == y),
        "negative_transfer": ratio is not None and ratio < NEGATIVE_TRANSFER_BELOW,
        "unseen_gold_labels": {str(k): int(v) for k, v in zip(unseen, counts)},
    }


def compare_task(
    texts: Sequence[str], gold_all: Sequence[str | None] | None, multi: Predictions, single: Predictions,
    *, n_bootstrap: int, seed: int, max_examples: int,
) -> TaskComparison:
    """The per-task report entry; metrics and CI only when some rows have a gold label.

    ``plots`` stays empty: the report renderer names the files it draws there.
    """
    gold = None if gold_all is None else np.asarray(gold_all, dtype=object)
    labeled = np.zeros(len(texts), dtype=bool) if gold is None else gold != None  # noqa: E711
    entry: dict[str, Any] = {
        "n_labeled": int(labeled.sum()),
        "multitask": _null_metrics(),
        "single_task": _null_metrics(),
        "transfer_ratio": None,
        "macro_f1_diff": None,
        "macro_f1_diff_ci95": None,
        "mcnemar_p": None,
        "negative_transfer": None,
        "disagreement_rate": float(np.mean(multi.labels != single.labels)),
        "disagreements": _disagreement_counts(gold, multi, single),
        "examples": _examples(texts, gold, multi, single, max_examples),
        "unseen_gold_labels": {},
        "plots": {},
    }
    both = None
    if labeled.any():
        both = LabeledPredictions(gold[labeled].astype(str), multi.subset(labeled), single.subset(labeled))
        entry.update(_labeled_statistics(both, n_bootstrap, seed))
    entry["verdict"] = verdict(None if both is None else tuple(entry["macro_f1_diff_ci95"]))
    return TaskComparison(entry, both)
