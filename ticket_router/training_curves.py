"""`training_curves.png`: per-task losses, loss weights and encoder-gradient norms / cosines over training.

Drawn from the Trainer's log history (`loss_<task>`, `weight_<task>`, `grad_norm_<task>`, `grad_cos_<a>_<b>`),
so that a head that lags comes with its likely cause: a weight pushed down, a gradient dwarfed by the others',
or a gradient pointing against another task's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import matplotlib

matplotlib.use("Agg")  # headless servers and CI: never a display
import matplotlib.pyplot as plt  # noqa: E402

_PANELS = (
    ("loss_", "task loss (mean over the logging window)", False),
    ("weight_", "loss weight", False),
    ("grad_norm_", "encoder gradient norm (weighted task loss)", True),
    ("grad_cos_", "encoder gradient cosine between tasks", False),
)


def _series(log_history: Sequence[dict], prefix: str) -> dict[str, tuple[list[int], list[float]]]:
    series: dict[str, tuple[list[int], list[float]]] = {}
    for entry in log_history:
        for key, value in entry.items():
            if key.startswith(prefix) and isinstance(value, (int, float)) and "step" in entry:
                steps, values = series.setdefault(key[len(prefix):], ([], []))
                steps.append(entry["step"])
                values.append(value)
    return series


def draw_training_curves(log_history: Sequence[dict], path: str | Path | BinaryIO) -> Path | BinaryIO | None:
    """Save the figure as PNG to `path` (a file name, or a binary stream such as io.BytesIO); None (and nothing
    written) when the history holds no per-task entry."""
    panels = [(prefix, title, log, _series(log_history, prefix)) for prefix, title, log in _PANELS]
    panels = [panel for panel in panels if panel[3]]
    if not panels:
        return None
    figure, axes = plt.subplots(len(panels), 1, figsize=(7, 2.6 * len(panels)), sharex=True, squeeze=False)
    for axis, (prefix, title, log_scale, series) in zip(axes[:, 0], panels):
        for name, (steps, values) in sorted(series.items()):
            axis.plot(steps, values, marker="." if len(steps) < 30 else None, label=name)
        if log_scale:
            axis.set_yscale("log")
        if prefix == "grad_cos_":
            axis.axhline(0.0, color="grey", linewidth=0.8)
        axis.set_title(title, fontsize=10)
        axis.legend(fontsize=8, loc="best")
    axes[-1, 0].set_xlabel("optimizer step")
    figure.tight_layout()
    path = path if hasattr(path, "write") else Path(path)
    figure.savefig(path, dpi=110, format="png")
    plt.close(figure)
    return path
