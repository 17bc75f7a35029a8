"""The class-weighting plan: square-root weights, capped, and no weighting up of a class of a few photos."""

from __future__ import annotations

import pytest

from tl_studio.core.class_weighting import MAX_WEIGHT_RATIO, plan_weighting


def test_auto_weighs_by_the_square_root_of_the_counts_with_mean_one():
    plan = plan_weighting([124, 12], "auto")
    assert plan.weights == pytest.approx((0.4750, 1.5250), abs=1e-3)
    assert sum(plan.weights) / 2 == pytest.approx(1.0)
    assert plan.sentences(["ants", "bees"]) == [
        "Class-weighted loss is on (the largest class has 10.3x the training images of the smallest): rarer "
        "classes count more, up to 3.2x."]


def test_no_class_weighs_more_than_the_cap():
    plan = plan_weighting([5000, 5], "on")
    assert max(plan.weights) / min(plan.weights) == pytest.approx(MAX_WEIGHT_RATIO)


def test_one_photo_of_a_class_is_not_weighted_up_and_the_run_says_why():
    """Weighted 107x, the one wasp photo made the model answer wasps for everything (accuracy 0.000)."""
    plan = plan_weighting([98, 107, 1], "auto")
    assert plan.weights is None and plan.too_few == (2,)
    assert plan.sentences(["ants", "bees", "wasps"]) == [
        "wasps: fewer than 5 training images, too few to weight up (the model would learn those few photos); "
        "add images of it."]
    # asked for explicitly, weighting applies to every class, within the cap
    assert max(plan_weighting([98, 107, 1], "on").weights) == pytest.approx(
        MAX_WEIGHT_RATIO * min(plan_weighting([98, 107, 1], "on").weights))


def test_balanced_or_off_says_what_it_does():
    even = plan_weighting([50, 60], "auto")
    assert even.weights is None and even.sentences(["a", "b"]) == []
    assert plan_weighting([3, 4], "auto").sentences(["a", "b"]) == []  # small but even: nothing to explain
    assert plan_weighting([124, 12], "off").sentences(["a", "b"]) == [
        "Classes are imbalanced (10.3x); class weighting is off."]
    assert plan_weighting([10, 10], "on").sentences(["a", "b"]) == [
        "Class-weighted loss is on, as asked; the classes are about the same size, so every image counts about "
        "the same."]


def test_a_class_without_training_images_is_said_to_stop_the_run_not_to_be_too_few_to_weight():
    plan = plan_weighting([40, 40, 0], "auto")
    said = " ".join(plan.sentences(["ants", "bees", "fish"]))
    assert "fish: no training images, so a run cannot start; add images of it to the training split." in said
    assert "too few to weight up" not in said
    plan = plan_weighting([40, 2, 0], "auto")
    said = " ".join(plan.sentences(["ants", "bees", "fish"]))
    assert "fish: no training images" in said and "bees: fewer than 5 training images" in said
