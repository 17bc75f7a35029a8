"""Reading a run's curves the way an experienced practitioner would: is it overfitting, and what to
change. Used by the GUI's hint and the CLI's summary."""

from __future__ import annotations

from typing import Sequence


def overfitting_epochs(history: Sequence) -> int:
    """How many epochs in a row (up to the last) val loss rose while train loss fell."""
    streak = 0
    for previous, current in zip(history, history[1:]):
        rising = current.val_loss > previous.val_loss and current.train_loss < previous.train_loss
        streak = streak + 1 if rising else 0
    return streak


def overfitting_hint(history: Sequence, freeze: str = "all", augment: str = "standard",
                     num_stages: int | None = None, feature_cache: bool = True, pretrained: bool = True) -> str | None:
    """One or two sentences when val loss has risen for 2+ epochs while train loss fell, else None.
    The remedies are the advisor's (advice_rules.overfitting_remedies), so both say the same."""
    from tl_studio.core.advice_rules import overfitting_remedies

    streak = overfitting_epochs(history)
    if streak < 2:
        return None
    best = min(history, key=lambda e: e.val_loss)
    words = {"epochs": "fewer epochs (val loss was lowest at epoch {})", "freeze": "freezing more of the backbone",
             "augment": "stronger augmentation ({})", "weights": "starting from pretrained weights"}
    remedies = overfitting_remedies(freeze, augment, best.epoch, num_stages, feature_cache, pretrained)
    advice = [words[r.setting].format(r.value) for r in remedies] + ["more training images"]
    return (f"The model is starting to overfit: val loss has risen for {streak} epochs while train loss "
            f"fell. Try " + ", ".join(advice[:-1]) + f" or {advice[-1]}.")


RANDOM_AND_FROZEN = ("Random starting weights: frozen stages stay random and learn nothing. Freeze nothing to "
                     "train from scratch, or start from ImageNet weights.")


def setup_notes(config, frozen_stages: int) -> list[str]:
    """What a run's settings will cost it, said when it starts (every front end shows a FitStart's notes):
    a backbone frozen at random weights gives the head random features, which no epoch improves."""
    return [RANDOM_AND_FROZEN] if not config.pretrained and frozen_stages else []


def freeze_hint(per_class: float, frozen: int, num_stages: int, pretrained: bool = True,
                trainable_share: float | None = None) -> str:
    """One line of transfer-learning practice for the chosen freeze depth: few images (and a domain
    like ImageNet's photos) -> freeze more; many images or a distant domain -> fine-tune more.
    ``per_class`` is advice_rules.images_per_class, the figure the advisor shows too. Without pretrained
    weights nothing is worth freezing. ``trainable_share``, the share of the parameters that train, says
    how much is fine-tuned better than the stage count: efficientnet_lite0 frozen to its third of five
    stages still trains 98.4 % of its parameters, and was called "a frozen backbone ... the safe start"."""
    from tl_studio.core.advice_rules import data_level, trainable_stages

    if not pretrained:
        if frozen:
            return RANDOM_AND_FROZEN
        return ("Random starting weights: every layer trains from scratch, which needs many images and epochs; "
                "ImageNet weights get further with few images.")

    share = 1 - trainable_share if trainable_share is not None else frozen / max(1, num_stages)  # frozen
    level = data_level(per_class)  # the advisor's thresholds: tiny < 20 <= small < 250 <= medium < 1500
    count = f"{per_class:.0f}"
    images = f"~{count} training {'image' if count == '1' else 'images'} per class"
    if level in ("tiny", "small"):
        trainable = num_stages - frozen
        # the most the advisor fine-tunes at this size (when the frozen features fit the classes poorly): past
        # it, a warning; up to it, no contradiction of the advice just applied ("risks overfitting" stood under
        # the advisor's own "first 4 of 5 stages")
        allowed = trainable_stages(level, "weak", num_stages)
        if trainable > allowed:
            return (f"Only {images}: fine-tuning this much risks overfitting. "
                    f"Freeze more, unless your images look nothing like everyday photos.")
        if trainable and share < 0.5:
            stages = "stage" if trainable == 1 else f"{trainable} stages"
            return (f"{images}: fine-tuning the last {stages} pays off only when the frozen features fit your "
                    f"classes poorly (Analyse my dataset measures it); else a frozen backbone is the safe start.")
        return (f"{images}: a frozen backbone with a new head is the safe "
                f"start; unfreeze the last stages later if accuracy stalls.")
    if level == "medium":
        return (f"{images}: freezing the early stages and fine-tuning the "
                f"later ones usually works best; freeze more if your images resemble everyday photos.")
    if share > 0.5:
        return (f"{images}: plenty to fine-tune more of the network, "
                f"especially if your images differ from everyday photos (medical, satellite, microscopy).")
    return f"{images}: enough data to fine-tune most of the network."


# The start of the note below: a phase that trains on images (the two-phase schedule's second) leaves it out.
CACHED_PASSES = "passes over the cached features"


def cached_passes_note(images: int, passes: int, min_steps: int, two_phase: bool) -> str:
    """An epoch of several passes over cached features, said when the run starts: --epochs reads "passes
    over the training images", and the train accuracy counts every pass (a user found 1715 = 7 x 245)."""
    when = "In the head phase, each" if two_phase else "Each"
    return (f"{when} epoch makes {passes} {CACHED_PASSES} of the {images} training images: a new head needs "
            f"about {min_steps} steps, and one pass of this data set is fewer.")
