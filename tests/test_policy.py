"""The routing policy (policy.py), `calibrate` (calibrate.py) and their hooks in Router and the CLI.

Router-level tests use an untrained tiny encoder saved as a model directory: no training, a few seconds.
"""

import csv
import json
import logging

import numpy as np
import pytest

from conftest import write_csv
from ticket_router.calibrate import calibrate_model, resolve_targets
from ticket_router.cli import main
from ticket_router.errors import InputError
from ticket_router.lexical import softmax
from ticket_router.policy import (
    EMPTY_TEXT, HeadPolicy, LabelPairs, PolicyTargets, RoutingPolicy, decide, fit_policy, learn_label_pairs,
    max_target, route_outcome, threshold_for_coverage, threshold_for_precision, wilson_lower_bound,
)
from ticket_router.tasks import IGNORE_INDEX, TaskSpec

SPECS = [TaskSpec("category", "category", ["billing", "bug", "login"]), TaskSpec("queue", "team", ["q1", "q2"])]


@pytest.mark.parametrize("bound", ["point", "wilson95"])
@pytest.mark.parametrize("target", [0.6, 0.75, 0.8])
def test_threshold_meets_the_target_on_its_data_at_the_most_coverage(target, bound):
    rng = np.random.default_rng(0)
    confidence = rng.random(500)
    correct = rng.random(500) < confidence  # right more often when confident
    threshold = threshold_for_precision(confidence, correct, target, bound)
    auto = confidence >= threshold

    def judged(routed):  # the precision of the routed tickets, or its Wilson lower bound
        right, n = int(correct[routed].sum()), int(routed.sum())
        return right / n if bound == "point" else float(wilson_lower_bound(right, n))

    assert correct[auto].mean() >= judged(auto) >= target
    # Every lower threshold (one more ticket routed at a time) falls short: none covers more at this precision.
    for lower in np.sort(confidence[~auto])[::-1][:50]:
        assert judged(confidence >= lower) < target


def test_wilson_bound_is_stricter_the_fewer_tickets_back_a_precision():
    assert float(wilson_lower_bound(8, 10)) == pytest.approx(0.4902, abs=1e-4)  # the textbook value
    assert float(wilson_lower_bound(72, 84)) == pytest.approx(0.7662, abs=1e-3)  # 0.857 on 84 tickets
    assert float(wilson_lower_bound(720, 840)) > 0.83
    # The same data: the bound routes fewer tickets than the point precision, at a higher threshold.
    rng = np.random.default_rng(3)
    confidence = rng.random(300)
    correct = rng.random(300) < confidence
    assert threshold_for_precision(confidence, correct, 0.8, "wilson95") > threshold_for_precision(confidence, correct, 0.8, "point")
    assert max_target(confidence, correct, "wilson95") < max_target(confidence, correct, "point") == 1.0


def test_tied_confidences_are_routed_together_and_unreachable_targets_give_none():
    confidence = np.array([0.9, 0.8, 0.8, 0.5])
    correct = np.array([True, True, False, True])
    assert threshold_for_precision(confidence, correct, 0.75, "point") == 0.5  # 3 of 4 right at 0.5
    assert threshold_for_precision(confidence, correct, 0.8, "point") == 0.9  # 0.8 routes both tied tickets: 2/3
    assert threshold_for_precision(confidence, np.zeros(4, dtype=bool), 0.5, "point") is None
    assert threshold_for_precision(confidence, correct, 0.5) is None  # 4 tickets promise no 0.5 at 95%
    assert threshold_for_coverage(confidence, 0.5) == 0.8 and threshold_for_coverage(confidence, 1.0) == 0.5


def test_a_head_that_cannot_reach_its_target_does_not_vote_and_says_so(caplog):
    rng = np.random.default_rng(1)
    n = 400
    probabilities = {"category": softmax(rng.normal(0, 3, (n, 3))), "queue": softmax(rng.normal(0, 0.3, (n, 2)))}
    labels = np.stack([probabilities["category"].argmax(1),  # category always right: reaches 0.9
                       rng.integers(0, 2, n)], axis=1)  # queue a coin toss: never 0.9
    with caplog.at_level(logging.WARNING):
        policy = fit_policy(probabilities, labels, SPECS, PolicyTargets(0.9), [], "val.csv")
    category, queue = policy.heads["category"], policy.heads["queue"]
    assert category.votes and category.threshold is not None and category.auto_precision_lower >= 0.9
    assert not queue.votes and queue.threshold is None and 0.4 < queue.max_target < 0.9
    (line,) = [r.message for r in caplog.records if "queue" in r.message]
    assert "does not vote" in line and f"--task-target queue={queue.max_target}" in line and "\n" not in line
    # The queue head still marks every ticket "review", but only category decides the route.
    records = decide(_records(probabilities), probabilities, ["x"] * n, SPECS, policy)
    assert all(r["queue"]["decision"] == "review" for r in records)
    assert all(r["route"] == ("auto" if r["category"]["decision"] == "auto" else "review") for r in records)
    assert not any("queue" in reason for r in records for reason in r["review_reasons"])
    # At the target it can promise, it votes again.
    refit = fit_policy(probabilities, labels, SPECS, PolicyTargets(0.9, task_targets={"queue": queue.max_target}),
                       [], "val.csv")
    assert refit.heads["queue"].votes and refit.heads["queue"].threshold is not None


def test_overall_route_share_and_precision_count_voting_heads_only():
    probabilities = {"category": np.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.4, 0.3, 0.3], [0.9, 0.05, 0.05]]),
                     "queue": np.array([[0.9, 0.1], [0.9, 0.1], [0.9, 0.1], [0.9, 0.1]])}
    gold = np.array([[0, 1], [1, 0], [0, 0], [IGNORE_INDEX, IGNORE_INDEX]])
    policy = RoutingPolicy(heads={"category": HeadPolicy(0.8), "queue": HeadPolicy(None, votes=False)})
    out = route_outcome(gold, probabilities, ["a", "b", "c", "d"], SPECS, SPECS, policy)
    # Tickets 0, 1 and 3 are routed auto; 3 has no label; of 0 and 1 only 0 has the right category.
    assert out["auto_n"] == 3 and out["auto_share"] == 0.75 and out["auto_precision"] == 0.5
    assert out["voting_heads"] == ["category"] and out["review_reasons"] == {"category unsure": 1}
    everyone = route_outcome(gold, probabilities, ["a", "b", "c", "d"], SPECS, SPECS, None)
    assert everyone["auto_share"] == 1.0 and everyone["auto_precision"] == pytest.approx(1 / 3)


def test_label_pairs_are_learned_from_rows_labeled_for_both_heads():
    labels = np.array([[0, 0], [0, 1], [1, 1], [2, IGNORE_INDEX], [IGNORE_INDEX, 0]])
    (pairs,) = learn_label_pairs(labels, SPECS)
    assert (pairs.first, pairs.second) == ("category", "queue")
    assert pairs.seen == {"billing": ["q1", "q2"], "bug": ["q2"]}
    assert pairs.allows("bug", "q2") and not pairs.allows("bug", "q1") and not pairs.allows("login", "q1")


def _policy(consistency=True):
    return RoutingPolicy(heads={"category": HeadPolicy(0.6, target_precision=0.9), "queue": HeadPolicy(None)},
                         label_pairs=[LabelPairs("category", "queue", {"billing": ["q1"]})], consistency=consistency)


def _records(probabilities):
    return [{spec.name: {"label": spec.labels[int(p.argmax())], "confidence": float(p.max())} for spec, p in
             zip(SPECS, (probabilities[s.name][i] for s in SPECS))} for i in range(len(probabilities["category"]))]


def test_decisions_reasons_consistency_and_top_k():
    probabilities = {"category": np.array([[0.7, 0.2, 0.1], [0.3, 0.5, 0.2], [0.8, 0.1, 0.1]]),
                     "queue": np.array([[0.9, 0.1], [0.2, 0.8], [0.1, 0.9]])}
    policy = _policy()
    policy.heads["queue"] = HeadPolicy(0.85)
    records = decide(_records(probabilities), probabilities, ["card declined", "app crash", " "], SPECS, policy, 2)
    assert [r["category"]["decision"] for r in records] == ["auto", "review", "auto"]
    assert [r["queue"]["decision"] for r in records] == ["auto", "review", "auto"]
    assert records[0]["route"] == "auto" and records[0]["review_reasons"] == []
    assert records[1]["route"] == "review"
    assert [r.split(" (")[0] for r in records[1]["review_reasons"]] == ["category unsure", "queue unsure",
                                                                         "category=bug never seen with queue=q2"]
    assert records[2]["review_reasons"] == [EMPTY_TEXT, "category=billing never seen with queue=q2"]
    assert records[1]["category"]["top_k"] == [{"label": "bug", "probability": 0.5},
                                               {"label": "billing", "probability": 0.3}]
    policy.consistency = False
    again = decide(_records(probabilities), probabilities, ["a", "b", "c"], SPECS, policy)
    assert again[2]["route"] == "auto" and "top_k" not in again[2]["category"]


def test_without_a_policy_every_decision_is_auto_and_an_unreachable_target_is_review():
    probabilities = {"category": np.array([[0.4, 0.3, 0.3]]), "queue": np.array([[0.5, 0.5]])}
    (record,) = decide(_records(probabilities), probabilities, [""], SPECS, None)
    assert record["category"]["decision"] == record["queue"]["decision"] == record["route"] == "auto"
    (record,) = decide(_records(probabilities), probabilities, ["x"], SPECS, _policy())
    assert record["queue"]["decision"] == "review"
    assert "queue unsure (no threshold reaches its target)" in record["review_reasons"]
    with pytest.raises(InputError, match="top_k"):
        decide(_records(probabilities), probabilities, ["x"], SPECS, None, top_k=-1)


def test_policy_round_trips_through_json(tmp_path, caplog):
    policy = _policy()
    policy.targets = PolicyTargets(0.85, task_targets={"queue": 0.95}, precision_bound="point")
    policy.heads["queue"] = HeadPolicy(None, 0.95, votes=False, max_target=0.71, n=30)
    policy.save(tmp_path)
    assert RoutingPolicy.load(tmp_path) == policy
    data = json.loads((tmp_path / "policy.json").read_text())
    data["heads"]["category"]["method"] = "conformal"
    (tmp_path / "policy.json").write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING):
        assert RoutingPolicy.load(tmp_path) == policy
    assert "method" in caplog.text


def test_a_policy_saved_before_bounds_and_votes_loads_and_routes_as_before(tmp_path):
    old = {"consistency": True, "fitted_on": "v.csv", "label_pairs": [],
           "heads": {"category": {"threshold": 0.6, "target_precision": 0.9, "coverage": 0.5, "auto_precision": 0.9,
                                  "n": 40, "target_coverage": None},
                     "queue": {"threshold": None, "target_precision": 0.9, "n": 40}},
           "targets": {"target_precision": 0.9, "target_coverage": None, "task_targets": {}, "consistency": True}}
    (tmp_path / "policy.json").write_text(json.dumps(old))
    policy = RoutingPolicy.load(tmp_path)
    assert policy.targets.precision_bound == "point"  # what its thresholds were fitted on
    assert policy.heads["queue"].votes and policy.heads["queue"].max_target is None
    probabilities = {"category": np.array([[0.7, 0.2, 0.1]]), "queue": np.array([[0.6, 0.4]])}
    (record,) = decide(_records(probabilities), probabilities, ["x"], SPECS, policy)
    assert record["route"] == "review" and record["review_reasons"] == ["queue unsure (no threshold reaches its target)"]


def test_targets_are_validated_and_overridden():
    with pytest.raises(InputError, match=r"task_targets\[queue\]=1.5"):
        PolicyTargets(task_targets={"queue": 1.5}).validate(["queue"])
    with pytest.raises(InputError, match="did you mean 'queue'"):
        PolicyTargets(task_targets={"queu": 0.9}).validate(["category", "queue"])
    with pytest.raises(InputError, match="precision_bound='wilson'.*did you mean 'wilson95'"):
        PolicyTargets(precision_bound="wilson").validate()
    stored = PolicyTargets(target_coverage=0.7, task_targets={"queue": 0.95})
    targets = resolve_targets(stored, target_precision=0.85, task_targets={"category": 0.8}, consistency=False,
                              precision_bound="point")
    assert targets == PolicyTargets(0.85, None, {"queue": 0.95, "category": 0.8}, False, "point")
    assert targets.for_head("queue") == (0.95, None) and targets.for_head("urgency") == (0.85, None)
    assert stored.for_head("urgency") == (None, 0.7)


# --- Router, calibrate and the CLI on a saved, untrained tiny model --------------------------------------------

WORDS = {"billing": "refund invoice card", "bug": "crash error screen", "login": "password locked account"}


@pytest.fixture
def model_dir(tmp_path, distilbert_dir):
    from ticket_router.backbone import load_backbone
    from ticket_router.modeling import MultiTaskRouterModel

    encoder, tokenizer = load_backbone(str(distilbert_dir))
    specs = [TaskSpec("category", "category", list(WORDS)), TaskSpec("queue", "team", ["q1", "q2"])]
    model = MultiTaskRouterModel.from_backbone(encoder, specs, ["text"], max_length=16)
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def _labeled(tmp_path, router, n=60):
    """Tickets whose gold labels are the model's own predictions on 70% of rows: a target of 0.6 is reachable."""
    texts = [f"{WORDS[k]} {i}" for i, k in zip(range(n), list(WORDS) * n)]
    proba = router.predict_proba(texts)
    rows = []
    for i, text in enumerate(texts):
        category = list(WORDS)[int(proba["category"][i].argmax()) if i % 10 < 7 else i % 3]
        rows.append({"text": text, "category": category, "team": ["q1", "q2"][i % 2]})
    return write_csv(tmp_path / "calib.csv", rows)


def test_a_model_without_calibration_or_policy_routes_every_ticket_auto(model_dir, caplog):
    from ticket_router.router import Router

    with caplog.at_level(logging.INFO, logger="ticket_router"):
        router = Router.from_pretrained(model_dir)
    notes = [r.message for r in caplog.records if "calibrate" in r.message]
    assert len(notes) == 1 and "every decision 'auto'" in notes[0]
    records = router.route(["refund my card", "", "password locked"], top_k=2)
    assert all(r["route"] == "auto" and r["review_reasons"] == [] for r in records)
    assert all(r[t]["decision"] == "auto" and len(r[t]["top_k"]) == 2 for r in records for t in ("category", "queue"))


def test_calibrate_rewrites_only_its_files_and_the_router_applies_them(model_dir, tmp_path):
    from ticket_router.router import Router

    data = _labeled(tmp_path, Router.from_pretrained(model_dir))
    before = {p.name: p.stat().st_mtime_ns for p in model_dir.iterdir()}
    summary = calibrate_model(model_dir, str(data), target_precision=0.6, task_targets={"queue": 0.99})
    after = {p.name: p.stat().st_mtime_ns for p in model_dir.iterdir()}
    assert set(after) - set(before) == {"calibration.json", "policy.json"}
    assert all(after[name] == mtime for name, mtime in before.items())
    assert set(summary["calibration"]) == set(summary["policy"]) == {"category", "queue"}

    router = Router.from_pretrained(model_dir)
    head = router.policy.heads["category"]
    assert head.target_precision == 0.6 and head.auto_precision >= 0.6
    assert router.policy.heads["queue"].target_precision == 0.99
    assert router.calibration.temperatures["category"] == pytest.approx(summary["calibration"]["category"]["temperature"], abs=1e-4)
    texts = [line["text"] for line in csv.DictReader(data.open())]
    raw, scaled = router.predict_proba(texts, calibrated=False), router.predict_proba(texts)
    assert (raw["category"].argmax(1) == scaled["category"].argmax(1)).all()
    for record, p in zip(router.route(texts), scaled["category"]):
        assert record["category"]["decision"] == ("auto" if p.max() >= head.threshold else "review")
    evaluated = router.evaluate(__import__("ticket_router.data", fromlist=["x"]).read_table(str(data)), str(data),
                                plots=tmp_path / "plots")
    assert evaluated["tasks"]["category"]["auto_precision"] == pytest.approx(head.auto_precision)
    assert evaluated["tasks"]["category"]["coverage"] == pytest.approx(head.coverage)
    # queue cannot promise 0.99 on 60 tickets: it does not vote, and the overall route evaluates as fitted.
    assert not router.policy.heads["queue"].votes and summary["route"]["voting_heads"] == ["category"]
    assert evaluated["route"] == summary["route"]
    assert (tmp_path / "plots" / "risk_coverage_category.png").is_file()

    # Refit later without flags: the stored targets are kept.
    calibrate_model(model_dir, str(data))
    assert Router.from_pretrained(model_dir).policy.targets == router.policy.targets


def test_calibrate_and_predict_top_k_on_the_command_line(model_dir, tmp_path, capsys):
    from ticket_router.router import Router

    data = _labeled(tmp_path, Router.from_pretrained(model_dir))
    argv = ["-q", "calibrate", "--model", str(model_dir), "--data", str(data), "--target-precision", "0.6",
            "--task-target", "queue=0.55", "--no-consistency", "--precision-bound", "point"]
    assert main(argv) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"calibration", "policy", "route"}
    policy = json.loads((model_dir / "policy.json").read_text())
    assert policy["consistency"] is False and policy["heads"]["queue"]["target_precision"] == 0.55
    assert policy["targets"]["precision_bound"] == "point"
    assert main(["-q", "calibrate", "--model", str(model_dir), "--data", str(data), "--task-target", "queue"]) == 2
    assert "--task-target 'queue': expected NAME=NUMBER" in capsys.readouterr().err
    assert main(["-q", "calibrate", "--model", str(model_dir), "--data", str(data), "--task-target", "urgent=0.9"]) == 2
    assert "no task 'urgent'" in capsys.readouterr().err

    out = tmp_path / "routed.csv"
    assert main(["-q", "predict", "--model", str(model_dir), "--input", str(data), "--output", str(out), "--top-k", "2"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert {"category_decision", "category_top_k", "queue_decision", "route", "review_reasons"} <= set(rows[0])
    assert len(json.loads(rows[0]["category_top_k"])) == 2 and rows[0]["route"] in ("auto", "review")


def test_a_reused_training_ignores_the_policy_keys():
    # They shape calibration.json and policy.json, not the weights: `--reuse` refits those with the new keys.
    from ticket_router.training import _comparable

    saved = {"train": "t.csv", "seed": 42, "output": "a"}
    assert _comparable({**saved, "target_precision": 0.8, "task_targets": {"queue": 0.9}}) == _comparable(saved)
