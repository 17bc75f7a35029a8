"""The training controller's thread bookkeeping, with a stand-in for the engine (no training): a run
started right after the last one finished must run, whatever order the old thread's signals arrive in."""

from __future__ import annotations

import threading

from PySide6.QtCore import QCoreApplication, Qt
from shiboken6 import isValid

from tl_studio.core import engine, events
from tl_studio.gui import training
from tl_studio.gui.training import TrainingController


def test_a_run_started_before_the_last_runs_thread_reported_its_end_still_runs(qtbot, monkeypatch, tmp_path):
    """The Train step's Resume right after a stopped run: the stopped run's thread has ended, but its
    queued ``finished`` reaches the controller only after the next run started. That late signal once
    made the controller drop the new run's worker and wait for the new thread from the GUI thread,
    forever (the window froze and the resumed run never began)."""
    entered, release = threading.Event(), threading.Event()

    class EngineStandIn:
        def __init__(self, *args, **kwargs):
            pass

        def fit(self, resume):
            entered.set()
            release.wait(10)  # a run in progress (bounded, so a regression fails instead of hanging)
            return events.RunFinished("completed", 1, 1, 1.0, None, 0.0)

    monkeypatch.setattr(engine, "Trainer", EngineStandIn)
    monkeypatch.setattr(training, "share_the_cpu_with_the_window", lambda: None)
    controller = TrainingController()
    ended = threading.Event()
    with qtbot.waitSignal(controller.finished, timeout=10_000):
        controller.start(None, tmp_path)
        first = controller.thread
        # the first thread ends (and emits its own "finished") only once the GUI thread has seen its
        # run finish: that "finished" then waits in the queue while the next run starts
        controller.worker.finished.connect(lambda *args: ended.wait(10), Qt.DirectConnection)
        release.set()
    ended.set()
    assert first.wait(10_000)
    release.clear()
    entered.clear()
    controller.start(None, tmp_path / "again", resume=True)
    second = controller.thread
    # should the controller wait for the running thread again, end that wait after 15 s (the test fails)
    watchdog = threading.Timer(15, second.quit)
    watchdog.start()
    try:
        QCoreApplication.sendPostedEvents(controller)  # the old thread's late "finished" arrives
        qtbot.waitUntil(entered.is_set, timeout=10_000)
        assert controller.active and controller.thread is second and controller.worker is not None
        assert not controller._run_done  # the new run is still going
        release.set()
        with qtbot.waitSignal(controller.finished, timeout=10_000) as finished:
            pass
        assert finished.args[0].status == "completed"
        qtbot.waitUntil(lambda: not controller.active, timeout=10_000)  # its own thread was joined
    finally:
        watchdog.cancel()
        release.set()
        if isValid(second):
            second.wait(10_000)
