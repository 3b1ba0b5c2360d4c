"""The real default backbone (packaged all-MiniLM-L6-v2) through the CLI: train -> evaluate -> predict.

The default-suite test uses a small slice of the embedded Harbor data (about a minute on 2 cores) and must beat
the majority class on every task. The `slow` test does the same on the shared support tickets.
"""

import json
from collections import Counter
from pathlib import Path

import pytest

from conftest import REPO, harbor_rows, write_csv
from ticket_router.cli import main

SHARED = REPO.parent / "shared" / "data" / "support-tickets"


def majority_macro_f1(train_rows, eval_rows, column):
    """Macro-F1 and accuracy of always answering the most frequent training label."""
    from sklearn.metrics import f1_score

    majority = Counter(r[column] for r in train_rows if r[column]).most_common(1)[0][0]
    gold = [r[column] for r in eval_rows if r[column]]
    predicted = [majority] * len(gold)
    return f1_score(gold, predicted, average="macro", zero_division=0), sum(g == majority for g in gold) / len(gold)


def _train_evaluate_predict(tmp_path: Path, train: Path, val: Path, tasks: dict[str, str], extra: list[str]):
    task_flags = [flag for name, column in tasks.items() for flag in ("--task", f"{name}={column}")]
    model = tmp_path / "model"
    assert main(["-q", "train", "--train", str(train), "--validation", str(val), "--text-columns", "subject,body",
                 *task_flags, "--output", str(model), "--pooling", "mean", "--class-weights",
                 "--learning-rate", "1e-4", "--head-learning-rate", "2e-3", *extra]) == 0
    assert main(["-q", "evaluate", "--model", str(model), "--data", str(val), "--output", str(tmp_path / "m.json")]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert main(["-q", "predict", "--model", str(model), "--input", str(val), "--output", str(tmp_path / "p.jsonl")]) == 0
    predictions = (tmp_path / "p.jsonl").read_text().splitlines()
    return metrics, predictions


def test_minilm_on_harbor_slice_beats_majority_on_every_task(tmp_path):
    train_rows, val_rows = harbor_rows("train", 640), harbor_rows("validation", 200)
    train, val = write_csv(tmp_path / "train.csv", train_rows), write_csv(tmp_path / "val.csv", val_rows)
    tasks = {"category": "category", "urgency": "urgency", "queue": "queue"}
    metrics, predictions = _train_evaluate_predict(
        tmp_path, train, val, tasks, ["--epochs", "1", "--max-length", "64", "--batch-size", "16"])
    assert len(predictions) == len(val_rows)
    for task, column in tasks.items():
        f1_majority, _ = majority_macro_f1(train_rows, val_rows, column)
        assert metrics["tasks"][task]["macro_f1"] > f1_majority + 0.05, (task, metrics["tasks"][task], f1_majority)


@pytest.mark.slow
@pytest.mark.skipif(not SHARED.is_dir(), reason="shared support-ticket data not present")
def test_minilm_on_shared_support_tickets_beats_majority(tmp_path):
    import csv

    def rows(name):
        with (SHARED / name).open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))

    tasks = {"category": "type", "urgency": "priority", "queue": "queue"}
    metrics, _ = _train_evaluate_predict(
        tmp_path, SHARED / "train.csv", SHARED / "validation.csv", tasks, ["--epochs", "1", "--max-length", "128"])
    for task, column in tasks.items():
        f1_majority, _ = majority_macro_f1(rows("train.csv"), rows("validation.csv"), column)
        assert metrics["tasks"][task]["macro_f1"] > f1_majority, (task, metrics["tasks"][task], f1_majority)
