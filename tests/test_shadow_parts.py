"""The shadow comparison's parts on their own: the pure comparison, the renderer's block registry, the scores."""

from __future__ import annotations

import numpy as np

from ticket_router import metrics, shadow_report, stats
from ticket_router.shadow_compare import VERDICT_NO_GOLD, VERDICT_WORSE, Predictions, compare_task

TEXTS = [f"ticket {i}" for i in range(40)]


def _predictions(labels: list[str], confidence: float = 0.9) -> Predictions:
    return Predictions(np.asarray(labels, dtype=object).astype(str), np.full(len(labels), confidence), ["a", "b"])


def test_compare_task_scores_both_sides_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    gold = ["a"] * 20 + ["b"] * 20
    multi = _predictions(["b"] * 20 + ["b"] * 20)  # wrong on every "a"
    single = _predictions(gold)
    compared = compare_task(TEXTS, gold, multi, single, n_bootstrap=200, seed=0, max_examples=3)
    entry = compared.entry
    assert entry["verdict"] == VERDICT_WORSE and entry["single_task"]["accuracy"] == 1.0
    assert entry["multitask"]["accuracy"] == 0.5 and entry["disagreements"]["single_task_right"] == 20
    assert entry["plots"] == {} and not list(tmp_path.iterdir())  # drawing is the renderer's job
    assert list(compared.labeled.gold) == gold and len(entry["examples"]) == 3


def test_compare_task_without_gold_has_no_labeled_part():
    compared = compare_task(TEXTS, None, _predictions(["a"] * 40), _predictions(["b"] * 40),
                            n_bootstrap=10, seed=0, max_examples=0)
    assert compared.labeled is None and compared.entry["verdict"] == VERDICT_NO_GOLD
    assert compared.entry["disagreement_rate"] == 1.0 and compared.entry["multitask"]["macro_f1"] is None


def _report(entry: dict) -> dict:
    return {"model_dir": "m", "baselines_dir": "b", "data_path": "d.csv", "n_tickets": 40, "device": "cpu",
            "tasks": {"queue": {"gold_column": "queue", **entry}}, "skipped_tasks": {},
            "latency": {"n_tickets_timed": 40, "batch_size": 8, "repeats": 1, "speedup": 2.0,
                        "multitask_ms_per_ticket": 1.0, "single_task_ms_per_ticket": 2.0},
            "memory": {"multitask": {"param_bytes": 2**20, "cuda_peak_allocated_bytes": None},
                       "single_task": {"param_bytes": 2**21, "cuda_peak_allocated_bytes": None}}}


def test_a_new_per_task_block_is_one_entry_in_the_registry(monkeypatch):
    entry = compare_task(TEXTS, None, _predictions(["a"] * 40), _predictions(["a"] * 40),
                         n_bootstrap=10, seed=0, max_examples=0).entry

    def conflict_block(task, t, report):
        return [f"Gradient conflict of {task}: none.", ""]

    blocks = shadow_report.TASK_BLOCKS
    monkeypatch.setattr(shadow_report, "TASK_BLOCKS", (blocks[0], conflict_block, *blocks[1:]))
    text = shadow_report.render_markdown(_report(entry))
    verdict_at, block_at = text.index("Verdict: **no gold labels**"), text.index("Gradient conflict of queue: none.")
    assert verdict_at < block_at < text.index("The models disagree on 0 tickets")


def test_one_scoring_module_serves_the_statistics_names():
    assert stats.macro_f1 is metrics.macro_f1 and stats.expected_calibration_error is metrics.expected_calibration_error
    scores = metrics.label_scores(["x", "y", "y"], ["x", "y", "x"])
    assert scores["n"] == 3 and abs(scores["accuracy"] - 2 / 3) < 1e-12
    ids = metrics.task_metrics(np.array([0, 1, 1, -100]), np.array([0, 1, 0, 1]))
    assert ids["macro_f1"] == scores["macro_f1"] and ids["n"] == 3  # ids and label strings count alike


def test_the_training_gradient_conflict_stands_beside_each_verdict():
    entry = compare_task(TEXTS, None, _predictions(["a"] * 40), _predictions(["a"] * 40),
                         n_bootstrap=10, seed=0, max_examples=0).entry
    report = _report(entry)
    assert "Training gradients" not in shadow_report.render_markdown(report)  # trained without the conflict log
    report["gradient_conflict"] = {
        "steps_logged": 6, "mean_grad_norm": {"queue": 0.5, "first_line": 2.0, "type": 1.0},
        "pairs": {"first_line_queue": {"mean_cosine": -0.25, "negative_share": 0.75},
                  "first_line_type": {"mean_cosine": 0.1, "negative_share": 0.0},
                  "queue_type": {"mean_cosine": 0.05, "negative_share": 0.5}}}
    text = shadow_report.render_markdown(report)
    assert text.index("Verdict:") < text.index("Training gradients on the shared encoder (6 logged steps)")
    assert "- first_line_queue: mean cosine -0.250, negative on 75% of the logged steps" in text
    assert "- queue_type: mean cosine 0.050, negative on 50%" in text
    assert "first_line_type" not in text  # a pair without this head belongs to the others' sections
