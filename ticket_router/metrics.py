"""Per-task accuracy and macro-F1 with scikit-learn (no hub metric scripts: these machines are offline).

Rows without a gold label for a task (IGNORE_INDEX) are left out of that task. A gold label the model never saw
(UNSEEN_INDEX) stays in: it can never be predicted, so it counts as an error and as a class with F1 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from sklearn.metrics import f1_score

from .tasks import IGNORE_INDEX


def task_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float | int]:
    keep = y_true != IGNORE_INDEX
    y_true, y_pred = y_true[keep], y_pred[keep]
    if len(y_true) == 0:
        return {"accuracy": None, "macro_f1": None, "n": 0}
    return {
        "accuracy": float(np.mean(y_true == y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "n": int(len(y_true)),
    }


def mean_macro_f1(per_task: dict[str, dict]) -> float | None:
    scores = [m["macro_f1"] for m in per_task.values() if m["macro_f1"] is not None]
    return float(np.mean(scores)) if scores else None


def multitask_metrics(labels: np.ndarray, logits: Sequence[np.ndarray], task_names: Sequence[str]) -> dict:
    """{"tasks": {name: {accuracy, macro_f1, n}}, "mean_macro_f1"} from a label matrix and per-task logits."""
    per_task = {
        name: task_metrics(labels[:, t], np.asarray(logits[t]).argmax(-1)) for t, name in enumerate(task_names)
    }
    return {"tasks": per_task, "mean_macro_f1": mean_macro_f1(per_task)}


def compute_metrics_fn(task_names: Sequence[str]) -> Callable:
    """A `Trainer(compute_metrics=...)` callable; flat keys such as `queue_macro_f1` and `mean_macro_f1`."""

    def compute_metrics(prediction) -> dict[str, float]:
        logits = prediction.predictions
        logits = logits if isinstance(logits, (tuple, list)) else (logits,)
        result = multitask_metrics(np.asarray(prediction.label_ids), logits, task_names)
        flat = {"mean_macro_f1": result["mean_macro_f1"] or 0.0}
        for name, metrics in result["tasks"].items():
            flat[f"{name}_accuracy"] = metrics["accuracy"] or 0.0
            flat[f"{name}_macro_f1"] = metrics["macro_f1"] or 0.0
        return flat

    return compute_metrics
