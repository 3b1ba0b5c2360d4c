"""Temperature scaling (calibration.py) and the risk-coverage figures (risk_coverage.py), on synthetic logits."""

import json
import logging

import numpy as np
import pytest

from ticket_router.calibration import (
    CALIBRATION_NAME, Calibration, cross_validated_temperature, fit_calibration, fit_temperature, nll, scale,
    stratified_folds,
)
from ticket_router.lexical import softmax
from ticket_router.risk_coverage import Outcomes, aurc, plot_risk_coverage, policy_outcome, risk_coverage_curve
from ticket_router.tasks import IGNORE_INDEX, UNSEEN_INDEX, TaskSpec


def _synthetic(true_temperature, n=20000, classes=5, seed=0):
    """Logits, and labels drawn from softmax(logits / T): the model's softmax(logits) is off by exactly T."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, size=(n, classes))
    p = softmax(logits / true_temperature)
    labels = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    return softmax(logits), labels


@pytest.mark.parametrize("true_temperature", [0.5, 2.5])
def test_fitting_recovers_a_known_temperature(true_temperature):
    proba, labels = _synthetic(true_temperature)
    assert fit_temperature(proba, labels) == pytest.approx(true_temperature, rel=0.05)


def test_unlabeled_and_unseen_rows_are_left_out_of_the_fit():
    proba, labels = _synthetic(2.0, n=6000)
    noisy = labels.copy()
    noisy[:2000] = np.where(np.arange(2000) % 2, IGNORE_INDEX, UNSEEN_INDEX)
    assert fit_temperature(proba, noisy) == pytest.approx(fit_temperature(proba[2000:], labels[2000:]), rel=1e-4)


def test_scaling_keeps_the_label_and_is_temperature_scaling_of_the_logits():
    logits = np.random.default_rng(1).normal(0, 2, size=(50, 4))
    proba = softmax(logits)
    scaled = scale(proba, 1.7)
    np.testing.assert_allclose(scaled, softmax(logits / 1.7), atol=1e-9)
    np.testing.assert_allclose(scaled.sum(axis=1), 1.0)
    assert (scaled.argmax(axis=1) == proba.argmax(axis=1)).all()
    assert scale(proba, 1.0) is proba


def test_held_out_ece_and_nll_improve_on_an_overconfident_model():
    specs = [TaskSpec("category", "category", ["a", "b", "c", "d", "e"])]
    proba, labels = _synthetic(3.0, n=4000, seed=2)  # the model is 3x too sharp
    calibration, report = fit_calibration({"category": proba}, labels[:, None], specs, 0.5, "fit.csv")
    assert report["category"]["ece_after"] < report["category"]["ece_before"]
    assert report["category"]["nll_after"] < report["category"]["nll_before"]
    held_out, gold = _synthetic(3.0, n=4000, seed=3)
    after = calibration.apply({"category": held_out}, 0.5)["category"]
    assert Outcomes.from_proba(after, gold).ece() < Outcomes.from_proba(held_out, gold).ece() / 2
    assert nll(after, gold) < nll(held_out, gold)


def test_few_labeled_rows_keep_temperature_one(caplog):
    specs = [TaskSpec("queue", "queue", ["a", "b", "c", "d", "e"])]
    proba, labels = _synthetic(3.0, n=10)
    with caplog.at_level(logging.WARNING):
        calibration, _ = fit_calibration({"queue": proba}, labels[:, None], specs, 0.0, "tiny.csv")
    assert calibration.temperatures == {"queue": 1.0} and "tiny.csv" in caplog.text


def test_save_load_round_trip_is_sorted_json_and_tolerates_unknown_keys(tmp_path, caplog):
    calibration = Calibration({"urgency": 1.5, "category": 0.8}, lexical_weight=0.5, fitted_on="v.csv",
                              rows={"urgency": 40, "category": 50})
    calibration.save(tmp_path)
    text = (tmp_path / CALIBRATION_NAME).read_text()
    assert json.loads(text)["temperatures"] == {"category": 0.8, "urgency": 1.5}
    assert text.index('"category"') < text.index('"urgency"')  # sorted keys
    assert [p.name for p in tmp_path.iterdir()] == [CALIBRATION_NAME]  # no temporary file left behind
    assert Calibration.load(tmp_path) == calibration
    (tmp_path / CALIBRATION_NAME).write_text(json.dumps({**json.loads(text), "method": "vector"}))
    with caplog.at_level(logging.WARNING):
        assert Calibration.load(tmp_path) == calibration
    assert "method" in caplog.text
    assert Calibration.load(tmp_path / "missing") is None


def test_routing_at_another_lexical_weight_skips_the_temperatures(caplog):
    calibration = Calibration({"category": 2.0}, lexical_weight=0.5)
    proba = {"category": softmax(np.array([[2.0, 0.0, -1.0]]))}
    with caplog.at_level(logging.WARNING):
        assert calibration.apply(proba, 0.0) is proba
    assert "lexical_weight=0.5" in caplog.text
    assert calibration.apply(proba, 0.5)["category"][0, 0] < proba["category"][0, 0]


def test_risk_coverage_curve_aurc_and_policy_outcome():
    confidence = np.array([0.9, 0.8, 0.7, 0.6])
    correct = np.array([True, False, True, False])
    coverage, risk = risk_coverage_curve(confidence, correct)
    np.testing.assert_allclose(coverage, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(risk, [0.0, 0.5, 1 / 3, 0.5])
    assert aurc(confidence, correct) == pytest.approx(np.mean([0.0, 0.5, 1 / 3, 0.5]))
    # The same two errors cost less when they are the least confident tickets.
    assert aurc(confidence, np.array([True, True, False, False])) < aurc(confidence, np.array([False, False, True, True]))
    outcomes = Outcomes(confidence, correct)
    assert policy_outcome(outcomes, 0.7) == {"coverage": 0.75, "auto_precision": pytest.approx(2 / 3), "auto_n": 3}
    assert policy_outcome(outcomes, None) == {"coverage": 0.0, "auto_precision": None, "auto_n": 0}


def test_risk_coverage_plot_draws_several_curves(tmp_path):
    rng = np.random.default_rng(0)
    confidence, correct = rng.random(100), rng.random(100) > 0.3
    curves = {"multi-task": risk_coverage_curve(confidence, correct),
              "single-task": risk_coverage_curve(confidence, ~correct)}
    path = plot_risk_coverage(curves, "category", tmp_path / "rc.png", {"threshold 0.5": (0.5, 0.2)})
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _self_calibrated(n, seed):
    """A fused head whose labels are drawn from its own probabilities: calibrated already, T = 1 is right."""
    rng = np.random.default_rng(seed)
    proba = 0.5 * softmax(rng.normal(0, 3, (n, 4))) + 0.5 * softmax(rng.normal(0, 1, (n, 4)))
    return proba, (rng.random(n)[:, None] > np.cumsum(proba, axis=1)).sum(axis=1)


def test_cross_validation_keeps_t_1_on_a_calibrated_head():
    # On these 300 rows the NLL-optimal T (0.95) is noise; the 5 folds see no ECE gain beyond one SE.
    proba, labels = _self_calibrated(300, 7)
    specs = [TaskSpec("urgency", "priority", ["0", "1", "2", "3"], "int")]
    calibration, report = fit_calibration({"urgency": proba}, labels[:, None], specs, 0.5, "v.csv")
    fit = calibration.fits["urgency"]
    assert calibration.temperatures == {"urgency": 1.0} and fit.applied == 1.0
    assert fit.nll_optimal == pytest.approx(0.953, abs=0.01) == report["urgency"]["nll_optimal_temperature"]
    assert fit.cv_ece_before - fit.cv_ece_after <= fit.cv_gain_se and fit.why.endswith("T = 1")
    assert report["urgency"]["ece_after"] == report["urgency"]["ece_before"]


@pytest.mark.parametrize("true_temperature", [0.4, 2.5])
def test_cross_validation_applies_t_on_a_mis_scaled_head(true_temperature):
    proba, labels = _synthetic(true_temperature, n=600, classes=4, seed=11)
    fit = cross_validated_temperature(proba, labels)
    assert fit.applied == fit.nll_optimal == pytest.approx(true_temperature, rel=0.2)
    assert fit.cv_ece_before - fit.cv_ece_after > fit.cv_gain_se > 0 and "> 1 SE" in fit.why


def test_cross_validation_is_seeded_and_folds_are_stratified():
    proba, labels = _synthetic(2.0, n=500, seed=4)
    assert cross_validated_temperature(proba, labels) == cross_validated_temperature(proba, labels)
    folds = stratified_folds(labels, 5)
    for label in np.unique(labels):
        counts = np.bincount(folds[labels == label], minlength=5)
        assert counts.max() - counts.min() <= 1


def test_fits_round_trip_and_a_calibration_saved_before_them_loads(tmp_path):
    proba, labels = _synthetic(2.5, n=400, classes=4, seed=5)
    specs = [TaskSpec("queue", "queue", ["a", "b", "c", "d"])]
    calibration, _ = fit_calibration({"queue": proba}, labels[:, None], specs, 0.5, "v.csv")
    calibration.save(tmp_path)
    saved = json.loads((tmp_path / CALIBRATION_NAME).read_text())
    assert set(saved["fits"]["queue"]) == {"nll_optimal", "applied", "cv_ece_before", "cv_ece_after", "cv_gain_se", "why"}
    assert Calibration.load(tmp_path) == calibration
    del saved["fits"]
    (tmp_path / CALIBRATION_NAME).write_text(json.dumps(saved))
    old = Calibration.load(tmp_path)
    assert old.fits == {} and old.temperatures == calibration.temperatures
