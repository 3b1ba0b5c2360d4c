"""run_shadow end to end with fake routers (no model downloads, no training)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pytest
import torch

from ticket_router.errors import InputError
from ticket_router.shadow import VERDICT_BETTER, VERDICT_NO_GOLD, run_shadow

CATEGORIES = ["billing", "tech", "other"]
URGENCY = ["low", "high"]

Rule = Callable[[str], str]


def category_right(text: str) -> str:
    if "invoice" in text or "refund" in text:
        return "billing"
    return "tech" if "error" in text else "other"


def category_misses_refunds(text: str) -> str:
    # The single-task baseline in these tests gets every "refund" ticket wrong.
    return "other" if "refund" in text else category_right(text)


def urgency_rule(text: str) -> str:
    return "high" if "down" in text else "low"


def urgency_flipped(text: str) -> str:
    return "low" if "down" in text else "high"


class FakeRouter:
    """Duck-typed stand-in for ticket_router.router.Router."""

    def __init__(self, rules: dict[str, Rule], labels: dict[str, list[str]], hidden: int = 8):
        self.task_names = list(rules)
        self.labels = {t: labels[t] for t in rules}
        self.task_columns = {t: t for t in rules}
        self.text_columns = ["subject", "body"]
        self.model = torch.nn.Linear(hidden, sum(len(v) for v in self.labels.values()))
        self.device = torch.device("cpu")
        self.rules = rules
        self.calls = 0

    def predict_proba(self, texts: Sequence[str], batch_size: int = 32, show_progress: bool = False):
        self.calls += 1
        out = {}
        for task, rule in self.rules.items():
            labels = self.labels[task]
            proba = np.full((len(texts), len(labels)), 0.2 / (len(labels) - 1))
            for i, text in enumerate(texts):
                proba[i, labels.index(rule(text))] = 0.8
            out[task] = proba
        return out


LABELS = {"category": CATEGORIES, "urgency": URGENCY}

ROWS = (
    [("Invoice question", "please resend the invoice", "billing", "low")] * 8
    + [("Refund", "I want a refund", "billing", "low")] * 10
    + [("Site down", "error 500, everything is down", "tech", "high")] * 8
    + [("Hello", "just saying hi", "other", "")] * 6  # urgency not labeled on these rows
    + [("Legal", "question for legal", "legal", "low")]  # a category neither model has seen
)


def write_csv(path: Path, rows, with_gold: bool = True) -> Path:
    header = ["subject", "body", "category", "urgency"] if with_gold else ["subject", "body"]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in rows:
            writer.writerow(row if with_gold else row[:2])
    return path


@pytest.fixture
def setup(tmp_path: Path):
    """Model dirs on disk (so existence checks pass) and a loader returning fakes for them."""
    model_dir, baselines = tmp_path / "mtl", tmp_path / "baselines"
    for d in (model_dir, baselines / "category", baselines / "urgency"):
        d.mkdir(parents=True)
    routers = {
        model_dir: FakeRouter({"category": category_right, "urgency": urgency_rule}, LABELS),
        baselines / "category": FakeRouter({"category": category_misses_refunds}, LABELS, hidden=16),
        baselines / "urgency": FakeRouter({"urgency": urgency_rule}, LABELS, hidden=16),
    }

    def load(path: Path, device: str | None):
        return routers[Path(path)]

    kwargs = dict(n_bootstrap=200, latency_repeats=2, load_router=load)
    return tmp_path, model_dir, baselines, routers, kwargs


def strict_json(path: Path) -> dict:
    def reject(constant: str):
        raise ValueError(f"invalid JSON constant {constant}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=reject)


def test_report_schema_plots_and_verdicts(setup):
    tmp_path, model_dir, baselines, routers, kwargs = setup
    data = write_csv(tmp_path / "tickets.csv", ROWS)
    out = tmp_path / "report"
    result = run_shadow(model_dir, baselines, data, out, **kwargs)

    report = strict_json(out / "report.json")
    assert report == result
    assert report["n_tickets"] == len(ROWS)
    assert set(report["tasks"]) == {"category", "urgency"}
    for task, t in report["tasks"].items():
        for side in ("multitask", "single_task"):
            assert set(t[side]) >= {"accuracy", "macro_f1", "weighted_f1", "ece", "aurc"}
            assert all(isinstance(v, float) for v in t[side].values())
        for key in ("transfer_ratio", "mcnemar_p", "disagreement_rate", "verdict", "n_labeled", "examples"):
            assert key in t
        assert len(t["macro_f1_diff_ci95"]) == 2
        assert isinstance(t["negative_transfer"], bool)
        for name in (f"confusion_{task}_multitask.png", f"confusion_{task}_single_task.png", f"reliability_{task}.png",
                     f"risk_coverage_{task}.png"):
            assert (out / name).stat().st_size > 0

    cat = report["tasks"]["category"]
    assert cat["n_labeled"] == len(ROWS)
    assert cat["verdict"] == VERDICT_BETTER  # baseline misses all 10 refund tickets
    assert cat["macro_f1_diff_ci95"][0] > 0
    assert cat["negative_transfer"] is False
    assert cat["disagreement_rate"] == pytest.approx(10 / len(ROWS))
    assert cat["disagreements"] == {
        "n": 10, "n_with_gold": 10, "multitask_right": 10, "single_task_right": 0, "both_wrong": 0,
    }
    assert cat["unseen_gold_labels"] == {"legal": 1}
    # the unseen "legal" row is wrong for both models
    assert cat["multitask"]["accuracy"] == pytest.approx((len(ROWS) - 1) / len(ROWS))
    assert len(cat["examples"]) == 5 and all(len(e["text"]) <= 200 for e in cat["examples"])
    assert cat["examples"][0]["gold"] == "billing"

    urg = report["tasks"]["urgency"]
    assert urg["n_labeled"] == len(ROWS) - 6  # blank cells are "not labeled"
    assert urg["disagreement_rate"] == 0.0 and urg["mcnemar_p"] == 1.0
    assert urg["macro_f1_diff_ci95"] == [0.0, 0.0] and urg["verdict"] == "same within noise"

    lat = report["latency"]
    assert lat["multitask_ms_per_ticket"] > 0 and lat["single_task_ms_per_ticket"] > 0 and lat["speedup"] > 0
    # one warm-up + 2 timed runs on top of the prediction pass for each router
    assert routers[model_dir].calls == 1 + 3
    mem = report["memory"]
    assert mem["multitask"]["param_bytes"] == (8 * 5 + 5) * 4
    assert mem["single_task"]["param_bytes"] == ((16 * 3 + 3) + (16 * 2 + 2)) * 4
    assert mem["multitask"]["cuda_peak_allocated_bytes"] is None

    md = (out / "report.md").read_text(encoding="utf-8")
    assert "## Summary" in md and "## Cost" in md and "How to read this" in md
    assert "](confusion_category_multitask.png)" in md and "](reliability_urgency.png)" in md


def test_no_gold_labels_gives_disagreement_only_report(setup):
    tmp_path, model_dir, baselines, routers, kwargs = setup
    data = write_csv(tmp_path / "unlabeled.csv", ROWS, with_gold=False)
    out = tmp_path / "report"
    run_shadow(model_dir, baselines, data, out, max_examples=3, **kwargs)

    report = strict_json(out / "report.json")
    for t in report["tasks"].values():
        assert t["verdict"] == VERDICT_NO_GOLD
        assert t["n_labeled"] == 0
        assert t["multitask"] == {"accuracy": None, "macro_f1": None, "weighted_f1": None, "ece": None, "aurc": None}
        assert t["single_task"] == t["multitask"]
        assert t["transfer_ratio"] is None and t["macro_f1_diff_ci95"] is None and t["mcnemar_p"] is None
        assert t["disagreements"]["n_with_gold"] == 0
    cat = report["tasks"]["category"]
    assert cat["disagreement_rate"] == pytest.approx(10 / len(ROWS))
    assert len(cat["examples"]) == 3 and cat["examples"][0]["gold"] is None
    assert cat["examples"][0]["multitask"] == {"label": "billing", "confidence": pytest.approx(0.8)}
    assert not list(out.glob("*.png"))
    assert "no gold labels" in (out / "report.md").read_text(encoding="utf-8")


def test_task_on_one_side_only_is_skipped(setup):
    tmp_path, model_dir, baselines, routers, kwargs = setup
    (baselines / "urgency").rename(baselines / "queue")  # urgency has no baseline; queue has no head
    routers[baselines / "queue"] = routers.pop(baselines / "urgency")
    data = write_csv(tmp_path / "tickets.csv", ROWS)
    report = run_shadow(model_dir, baselines, data, tmp_path / "report", **kwargs)
    assert set(report["tasks"]) == {"category"}
    assert set(report["skipped_tasks"]) == {"urgency", "queue"}
    assert "queue" in report["skipped_tasks"]["urgency"]  # lists what is present


def test_no_baselines_at_all_is_an_input_error(setup):
    tmp_path, model_dir, baselines, routers, kwargs = setup
    for name in ("category", "urgency"):
        (baselines / name).rename(baselines / f"old_{name}")
    data = write_csv(tmp_path / "tickets.csv", ROWS)
    with pytest.raises(InputError, match=r"category.*present: old_category, old_urgency"):
        run_shadow(model_dir, baselines, data, tmp_path / "report", **kwargs)
    with pytest.raises(InputError, match="not found"):
        run_shadow(model_dir, tmp_path / "nowhere", data, tmp_path / "report", **kwargs)


def test_baseline_for_the_wrong_task_is_an_input_error(setup):
    tmp_path, model_dir, baselines, routers, kwargs = setup
    routers[baselines / "urgency"] = FakeRouter({"category": category_right}, LABELS)
    data = write_csv(tmp_path / "tickets.csv", ROWS)
    with pytest.raises(InputError, match="not 'urgency'"):
        run_shadow(model_dir, baselines, data, tmp_path / "report", **kwargs)
