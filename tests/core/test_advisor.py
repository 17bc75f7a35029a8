"""The dataset advisor: its rules on synthetic statistics (tiny vs large datasets, close vs distant
domains), the linear probe, and real analyses of a tiny and a (cheaply simulated) large dataset."""

from __future__ import annotations

import pytest
import torch

from tl_studio.core.advice_rules import (DatasetStats, ProbeResult, freeze_more, overfitting_remedies, probe_level,
                                         recommend, remedies_sentence)
from tl_studio.core.config import TrainConfig
from tests.helpers import make_image_folder

SETTINGS = ["freeze", "schedule", "lr", "epochs", "img_size", "augment"]


def stats(per_class: float, classes: int = 5, **changes) -> DatasetStats:
    values = dict(num_classes=classes, num_train=int(per_class * classes), per_class_median=per_class,
                  per_class_min=int(per_class), median_short_side=480,
                  model="efficientnet_lite0", model_size=224, num_stages=5)
    return DatasetStats(**{**values, **changes})


def probe(accuracy: float, chance: float = 0.2) -> ProbeResult:
    return ProbeResult(accuracy=accuracy, chance=chance, images=400, folds=5, seconds=1.0)


def check_usable(recommendation) -> TrainConfig:
    """Every setting has one sentence of reason, and the changes make a valid config."""
    assert [a.setting for a in recommendation.advice] == SETTINGS
    assert all(r.endswith(".") and len(r) > 40 and "\n" not in r for r in recommendation.reasons)
    return TrainConfig().replace(**recommendation.config_changes()).validate()


def test_a_tiny_dataset_trains_only_the_head_whatever_the_probe_says():
    for accuracy in (0.99, 0.5, 0.25):
        recommendation = recommend(stats(12), probe(accuracy))
        assert recommendation.freeze == "all" and recommendation.schedule == "onecycle"
        assert recommendation.data_level == "tiny"
        assert "memorise" in recommendation.reasons[0]
        check_usable(recommendation)
    assert "More images would help" in recommend(stats(12), probe(0.25)).reasons[0]


def test_a_large_dataset_from_a_distant_domain_fine_tunes_everything_gently():
    recommendation = recommend(stats(3000), probe(0.45))
    assert recommendation.probe_level == "weak" and recommendation.data_level == "large"
    assert recommendation.freeze == "none" and recommendation.schedule == "fine-tune"
    assert recommendation.lr < recommend(stats(12), probe(0.45)).lr  # smaller steps for pretrained layers
    assert "every layer" in recommendation.reasons[0]
    config = check_usable(recommendation)
    assert 1 <= config.freeze_epochs < config.epochs


def test_more_data_and_a_worse_fit_unfreeze_more():
    def trainable(per_class, accuracy):
        freeze = recommend(stats(per_class), probe(accuracy)).freeze
        return {"all": 0, "none": 5}.get(freeze, 5 - int(freeze) if freeze.isdigit() else None)

    for accuracy in (0.97, 0.75, 0.4):
        counts = [trainable(n, accuracy) for n in (12, 120, 600, 3000)]
        assert counts == sorted(counts), (accuracy, counts)
    for per_class in (120, 600, 3000):
        counts = [trainable(per_class, a) for a in (0.97, 0.75, 0.4)]
        assert counts == sorted(counts), (per_class, counts)
    assert recommend(stats(600), probe(0.75)).freeze == "3"  # the last 2 of 5 stages retrain


def test_epochs_follow_the_number_of_updates_not_a_fixed_count():
    small, large = recommend(stats(120), probe(0.6)), recommend(stats(3000), probe(0.6))
    assert small.schedule == large.schedule == "fine-tune"
    assert large.epochs < small.epochs  # a large dataset gets its updates in fewer passes
    head_only = recommend(stats(12, classes=2), probe(0.99, chance=0.5))
    assert 5 <= head_only.epochs <= 40 and "updates" in head_only.reasons[3]


def test_the_probe_level_is_measured_from_chance():
    assert probe_level(probe(0.9, chance=0.5)) == "strong"
    assert probe_level(probe(0.7, chance=0.5)) == "weak"  # 40 % of the way from chance to perfect
    assert probe_level(probe(0.7, chance=0.1)) == "moderate"
    assert probe_level(None) == "moderate"


def test_automatic_values_stay_automatic_when_applied():
    changes = recommend(stats(12), probe(0.99)).config_changes()
    assert changes["lr"] is None and changes["img_size"] is None  # 1e-3 and 224 px are the defaults
    small_images = recommend(stats(12, median_short_side=32, model_size=224), probe(0.99))
    assert "enlarged" in small_images.reasons[4]


def test_overfitting_remedies_use_the_same_reasoning():
    remedies = {a.setting: a.value for a in overfitting_remedies("none", "light", best_epoch=4, num_stages=5)}
    assert remedies == {"epochs": 4, "freeze": "3", "augment": "standard"}
    assert freeze_more("3", 5) == "4" and freeze_more("4", 5) == "all" and freeze_more("all", 5) is None
    # a frozen backbone on cached features: augmentation does not apply, so it is not suggested
    assert {a.setting for a in overfitting_remedies("all", "standard", best_epoch=2)} == {"epochs"}
    assert remedies_sentence(overfitting_remedies("4", "strong", best_epoch=3, num_stages=5)) == \
        "Next time try 3 epochs and the whole backbone frozen."


# ---- the linear probe and real analyses -------------------------------------------------------------
def test_the_linear_probe_separates_separable_features_and_not_random_labels():
    from tl_studio.core.advisor import linear_probe

    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(120) % 3
    centres = torch.randn(3, 64, generator=generator) * 3
    features = centres[labels] + torch.randn(120, 64, generator=generator)
    assert linear_probe(features, labels, 3).accuracy > 0.95
    shuffled = labels[torch.randperm(120, generator=generator)]
    result = linear_probe(torch.randn(120, 64, generator=generator), shuffled, 3)
    assert result.accuracy < 0.6 and result.chance == pytest.approx(1 / 3) and result.folds == 5
    assert linear_probe(features[:4], torch.tensor([0, 1, 2, 2]), 3) is None  # nothing to hold out


def test_analysing_the_tiny_dataset_recommends_the_head_only(tiny_dataset):
    from tl_studio.core.advisor import analyse_dataset

    seen = []
    result = analyse_dataset(TrainConfig(data_dir=str(tiny_dataset), img_size=64), progress=seen.append)
    assert result.data_level == "tiny" and result.freeze == "all"
    assert result.linear_probe_acc is not None and result.linear_probe_acc > result.probe.chance + 0.2
    assert result.stats.median_short_side == 64 and result.stats.num_classes == 3 and result.img_size == 224
    assert {p.stage for p in seen} >= {"model", "features", "probe"}
    check_usable(result)


def test_a_large_dataset_is_probed_on_a_bounded_subsample_and_gets_fine_tuning(tmp_path):
    from tl_studio.core.advisor import analyse_dataset

    # 2 x 1,900 tiny images: "large" (1,520 training images per class), cheap to make and scan
    data = make_image_folder(tmp_path / "large", classes=("red", "blue"), per_class=1900, size=16)
    seen = []
    config = TrainConfig(data_dir=str(data), img_size=32)
    result = analyse_dataset(config, max_images=60, progress=seen.append)
    from tl_studio.core.data import scan_dataset

    expected = len(list(scan_dataset(data, val_fraction=config.val_fraction, seed=config.seed).split("train")))
    assert result.data_level == "large" and result.stats.num_train == expected  # about 80 % of 3,800
    assert 2900 < expected < 3200
    assert result.probe.images == 60 and max(p.total for p in seen if p.stage == "features") == 60
    assert result.freeze not in ("all",) and result.schedule == "fine-tune"
    config = check_usable(result)
    assert config.freeze_epochs >= 1


def _phase_rates(config: TrainConfig) -> list[tuple[str, float]]:
    """The learning rate each phase of a run with this config trains at (the engine's own rule)."""
    from tl_studio.core.config import plan_phases
    from tl_studio.core.optim import phase_lr

    return [(phase.name, phase_lr(phase, config)) for phase in plan_phases(config)]


@pytest.mark.parametrize("per_class, accuracy, optimizer", [(12, 0.99, "adamw"), (2000, 0.3, "adamw"),
                                                            (400, 0.6, "sgd")])
def test_the_printed_command_trains_exactly_what_apply_sets(per_class, accuracy, optimizer, tmp_path):
    """`tl-studio advise` prints a train command: it must give the run that Apply gives in the app,
    and name the recommended learning rate."""
    import shlex

    from tl_studio.cli.cmd_advise import train_command
    from tl_studio.cli.cmd_train import build_config
    from tl_studio.cli.main import build_parser

    recommendation = recommend(stats(per_class, optimizer=optimizer), probe(accuracy))
    data = tmp_path / "my photos"  # pasted into a shell, the command keeps it one word
    command = train_command(recommendation, str(data))
    assert f"--lr {recommendation.lr:g}" in command
    words = shlex.split(command)
    assert words[:2] == ["tl-studio", "train"]
    args = build_parser().parse_args(words[1:] + ["--optimizer", optimizer] * (optimizer != "adamw"))
    from_command = build_config(args)
    assert from_command.data_dir == str(data.resolve())
    applied = TrainConfig(data_dir=str(data.resolve()), optimizer=optimizer).replace(
        **recommendation.config_changes())
    for field in ("model", "freeze", "epochs", "schedule", "augment", "img_size"):
        assert getattr(from_command, field) == getattr(applied, field), field
    if recommendation.schedule == "fine-tune":
        assert from_command.freeze_epochs == applied.freeze_epochs
    assert _phase_rates(from_command) == _phase_rates(applied)
    assert _phase_rates(applied)[-1][1] == recommendation.lr  # the advice's rate is the main phase's


def test_images_per_class_is_one_figure_everywhere(tiny_dataset):
    """The advisor's summary and the Model step's freeze hint quote the same images-per-class figure."""
    from tl_studio.core.advice_rules import images_per_class
    from tl_studio.core.advisor import dataset_stats
    from tl_studio.core.data import scan_dataset
    from tl_studio.core.diagnostics import freeze_hint

    assert images_per_class([300, 10, 500, 0]) == 300 and images_per_class([4, 6]) == 5
    scan = scan_dataset(tiny_dataset)
    per_class = dataset_stats(scan, TrainConfig(), 64, 5, 224).per_class_median
    assert per_class == images_per_class(scan.counts()["train"].values())
    assert f"~{per_class:.0f} training images per class" in freeze_hint(per_class, 5, 5)


def test_one_image_per_class_is_said_in_the_singular():
    from tl_studio.core.diagnostics import freeze_hint

    assert freeze_hint(1.0, 5, 5).startswith("~1 training image per class: ")
    assert freeze_hint(1.0, 0, 5).startswith("Only ~1 training image per class: ")
    assert freeze_hint(2.0, 5, 5).startswith("~2 training images per class: ")
    recommendation = recommend(stats(1), None)
    freeze = next(reason for reason in recommendation.reasons if "retraining the pretrained layers" in reason)
    assert freeze.startswith("With about 1 image per class, ")


# ---- random weights (--weights none): nothing to transfer ----------------------------------------
@pytest.mark.parametrize("per_class", [12, 400, 2000])
def test_random_weights_train_every_layer_from_scratch_whatever_the_data(per_class):
    for measured in (None, probe(0.99), probe(0.25)):
        recommendation = recommend(stats(per_class, pretrained=False), measured)
        assert (recommendation.freeze, recommendation.schedule, recommendation.augment) == ("none", "onecycle",
                                                                                             "strong")
        assert recommendation.lr == 1e-3 and recommendation.epochs >= 30 and recommendation.probe is None
        assert "--weights default" in recommendation.summary and "random" in recommendation.reasons[0]
        # nothing reasons from pretrained layers, their training size or a probe of their features
        assert not any(words in reason for reason in recommendation.reasons
                       for words in ("pretrained layers", "pretrained at", "pretrained filters", "frozen features"))
        config = check_usable(recommendation)
        assert config.lr == 1e-3  # said, not left automatic (the automatic rate for "none" is a fine-tune's)
        # `advise` printed it too: the finder is named for the command line as for the window
        assert any("`tl-studio lr-find`" in reason for reason in recommendation.reasons)
    assert recommend(stats(400, pretrained=False, optimizer="sgd"), None).lr == 1e-2
    # with pretrained weights the same data keeps the transfer-learning advice
    assert recommend(stats(12), probe(0.99)).freeze == "all"


def test_random_weights_are_not_frozen_further_against_overfitting():
    from tl_studio.core.diagnostics import freeze_hint, overfitting_hint

    remedies = {a.setting: a.value for a in overfitting_remedies("none", "light", best_epoch=4, num_stages=5,
                                                                pretrained=False)}
    assert remedies == {"epochs": 4, "weights": "default", "augment": "standard"}
    assert remedies_sentence(overfitting_remedies("none", "strong", 3, 5, pretrained=False)) == \
        "Next time try 3 epochs and pretrained weights."

    class Epoch:
        def __init__(self, epoch, train_loss, val_loss):
            self.epoch, self.train_loss, self.val_loss = epoch, train_loss, val_loss

    history = [Epoch(1, 1.0, 0.5), Epoch(2, 0.8, 0.6), Epoch(3, 0.6, 0.7)]
    hint = overfitting_hint(history, "none", "standard", num_stages=5, pretrained=False)
    assert "starting from pretrained weights" in hint and "freezing" not in hint
    assert "freezing more of the backbone" in overfitting_hint(history, "none", "standard", num_stages=5)
    assert freeze_hint(400, 2, 5, pretrained=False).startswith("Random starting weights: frozen stages stay random")
    assert "from scratch" in freeze_hint(400, 0, 5, pretrained=False)


def test_analysing_with_random_weights_skips_the_probe_and_its_features(tiny_dataset):
    from tl_studio.core.advisor import analyse_dataset

    seen = []
    result = analyse_dataset(TrainConfig(data_dir=str(tiny_dataset), img_size=64, weights="none"),
                             progress=seen.append)
    assert result.probe is None and result.linear_probe_acc is None and result.freeze == "none"
    assert not result.stats.pretrained and result.stats.num_stages == 5
    assert "features" not in {p.stage for p in seen} and "probe" not in {p.stage for p in seen}
    check_usable(result)


def test_the_printed_command_for_random_weights_keeps_them_and_trains_from_scratch(tmp_path):
    import shlex

    from tl_studio.cli.cmd_advise import train_command
    from tl_studio.cli.cmd_train import build_config
    from tl_studio.cli.main import build_parser

    recommendation = recommend(stats(100, pretrained=False), None)
    command = train_command(recommendation, str(tmp_path), ["--weights", "none"])
    config = build_config(build_parser().parse_args(shlex.split(command)[1:]))
    applied = TrainConfig(data_dir=str(tmp_path), weights="none").replace(**recommendation.config_changes())
    for field in ("weights", "freeze", "epochs", "schedule", "augment", "lr"):
        assert getattr(config, field) == getattr(applied, field), field
    assert (config.weights, config.freeze, config.lr) == ("none", "none", 1e-3)


def test_the_freeze_hint_goes_by_the_share_of_parameters_that_train():
    """efficientnet_lite0 frozen to its third of five stages trains 98.4 % of its parameters: the hint
    called that "a frozen backbone with a new head ... the safe start"."""
    from tl_studio.core.diagnostics import freeze_hint

    assert freeze_hint(122, 1, 5, trainable_share=0.995).startswith("Only ~122 training images per class: "
                                                                     "fine-tuning this much risks overfitting")
    # as far as the advisor itself fine-tunes at this size: the condition, not a contradiction of its advice
    assert freeze_hint(122, 3, 5, trainable_share=0.984) == (
        "~122 training images per class: fine-tuning the last 2 stages pays off only when the frozen features fit "
        "your classes poorly (Analyse my dataset measures it); else a frozen backbone is the safe start.")
    assert freeze_hint(116, 4, 5, trainable_share=0.6).startswith("~116 training images per class: fine-tuning the "
                                                                   "last stage pays off only when")
    assert "a frozen backbone with a new head is the safe start" in freeze_hint(122, 5, 5, trainable_share=0.001)
    assert freeze_hint(2000, 1, 5, trainable_share=0.2).startswith("~2000 training images per class: plenty to")
    assert freeze_hint(2000, 1, 5, trainable_share=0.9).endswith("enough data to fine-tune most of the network.")


def test_untested_features_are_not_judged_in_the_reason_to_fine_tune():
    """"features that fit your classes only partly (the features could not be tested)" said both."""
    from tl_studio.core.advice_rules import recommend

    reason = next(item.reason for item in recommend(stats(500), None).advice if item.setting == "freeze")
    assert "features not tested on your classes" in reason and "only partly" not in reason
