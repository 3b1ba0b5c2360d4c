"""Tests for ticket_router.stats on hand-checked examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import f1_score

from ticket_router import stats


def test_macro_f1_counts_gold_label_never_predicted_as_zero():
    y_true = ["a", "a", "b", "c"]
    y_pred = ["a", "a", "b", "b"]
    # per class: a=1.0, b=2/3 (p=1/2, r=1), c=0.0 -> mean over 3 classes
    assert stats.macro_f1(y_true, y_pred) == pytest.approx((1.0 + 2 / 3 + 0.0) / 3)
    assert stats.macro_f1(y_true, y_pred) == pytest.approx(f1_score(y_true, y_pred, average="macro", zero_division=0))


def test_bootstrap_identical_predictions_gives_zero_ci():
    y = np.array(["a", "b", "a", "c", "b", "a"])
    pred = np.array(["a", "b", "b", "c", "a", "a"])
    lo, hi = stats.paired_bootstrap_diff_ci(y, pred, pred.copy(), stats.macro_f1, n_resamples=200, seed=1)
    assert (lo, hi) == (0.0, 0.0)


def test_bootstrap_always_right_vs_always_wrong_is_strictly_positive():
    y = np.array(["a", "b"] * 10)
    right = y.copy()
    wrong = np.where(y == "a", "b", "a")
    lo, hi = stats.paired_bootstrap_diff_ci(y, right, wrong, stats.macro_f1, n_resamples=200, seed=0)
    assert 0.0 < lo <= hi
    # accuracy difference is exactly 1 on every resample
    acc = lambda t, p: float(np.mean(t == p))  # noqa: E731
    assert stats.paired_bootstrap_diff_ci(y, right, wrong, acc, n_resamples=50) == (1.0, 1.0)


def test_bootstrap_is_reproducible_with_seed_and_checks_lengths():
    rng = np.random.default_rng(3)
    y = rng.choice(list("abc"), size=40)
    a = np.where(rng.random(40) < 0.8, y, "a")
    b = np.where(rng.random(40) < 0.6, y, "b")
    first = stats.paired_bootstrap_diff_ci(y, a, b, stats.macro_f1, n_resamples=100, seed=7)
    assert first == stats.paired_bootstrap_diff_ci(y, a, b, stats.macro_f1, n_resamples=100, seed=7)
    assert first[0] <= first[1]
    with pytest.raises(ValueError):
        stats.paired_bootstrap_diff_ci(y, a[:-1], b, stats.macro_f1)


def test_mcnemar_exact_small_case():
    # b = 10 discordant rows where only A is right, c = 0: exact two-sided p = 2 * 0.5**10
    correct_a = [True] * 10 + [True] * 5 + [False] * 3
    correct_b = [False] * 10 + [True] * 5 + [False] * 3
    assert stats.mcnemar_p_value(correct_a, correct_b) == pytest.approx(2 * 0.5**10)
    # symmetric in which model is better
    assert stats.mcnemar_p_value(correct_b, correct_a) == pytest.approx(2 * 0.5**10)


def test_mcnemar_large_case_uses_chi_square_with_continuity_correction():
    b, c = 30, 12
    correct_a = [True] * b + [False] * c + [True] * 50
    correct_b = [False] * b + [True] * c + [True] * 50
    statistic = (abs(b - c) - 1) ** 2 / (b + c)  # = 289 / 42
    expected = sps.chi2.sf(statistic, df=1)
    assert stats.mcnemar_p_value(correct_a, correct_b) == pytest.approx(expected)
    assert 0.005 < expected < 0.01  # sanity: chi2(6.88, 1 dof) is about 0.0087


def test_mcnemar_no_discordant_pairs_is_one():
    assert stats.mcnemar_p_value([True, False, True], [True, False, True]) == 1.0
    assert stats.mcnemar_p_value([], []) == 1.0


def test_transfer_ratio():
    assert stats.transfer_ratio(0.9, 0.8) == pytest.approx(0.125)
    assert stats.transfer_ratio(0.76, 0.8) == pytest.approx(-0.05)
    assert stats.transfer_ratio(0.0, 0.0) == 0.0
    assert stats.transfer_ratio(0.5, 0.0) is None  # undefined: null in JSON, not inf
    assert stats.transfer_ratio(float("nan"), 0.5) is None


def test_ece_hand_computed():
    # 5 bins of width 0.2.
    # bin [0.2, 0.4): conf 0.3, 0.3 -> mean 0.3, acc 0.5 (1 of 2) -> gap 0.2, weight 2/6
    # bin [0.6, 0.8): conf 0.7       -> mean 0.7, acc 1.0        -> gap 0.3, weight 1/6
    # bin [0.8, 1.0]: conf 0.9, 0.9, 1.0 -> mean 0.9333, acc 2/3 -> gap 0.2667, weight 3/6
    confidence = [0.3, 0.3, 0.7, 0.9, 0.9, 1.0]
    correct = [True, False, True, True, False, True]
    expected = 2 / 6 * 0.2 + 1 / 6 * 0.3 + 3 / 6 * abs(2 / 3 - 2.8 / 3)
    assert stats.expected_calibration_error(confidence, correct, n_bins=5) == pytest.approx(expected)


def test_ece_perfectly_calibrated_and_worst_case():
    assert stats.expected_calibration_error([1.0, 1.0], [True, True]) == pytest.approx(0.0)
    assert stats.expected_calibration_error([1.0, 1.0], [False, False]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        stats.expected_calibration_error([], [])


def test_reliability_bins_shape_and_empty_bins():
    bins = stats.reliability_bins([0.05, 0.95, 0.97], [False, True, False], n_bins=10)
    assert bins["count"].tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 0, 2]
    assert bins["accuracy"][9] == pytest.approx(0.5)
    assert bins["mean_confidence"][9] == pytest.approx(0.96)
    assert math.isnan(bins["accuracy"][5])  # empty bin: undefined, not 0
    assert bins["lower"][0] == 0.0 and bins["upper"][-1] == 1.0
