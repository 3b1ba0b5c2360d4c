"""baselines -> shadow end to end through the CLI, with a tiny random DistilBERT."""

import json

import pytest

from conftest import harbor_rows, write_csv
from ticket_router.cli import main
from ticket_router.data import read_table
from ticket_router.router import Router

COMMON = ["--text-columns", "subject,body", "--task", "category", "--task", "urgency", "--task", "queue",
          "--max-steps", "6", "--batch-size", "8", "--max-length", "32", "--seed", "1", "--lexical-weight", "0.5"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, distilbert_dir):
    tmp = tmp_path_factory.mktemp("shadow")
    train = write_csv(tmp / "train.csv", harbor_rows("train", 80))
    val = write_csv(tmp / "val.csv", harbor_rows("validation", 40))
    common = [*COMMON, "--train", str(train), "--backbone", str(distilbert_dir)]
    assert main(["-q", "train", *common, "--output", str(tmp / "mtl")]) == 0
    assert main(["-q", "baselines", *common, "--output", str(tmp / "single")]) == 0
    return tmp, val


def test_baselines_are_single_head_routers_trained_on_their_labeled_rows(trained):
    tmp, _ = trained
    for task in ("category", "urgency", "queue"):
        router = Router.from_pretrained(tmp / "single" / task)
        assert router.task_names == [task]
        config = json.loads((tmp / "single" / task / "training_config.json").read_text())
        assert config["max_steps"] == 6 and config["seed"] == 1 and config["max_length"] == 32
        assert config["drop_partial_rows"] is True


def test_shadow_report_schema_and_plots(trained):
    tmp, val = trained
    report_dir = tmp / "report"
    assert main(["-q", "shadow", "--model", str(tmp / "mtl"), "--baselines", str(tmp / "single"), "--data", str(val),
                 "--report", str(report_dir), "--bootstrap", "50", "--latency-repeats", "2"]) == 0
    report = json.loads((report_dir / "report.json").read_text())
    assert set(report["tasks"]) == {"category", "urgency", "queue"}
    for name, task in report["tasks"].items():
        for side in ("multitask", "single_task"):
            assert set(task[side]) >= {"accuracy", "macro_f1", "weighted_f1", "ece"}
        lo, hi = task["macro_f1_diff_ci95"]
        assert lo <= hi
        assert 0 <= task["mcnemar_p"] <= 1 and 0 <= task["disagreement_rate"] <= 1
        assert isinstance(task["negative_transfer"], bool)
        for plot in (f"confusion_{name}_multitask.png", f"confusion_{name}_single_task.png", f"reliability_{name}.png"):
            assert (report_dir / plot).stat().st_size > 1000, plot
    latency = report["latency"]
    assert latency["multitask_ms_per_ticket"] > 0 and latency["single_task_ms_per_ticket"] > 0
    assert latency["speedup"] == pytest.approx(latency["single_task_ms_per_ticket"] / latency["multitask_ms_per_ticket"], rel=0.01)
    markdown = (report_dir / "report.md").read_text()
    assert "confusion_queue_multitask.png" in markdown


def test_shadow_without_gold_labels_reports_disagreement_only(trained):
    tmp, _ = trained
    live = write_csv(tmp / "live.csv", [{"subject": r["subject"], "body": r["body"]} for r in harbor_rows("test", 20)])
    assert main(["-q", "shadow", "--model", str(tmp / "mtl"), "--baselines", str(tmp / "single"), "--data", str(live),
                 "--report", str(tmp / "live_report"), "--latency-repeats", "1"]) == 0
    report = json.loads((tmp / "live_report" / "report.json").read_text())
    for task in report["tasks"].values():
        assert task["multitask"]["macro_f1"] is None and task["verdict"] == "no gold labels"
        assert 0 <= task["disagreement_rate"] <= 1


def test_shadow_can_compare_the_encoders_alone(trained):
    tmp, val = trained
    assert main(["-q", "shadow", "--model", str(tmp / "mtl"), "--baselines", str(tmp / "single"), "--data", str(val),
                 "--report", str(tmp / "encoders"), "--bootstrap", "20", "--latency-repeats", "1",
                 "--lexical-weight", "0"]) == 0
    report = json.loads((tmp / "encoders" / "report.json").read_text())
    table = read_table(val)
    for side, router in (("multitask", Router.from_pretrained(tmp / "mtl")),
                         ("single_task", Router.from_pretrained(tmp / "single" / "urgency"))):
        assert router.lexical is not None  # trained with lexical heads, compared without them
        proba = router.encoder_proba(router.texts_from_table(table, str(val)))["urgency"]
        labeled = [(gold, p) for gold, p in zip(table["urgency"], proba) if gold]
        accuracy = sum(router.labels["urgency"][p.argmax()] == gold for gold, p in labeled) / len(labeled)
        assert report["tasks"]["urgency"][side]["accuracy"] == pytest.approx(accuracy)
