"""PNG plots for the shadow-comparison report (confusion matrices, reliability diagrams)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

# Reports are written on headless servers/CI: force the non-interactive backend
# before pyplot is imported so no display is ever needed.
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ticket_router.metrics import ece_from_bins  # noqa: E402

MAX_TICK_CHARS = 28  # long label strings would otherwise push the matrix off the figure
ANNOTATE_UP_TO = 20  # beyond this many classes, cell numbers become unreadable


def _short(label: str) -> str:
    label = str(label)
    return label if len(label) <= MAX_TICK_CHARS else label[: MAX_TICK_CHARS - 1] + "…"


def _row_normalised_confusion(y_true: Sequence, y_pred: Sequence, labels: Sequence[str]) -> np.ndarray:
    index = {label: i for i, label in enumerate(labels)}
    counts = np.zeros((len(labels), len(labels)), dtype=float)
    for t, p in zip(y_true, y_pred):
        counts[index[t], index[p]] += 1
    row_sums = counts.sum(axis=1, keepdims=True)
    # Rows with no gold examples stay all-zero instead of 0/0 = NaN.
    return np.divide(counts, row_sums, out=np.zeros_like(counts), where=row_sums > 0)


def plot_confusion_matrix(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str], title: str, path: str | Path
) -> Path:
    """Row-normalised confusion matrix (rows = gold, columns = predicted) saved as PNG.

    ``labels`` are the model's classes in display order. Gold or predicted
    values outside it (e.g. a gold label the model never saw) are appended and
    marked "(unseen)", so their row shows where those tickets went.
    """
    y_true, y_pred = [str(v) for v in y_true], [str(v) for v in y_pred]
    known = [str(v) for v in labels]
    extra = sorted((set(y_true) | set(y_pred)) - set(known))
    all_labels = known + extra
    matrix = _row_normalised_confusion(y_true, y_pred, all_labels)
    ticks = [_short(v) for v in known] + [_short(v) + " (unseen)" for v in extra]

    n = len(all_labels)
    size = min(4.0 + 0.45 * n, 24.0)  # grow with the class count, but stay bounded
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    try:
        image = ax.imshow(matrix, cmap="Blues", vmin=0.0, vmax=1.0)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of gold row")
        ax.set_xticks(range(n), ticks, rotation=45, ha="right", rotation_mode="anchor")
        ax.set_yticks(range(n), ticks)
        ax.set_xlabel("predicted")
        ax.set_ylabel("gold")
        ax.set_title(title)
        if n <= ANNOTATE_UP_TO:
            for i in range(n):
                for j in range(n):
                    if matrix[i, j] > 0:
                        colour = "white" if matrix[i, j] > 0.5 else "black"
                        ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", color=colour, fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)  # long report runs would otherwise leak figures
    return Path(path)


def _bin_ece(bins: Mapping[str, np.ndarray]) -> float:
    # Shown in the legend; NaN (not an exception) for a model with no samples.
    return ece_from_bins(bins) if np.sum(bins["count"]) > 0 else float("nan")


def plot_reliability(
    bins_mtl: Mapping[str, np.ndarray], bins_single: Mapping[str, np.ndarray], title: str, path: str | Path
) -> Path:
    """Reliability diagram of both models on one plot, with the perfect-calibration diagonal.

    ``bins_*`` are ``ticket_router.metrics.reliability_bins`` outputs. Points
    below the diagonal mean over-confidence. A lower panel shows how many
    tickets fall in each bin, since sparse bins are noisy.
    """
    fig, (ax, ax_count) = plt.subplots(
        2, 1, figsize=(6.0, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    try:
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
        width = float(np.asarray(bins_mtl["upper"])[0] - np.asarray(bins_mtl["lower"])[0])
        series = (("multi-task", bins_mtl, "tab:blue", -0.2), ("single-task", bins_single, "tab:orange", 0.2))
        for name, bins, colour, shift in series:
            count = np.asarray(bins["count"])
            filled = count > 0
            ax.plot(
                np.asarray(bins["mean_confidence"])[filled],
                np.asarray(bins["accuracy"])[filled],
                marker="o",
                color=colour,
                label=f"{name} (ECE {_bin_ece(bins):.3f})",
            )
            centres = (np.asarray(bins["lower"]) + np.asarray(bins["upper"])) / 2
            ax_count.bar(centres + shift * width, count, width=width * 0.4, color=colour)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_ylabel("accuracy in bin")
        ax.set_title(title)
        ax.legend(loc="upper left")
        ax_count.set_xlabel("confidence (top-class probability)")
        ax_count.set_ylabel("tickets")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return Path(path)
