"""Temperature scaling and the unknown rule on crafted logits whose answers are known."""

import numpy as np
import pytest

from tl_studio.core import calibration, unknown


def _overconfident(n=4000, classes=3, true_temperature=2.5, seed=0):
    """Labels drawn from softmax(z / T*): the model that outputs z is over-confident by exactly T*, so
    temperature scaling must find T close to T*."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 4.0, size=(n, classes))
    p = calibration.softmax(z, true_temperature)
    labels = np.array([rng.choice(classes, p=row) for row in p])
    return z, labels


def test_fitted_temperature_recovers_the_known_one():
    z, labels = _overconfident()
    assert calibration.fit_temperature(z, labels) == pytest.approx(2.5, rel=0.08)


def test_calibration_lowers_ece_and_keeps_the_ranking():
    z, labels = _overconfident()
    result = calibration.calibrate(z, labels)
    assert result.ece_before > 0.1 > 0.03 > result.ece_after
    assert result.nll_after < result.nll_before
    before, after = calibration.softmax(z), calibration.softmax(z, result.temperature)
    assert np.array_equal(before.argmax(1), after.argmax(1))
    assert sum(b.count for b in result.bins_after) == len(labels)
    restored = calibration.Calibration.from_dict(result.to_dict())
    assert restored.temperature == result.temperature and restored.bins_after == result.bins_after


def test_ece_by_hand():
    # two images at 0.9 confidence, one right, one wrong: |0.5 - 0.9| = 0.4 in that bin
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1]])
    assert calibration.expected_calibration_error(probabilities, np.array([0, 1])) == pytest.approx(0.4)
    # a perfectly calibrated bin
    assert calibration.expected_calibration_error(np.array([[0.5, 0.5], [0.5, 0.5]]), np.array([0, 0])) == \
        pytest.approx(0.5)  # argmax is class 0 for both: accuracy 1.0, confidence 0.5


def test_well_calibrated_model_keeps_temperature_near_one():
    z, labels = _overconfident(true_temperature=1.0, seed=3)
    assert calibration.fit_temperature(z, labels) == pytest.approx(1.0, abs=0.1)


def test_threshold_keeps_the_requested_share():
    rng = np.random.default_rng(1)
    scores = rng.uniform(size=1000)
    for keep in (0.5, 0.9, 0.95, 0.99):
        threshold = unknown.choose_threshold(scores, keep)
        kept = np.mean(scores >= threshold)
        assert keep <= kept <= keep + 0.002


def test_no_validation_image_lies_on_the_threshold():
    """A probability computed a few 1e-7 off (another runtime or batch) must not flip a validation image."""
    rng = np.random.default_rng(2)
    for size in (5, 19, 20, 153, 1000):
        scores = rng.uniform(0.5, 1.0, size=size)
        for keep in (0.5, 0.9, 0.95, 0.99):
            threshold = unknown.choose_threshold(scores, keep)
            assert np.min(np.abs(scores - threshold)) > 1e-6
            for shift in (-1e-6, 1e-6):  # the same images kept when every score moves a little
                assert np.array_equal(scores + shift >= threshold, scores >= threshold)
            assert np.mean(scores >= threshold) >= keep


def test_threshold_with_ties_keeps_at_least_the_share():
    scores = np.array([1.0] * 90 + [0.4] * 10)
    threshold = unknown.choose_threshold(scores, 0.95)
    assert np.mean(scores >= threshold) >= 0.95


def test_rule_marks_low_confidence_unknown():
    val = np.array([[0.99, 0.01]] * 19 + [[0.6, 0.4]])
    rule = unknown.rule_for(val, keep=0.95)
    # one of 20 may fall below, the 0.6 image: the threshold lies halfway between it and the 0.99 ones
    assert rule.threshold == pytest.approx((0.99 + 0.6) / 2)
    assert rule.kept_on_val == pytest.approx(0.95)
    assert list(rule.is_unknown(np.array([[0.7, 0.3], [0.995, 0.005]]))) == [True, False]
    assert unknown.UnknownRule.from_dict(rule.to_dict()) == rule


def test_auroc_by_hand():
    assert unknown.auroc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert unknown.auroc([0.1, 0.2], [0.9, 0.8]) == 0.0
    assert unknown.auroc([0.5, 0.5], [0.5, 0.5]) == 0.5
    assert unknown.auroc([0.9, 0.3], [0.5]) == 0.5


def test_keep_is_checked():
    with pytest.raises(ValueError):
        unknown.check_keep(1.5)
    with pytest.raises(ValueError):
        unknown.check_keep(float("nan"))
