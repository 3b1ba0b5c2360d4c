"""The `multitask_f1` evaluate module: loaded by path from the package, offline, scoring as metrics.py does."""

import socket

import numpy as np
import pytest

from ticket_router import multitask_compute_metrics, multitask_f1_path
from ticket_router.metrics import multitask_metrics


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_loaded_by_path_offline_and_scores_as_metrics_py(no_network):
    import evaluate

    metric = evaluate.load(multitask_f1_path(), keep_in_memory=True)
    rng = np.random.default_rng(0)
    predicted, gold = rng.integers(0, 4, (200, 3)), rng.integers(0, 4, (200, 3))
    gold[rng.random((200, 3)) < 0.3] = -100  # unlabeled for that task
    gold[:5, 0] = -1  # a label the model never saw: an error
    result = metric.compute(predictions=predicted, references=gold, task_names=["a", "b", "c"])
    assert result == multitask_metrics(gold, [np.eye(4)[predicted[:, t]] for t in range(3)], ["a", "b", "c"])
    assert result["tasks"]["b"]["n"] == int((gold[:, 1] != -100).sum())
    with pytest.raises(ValueError, match="2 task_names for 3 task columns"):
        metric.compute(predictions=predicted, references=gold, task_names=["a", "b"])


def test_compute_metrics_for_a_trainer(no_network):
    from transformers import EvalPrediction

    logits = (np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]]), np.array([[0.0, 1.0, 0.0]] * 3))
    labels = np.array([[0, 1], [1, -100], [1, -100]])
    flat = multitask_compute_metrics(["urgency", "queue"])(EvalPrediction(predictions=logits, label_ids=labels))
    assert flat["urgency_accuracy"] == pytest.approx(2 / 3) and flat["queue_accuracy"] == 1.0
    assert flat["mean_macro_f1"] == pytest.approx((flat["urgency_macro_f1"] + flat["queue_macro_f1"]) / 2)
