"""The learning-rate finder dialog and the advisor panel, offscreen: a real background run on
generated images, the result on screen, one click into the session's config, Cancel, and clean-up
(the conftest fails any test that leaves a thread running)."""

from __future__ import annotations

import math

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QTextDocumentFragment
from PySide6.QtWidgets import QDialog, QLabel

from tl_studio.core.data import scan_dataset
from tl_studio.gui.advisor_panel import AdvisorPanel
from tl_studio.gui.lr_finder_dialog import LrFinderDialog
from tl_studio.gui.session import Session

RUN_TIMEOUT_MS = 120_000


def wait_for_thread_end(qtbot, task) -> None:
    """The result arrives a moment before the task's thread has ended. Connecting a signal (as
    waitSignal does) while that thread destroys its worker can deadlock PySide (see tasks.py), so
    the tests let the thread end first; waitUntil only polls."""
    qtbot.waitUntil(lambda: not task.thread.isRunning(), timeout=10_000)


@pytest.fixture
def session(qtbot, tiny_dataset) -> Session:
    session = Session()
    session.set_dataset(scan_dataset(tiny_dataset))
    session.update_config(img_size=64, batch_size=8, workers=0)
    return session


@pytest.fixture
def dialog(qtbot, session):
    """Held here until teardown, then shut down: a widget deleted while its thread still runs (for
    example when the test's last reference goes) would abort the process."""
    widget = LrFinderDialog(session)
    qtbot.addWidget(widget)
    yield widget
    widget.shutdown()


@pytest.fixture
def panel(qtbot, session):
    widget = AdvisorPanel(session)
    qtbot.addWidget(widget)
    yield widget
    widget.shutdown()


def test_the_finder_plots_the_sweep_and_uses_the_chosen_value(qtbot, session, dialog):
    dialog.show()
    assert not dialog.use_button.isEnabled()
    with qtbot.waitSignal(dialog.resultReady, timeout=RUN_TIMEOUT_MS) as ready:
        dialog.start()
        assert dialog.cancel_button.isVisible() and not dialog.run_button.isEnabled()
    result = ready.args[0]
    wait_for_thread_end(qtbot, dialog.task)
    assert result.suggested_lr is not None
    assert len(dialog.curve.getData()[0]) == len(result.lrs) > 10
    assert dialog.marker.isVisible() and dialog.marker.value() == pytest.approx(math.log10(result.suggested_lr))
    assert "Suggested learning rate" in dialog.message.text() and dialog.use_button.isEnabled()
    assert dialog.plot.getPlotItem().getAxis("bottom").logMode  # a log x axis

    dialog.marker.setValue(dialog.marker.value() - 1)  # the user drags the marker a decade lower
    assert dialog.chosen_lr == pytest.approx(result.suggested_lr / 10, rel=1e-6)
    assert "Chosen learning rate" in dialog.message.text()
    with qtbot.waitSignal(session.configChanged):
        dialog.use_button.click()
    assert session.config.lr == pytest.approx(float(f"{result.suggested_lr / 10:.2g}"))
    assert dialog.result() == QDialog.Accepted


def test_cancelling_the_finder_changes_nothing(qtbot, session, dialog):
    dialog.start()
    with qtbot.waitSignal(dialog.task.cancelled, timeout=RUN_TIMEOUT_MS):
        dialog.cancel_button.click()
    assert "Cancelled" in dialog.message.text() and session.config.lr is None
    assert dialog.run_button.isEnabled() and not dialog.use_button.isEnabled()


def test_closing_the_finder_mid_run_stops_its_thread(qtbot, session, dialog):
    """Close or Escape waited for the sweep's current step in the window's thread: 20 s of a frozen window
    with no word when the whole network trained. The dialog now says so and closes when the step ends."""
    dialog.show()
    dialog.start()
    assert dialog.running
    with qtbot.waitSignal(dialog.finished, timeout=RUN_TIMEOUT_MS):
        dialog.reject()  # returns at once
        assert dialog.isVisible() and dialog.message.text() == "Cancelling…"
    assert not dialog.task.thread.isRunning() and not dialog.isVisible() and session.config.lr is None


def test_the_advisor_shows_reasons_and_applies_them_in_one_click(qtbot, session, panel):
    panel.show()
    assert not panel.apply_button.isEnabled()
    session.update_config(epochs=3, lr=0.05)
    with qtbot.waitSignal(panel.recommendationReady, timeout=RUN_TIMEOUT_MS) as ready:
        panel.analyse_button.click()
    recommendation = ready.args[0]
    wait_for_thread_end(qtbot, panel.task)
    reasons = [panel.findChild(QLabel, f"reason_{s}").text() for s in ("freeze", "lr", "epochs", "schedule")]
    assert all(len(r) > 40 for r in reasons)
    assert panel.findChild(QLabel, "advice_freeze").text() == "whole backbone (head only)"
    assert "training images in 3 classes" in panel.summary.text()

    with qtbot.waitSignal(panel.applied) as applied:
        panel.apply_button.click()
    config = session.config
    assert (config.freeze, config.epochs, config.schedule) == ("all", recommendation.epochs, "onecycle")
    assert config.lr is None  # the recommended 1e-3 is the automatic rate
    assert set(applied.args[0]) >= {"freeze", "lr", "epochs", "img_size", "schedule", "freeze_epochs"}
    assert not panel.apply_button.isEnabled()  # applied: a second press would change nothing
    session.update_config(epochs=recommendation.epochs + 4)
    assert panel.apply_button.isEnabled()  # and puts the recommended epochs back
    with qtbot.waitSignal(panel.applied):
        panel.apply_button.click()
    assert session.config.epochs == recommendation.epochs and not panel.apply_button.isEnabled()
    session.update_config(epochs=recommendation.epochs + 4)

    session.update_config(weights="none")  # random weights get other advice (nothing to keep frozen)
    assert panel.is_stale() and not panel.apply_button.isEnabled() and "analyse again" in panel.status.text()
    session.update_config(weights="default")
    assert not panel.is_stale() and panel.apply_button.isEnabled()
    session.update_config(model="resnet18")  # another model: the advice no longer applies
    assert panel.is_stale() and not panel.apply_button.isEnabled() and "analyse again" in panel.status.text()

    # another data folder: its figures would read as the new folder's, so they go
    from pathlib import Path

    from tests.helpers import make_image_folder

    other = make_image_folder(Path(session.config.data_dir).parent / "other photos", classes=("x", "y"), per_class=4)
    session.set_dataset(scan_dataset(other))
    assert not panel.summary.isVisibleTo(panel) and panel.grid.count() == 0 and panel.recommendation is None
    assert panel.status.text() == "Analyse to get recommendations for other photos."
    assert not panel.apply_button.isEnabled()


def test_closing_the_advisor_mid_run_stops_its_thread(qtbot, session, panel):
    panel.start()
    assert panel.running and panel.progress.isVisibleTo(panel)
    panel.shutdown()
    assert not panel.task.thread.isRunning()


@pytest.mark.parametrize("per_class, accuracy", [(12, 0.99), (2000, 0.3)])
def test_after_apply_the_train_step_shows_the_rate_the_advice_gave(qtbot, session, panel, per_class, accuracy):
    """Apply puts the advice into the Train step's form; the rate it shows is the one the advice named
    (for the two-phase schedule: the fine-tuning rate, with the head phase's rate beside it)."""
    from tests.core.test_advisor import probe, stats
    from tl_studio.core.advice_rules import recommend
    from tl_studio.gui.train_settings import TrainSettings

    form = TrainSettings(session)
    qtbot.addWidget(form)
    recommendation = recommend(stats(per_class), probe(accuracy))
    panel.show_recommendation(panel._target(), recommendation)
    panel.apply_button.click()
    assert abs(form.lr.value() - recommendation.lr) < 1e-12
    shown_in_panel = panel.findChild(QLabel, "advice_lr").text()
    assert float(shown_in_panel) == recommendation.lr
    if recommendation.schedule == "fine-tune":
        assert form.freeze_epochs.suffix() == " at rate 0.001"
    else:
        assert form.freeze_epochs.suffix() == ""
    assert form.auto_lr.text() == "automatic"  # a longer text widened the settings column past the window


def test_the_advisor_says_what_the_scan_left_out_with_names_as_written(panel):
    from dataclasses import replace

    from tests.core.test_advisor import probe, stats
    from tl_studio.core.advice_rules import recommend
    from tl_studio.core.data import Problem
    from tl_studio.core.problem_summary import problems_sentence

    sentence = problems_sentence([Problem("red/<b>notes&.jpg", "Not an image file", "not_image")], "the analysis")
    recommendation = replace(recommend(stats(12), probe(0.99)), dataset_problems=sentence)
    panel.show_recommendation(panel._target(), recommendation)
    assert panel.summary.text() == f"{recommendation.summary}\n{sentence}"
    assert "1 file left out of the analysis (red/<b>notes&.jpg)" in panel.summary.text()
    assert panel.summary.textFormat() == Qt.PlainText


@pytest.mark.parametrize("suggested", [True, False])
def test_the_finder_says_what_the_scan_left_out_with_names_as_written(dialog, suggested):
    from tl_studio.core.data import Problem
    from tl_studio.core.lr_finder import LrFindResult
    from tl_studio.core.problem_summary import problems_sentence

    sentence = problems_sentence([Problem("red/<b>notes&.jpg", "Not an image file", "not_image")], "the sweep")
    lrs = tuple(10 ** (-6 + i / 4) for i in range(20))
    losses = tuple(1.0 - i / 40 for i in range(20))
    result = LrFindResult(lrs=lrs, losses=losses, raw_losses=losses, suggested_lr=lrs[8] if suggested else None,
                          suggested_index=8 if suggested else None, min_loss_lr=lrs[-1], diverged=False,
                          feature_cache=True, model="efficientnet_lite0", freeze="all", seconds=1.0,
                          message="The loss fell.", dataset_problems=sentence)
    dialog.show_result(result)
    shown = QTextDocumentFragment.fromHtml(dialog.message.text()).toPlainText()
    assert "1 file left out of the sweep (red/<b>notes&.jpg)" in shown


def test_the_finder_says_it_sweeps_once_steps_come_in(dialog):
    """'Preparing the model…' stood under "Trying learning rate 4.4e-07" to the end of a minute's sweep."""
    from types import SimpleNamespace

    from tl_studio.gui.lr_finder_dialog import PREPARING

    dialog.message.setText(PREPARING)
    dialog._on_progress(SimpleNamespace(done=3, total=100, text="Trying learning rate 4.4e-07: loss 0.731"))
    assert dialog.message.text().startswith("Trying learning rates from small to large")
    assert dialog.progress.format() == "Trying learning rate 4.4e-07: loss 0.731"
