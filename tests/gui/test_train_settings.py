"""The Train step's settings are remembered from one launch to the next (README): what the user chose
comes back in a new window's form and in the config the next run uses."""

from __future__ import annotations

from tl_studio.core.config import TrainConfig
from tl_studio.gui.session import Session
from tl_studio.gui.train_settings import TrainSettings


def launch(qtbot) -> TrainSettings:
    settings = TrainSettings(Session())
    qtbot.addWidget(settings)
    return settings


def test_settings_chosen_at_one_launch_are_there_at_the_next(qtbot):
    first = launch(qtbot)
    assert first.epochs.value() == TrainConfig().epochs  # nothing remembered yet: the defaults
    first.epochs.setValue(17)
    first.auto_lr.setChecked(False)
    first.lr.setValue(0.0005)
    first.augment.setCurrentIndex(first.augment.findData("strong"))

    second = launch(qtbot)  # a new window: a new session, the same QSettings
    assert second.epochs.value() == 17 and not second.auto_lr.isChecked()
    assert abs(second.lr.value() - 0.0005) < 1e-9
    assert second.augment.currentData() == "strong"
    config = second.session.config
    assert (config.epochs, config.lr, config.augment) == (17, 0.0005, "strong")


def test_an_unreadable_remembered_value_falls_back_to_the_defaults(qtbot):
    from PySide6.QtCore import QSettings

    from tl_studio.gui.train_settings import SETTINGS_KEY

    QSettings().setValue(SETTINGS_KEY, '{"epochs": -3}')
    assert launch(qtbot).session.config.epochs == TrainConfig().epochs


def test_loader_workers_are_automatic_until_the_user_sets_a_number(qtbot):
    settings = launch(qtbot)
    assert settings.workers.text() == "automatic" and settings.session.config.workers is None
    settings.workers.setValue(3)
    assert settings.session.config.workers == 3
    settings.workers.setValue(0)  # no loader processes: the images load in the run's own process
    assert settings.session.config.workers == 0
    settings.workers.setValue(-1)
    assert settings.workers.text() == "automatic" and settings.session.config.workers is None


def test_the_schedule_and_the_freeze_depth_stay_compatible_whichever_step_changes_them(qtbot):
    """Two-phase fine-tuning then "train only the new head" on the Model step: the steps disagreed and
    Start refused the run in command-line words ("give a depth other than 'all'")."""
    from tl_studio.gui.session import Session

    session = Session()
    said = []
    session.statusMessage.connect(said.append)
    assert session.config.freeze == "all"
    session.update_config(schedule="fine-tune")  # the Train step
    assert session.config.freeze == "none" and said[-1].startswith("Two-phase fine-tuning: the head trains first")
    session.update_config(freeze="all")  # the Model step's slider at "only the new head"
    assert session.config.schedule == "onecycle" and session.config.freeze == "all"
    assert said[-1].startswith("Only the new head trains now, so the schedule is One-cycle again")
    session.update_config(schedule="fine-tune", freeze="3")
    assert (session.config.schedule, session.config.freeze) == ("fine-tune", "3")
    session.config.validate()
    session.update_config(schedule="onecycle")  # a depth of the user's: kept
    assert session.config.freeze == "3"


def test_leaving_two_phase_fine_tuning_freezes_the_backbone_it_unfroze(qtbot):
    """Two-phase fine-tuning, then One-cycle again: the freeze depth stayed "none", and the next run trained
    all 3,373,570 parameters where the user had the head alone."""
    from tl_studio.gui.session import Session

    session = Session()
    said = []
    session.statusMessage.connect(said.append)
    session.update_config(schedule="fine-tune")
    assert session.config.freeze == "none"
    session.update_config(schedule="cosine")
    assert session.config.freeze == "all" and said[-1] == "Only the new head trains again, as before two-phase " \
                                                          "fine-tuning."
    session.update_config(schedule="fine-tune")
    session.update_config(freeze="2")  # chosen on the Model step meanwhile: kept
    session.update_config(schedule="onecycle")
    assert session.config.freeze == "2"


def test_a_rate_set_for_the_head_alone_is_not_carried_into_fine_tuning(qtbot):
    """The finder's 1e-2 for the head stayed set when the Train step switched to two-phase fine-tuning: the
    backbone would have been fine-tuned at ten times the head phase's rate."""
    from tl_studio.gui.session import Session

    session = Session()
    said = []
    session.statusMessage.connect(said.append)
    session.update_config(lr=1e-2)  # "Use this value" in the finder, head only
    session.update_config(epochs=8)  # anything else keeps it
    assert session.config.lr == 1e-2
    session.update_config(schedule="fine-tune")
    assert session.config.lr is None and session.config.freeze == "none"
    # both changes said in one line: the second sentence hid the first
    assert said[-1] == ("Two-phase fine-tuning: the head trains first, then the whole network (change the freeze "
                        "depth on the Model step). The learning rate is automatic again: 0.01 was set for training "
                        "the new head alone. Find learning rate… on the Train step measures one for this setting.")
    session.update_config(lr=3e-4, freeze="2")  # set with the depth: kept
    assert session.config.lr == 3e-4
