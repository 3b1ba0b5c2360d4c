"""multitask_f1: per-task accuracy and macro-F1, and their mean, for one row of labels per task.

An `evaluate` metric module that lives in the ticket_router package and is loaded by path, offline:

    import evaluate
    from ticket_router import multitask_f1_path
    metric = evaluate.load(multitask_f1_path())
    metric.compute(predictions=[[0, 2], [1, 1]], references=[[0, 2], [1, -100]], task_names=["category", "queue"])

Each prediction and reference is a list with one class id per task. A reference of -100 means "not labeled for
this task": the row is left out of that task. A reference the model never saw (-1) counts as an error. The
scores are those of `ticket_router.metrics` (scikit-learn), the same as `metrics.json` and `ticket-router evaluate`.
"""

import datasets
import evaluate
import numpy as np

from ticket_router.metrics import task_metrics

_DESCRIPTION = __doc__
_KWARGS_DESCRIPTION = """
Args:
    predictions: one list of predicted class ids per row, one id per task.
    references: one list of gold class ids per row (-100: not labeled for that task).
    task_names: the name of each task, in column order (default: task0, task1, ...).
Returns:
    tasks: {name: {"accuracy", "macro_f1", "n"}} (None scores for a task with no labeled row);
    mean_macro_f1: the mean of the tasks' macro-F1 (None when no task has a labeled row).
"""


class MultitaskF1(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({
                "predictions": datasets.Sequence(datasets.Value("int64")),
                "references": datasets.Sequence(datasets.Value("int64")),
            }),
        )

    def _compute(self, predictions, references, task_names=None):
        predictions, references = np.asarray(predictions, dtype=np.int64), np.asarray(references, dtype=np.int64)
        if predictions.shape != references.shape or predictions.ndim != 2:
            raise ValueError(f"predictions {predictions.shape} and references {references.shape} must both be "
                             "(rows, tasks)")
        names = list(task_names or [f"task{t}" for t in range(references.shape[1])])
        if len(names) != references.shape[1]:
            raise ValueError(f"{len(names)} task_names for {references.shape[1]} task columns")
        tasks = {name: task_metrics(references[:, t], predictions[:, t]) for t, name in enumerate(names)}
        scores = [m["macro_f1"] for m in tasks.values() if m["macro_f1"] is not None]
        return {"tasks": tasks, "mean_macro_f1": float(np.mean(scores)) if scores else None}
