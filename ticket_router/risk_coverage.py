"""Risk-coverage: what share of tickets a head can route on its own, and how often it is wrong on them.

Sort a head's tickets by confidence, most confident first; routing the top k of n automatically covers k/n of
them at the risk (error rate) of those k. The curve over every k shows a desk the trade-off it buys with a
confidence threshold; its area (AURC, lower is better) summarises it in one number. Gold rows labeled
UNSEEN_INDEX (a label the model never saw) count as errors; rows without a label (IGNORE_INDEX) are left out.

Pure numpy apart from the plot (matplotlib, Agg backend), so the shadow report can draw both sides' curves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .tasks import IGNORE_INDEX

ECE_BINS = 15  # as the shadow report's calibration section


@dataclass
class Outcomes:
    """One head on its labeled rows: the confidence of the predicted label and whether it was right."""

    confidence: np.ndarray
    correct: np.ndarray

    @classmethod
    def from_proba(cls, proba: np.ndarray, labels: np.ndarray) -> "Outcomes":
        keep = np.asarray(labels) != IGNORE_INDEX
        proba, labels = np.asarray(proba)[keep], np.asarray(labels)[keep]
        if len(labels) == 0:
            return cls(np.zeros(0), np.zeros(0, dtype=bool))
        return cls(proba.max(axis=1).astype(float), proba.argmax(axis=1) == labels)

    def __len__(self) -> int:
        return len(self.correct)

    def ece(self) -> float | None:
        from .metrics import expected_calibration_error  # sklearn: loaded when scoring, not by the CLI parser

        return expected_calibration_error(self.confidence, self.correct, ECE_BINS) if len(self) else None


def risk_coverage_curve(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(coverage, risk) at every k = 1..n of the tickets sorted by decreasing confidence."""
    confidence, correct = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=bool)
    if len(confidence) == 0:
        return np.zeros(0), np.zeros(0)
    order = np.argsort(-confidence, kind="stable")
    k = np.arange(1, len(order) + 1)
    return k / len(order), np.cumsum(~correct[order]) / k


def aurc(confidence: np.ndarray, correct: np.ndarray) -> float | None:
    """Area under the risk-coverage curve: the mean risk over every coverage k/n (0 is a perfect ranking)."""
    _, risk = risk_coverage_curve(confidence, correct)
    return float(risk.mean()) if len(risk) else None


def policy_outcome(outcomes: Outcomes, threshold: float | None) -> dict:
    """Coverage and precision of the tickets a head routes automatically (confidence >= threshold)."""
    if threshold is None:  # the target was out of reach: every ticket goes to review
        auto = np.zeros(len(outcomes), dtype=bool)
    else:
        auto = outcomes.confidence >= threshold
    n_auto = int(auto.sum())
    return {
        "coverage": n_auto / len(outcomes) if len(outcomes) else None,
        "auto_precision": float(outcomes.correct[auto].mean()) if n_auto else None,
        "auto_n": n_auto,
    }


def plot_risk_coverage(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str, path: str | Path,
    operating_points: Mapping[str, tuple[float, float]] | None = None, target_risk: float | None = None,
) -> Path:
    """One PNG with a risk-coverage curve per entry of `curves` (e.g. multi-task and single-task), each
    operating point (coverage, risk) of a stored policy as a marker, and the target risk (1 - target precision)
    as a dashed line: the coverage where a curve crosses it is what that target buys."""
    import matplotlib

    matplotlib.use("Agg")  # headless servers and CI
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    try:
        for name, (coverage, risk) in curves.items():
            ax.plot(coverage, risk, label=name)
        if target_risk is not None:
            ax.axhline(target_risk, linestyle="--", color="grey", label=f"target risk {target_risk:.2f}")
        for name, (coverage, risk) in (operating_points or {}).items():
            ax.plot([coverage], [risk], marker="o", linestyle="none", color="black")
            ax.annotate(name, (coverage, risk), textcoords="offset points", xytext=(6, -12), fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("coverage (share of tickets routed automatically)")
        ax.set_ylabel("risk (error rate among them)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left")
        fig.tight_layout()
        fig.savefig(path, dpi=90)
    finally:
        plt.close(fig)
    return Path(path)
