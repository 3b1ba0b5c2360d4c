"""The `multitask_f1` evaluate module (`multitask_f1.py` beside this file), and a Trainer `compute_metrics` on it.

`evaluate.load(multitask_f1_path())` reads the module from the installed package: no hub, no network.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np


def multitask_f1_path() -> str:
    """The path to hand to `evaluate.load`."""
    return str(Path(__file__).with_name("multitask_f1.py"))


def multitask_compute_metrics(task_names: Sequence[str]) -> Callable:
    """A `Trainer(compute_metrics=...)` callable for a model with one logit tensor per task, on `multitask_f1`.

    Keys are flat, as the Trainer logs them: `mean_macro_f1`, `<task>_accuracy`, `<task>_macro_f1` (0 for a task
    with no labeled row in the evaluation set).
    """
    import evaluate

    metric = evaluate.load(multitask_f1_path(), keep_in_memory=True)

    def compute_metrics(prediction) -> dict[str, float]:
        logits = prediction.predictions
        logits = logits if isinstance(logits, (tuple, list)) else (logits,)
        predicted = np.stack([np.asarray(task).argmax(-1) for task in logits], axis=1)
        result = metric.compute(predictions=predicted, references=np.asarray(prediction.label_ids),
                                task_names=list(task_names))
        flat = {"mean_macro_f1": result["mean_macro_f1"] or 0.0}
        for name, scores in result["tasks"].items():
            flat[f"{name}_accuracy"] = scores["accuracy"] or 0.0
            flat[f"{name}_macro_f1"] = scores["macro_f1"] or 0.0
        return flat

    return compute_metrics
