"""Two ways into the app beside the plain ``tl-studio``:

- a model file handed over by a file manager ("Open with TL Studio", ``tl-studio MODEL.pt2``): the
  window opens on the Predict step with it. The file goes the way File > Open Model File and the
  step's "Open model file…" button take (``model_trust.open_for_the_app``), so it gets the same checks
  before anything is loaded from it, and every step works on it;
- ``TL_STUDIO_CLOSE_AFTER_START=1``: the window opens, waits until its background start-up (torch and
  the engine) has finished, and closes; the exit status says whether all of it worked. With a data
  folder it first loads one batch through two loader processes started the way GUI training starts
  them (from the fork server of gui/processes.py). The packaged app's smoke test
  (packaging/smoke_test.sh) uses it to prove that the frozen GUI and its worker processes start.

Both start the window with ``tl_studio.gui.app.main`` under a QApplication made here, so the window is
the one ``tl-studio`` opens, and run the event loop here.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

CLOSE_AFTER_START = "TL_STUDIO_CLOSE_AFTER_START"
START_TIMEOUT_MS = 120_000
CHECK_EVERY_MS = 200


def open_model_in_predict(window, path: str) -> None:
    """As File > Open Model File, then the Predict step: the model of every step (Evaluate and Export
    too; given to the Predict step alone, every step but Data stayed greyed out)."""
    from tl_studio.gui.model_trust import open_for_the_app

    window.steps.go_to("Predict")  # behind the message box of a refused file too
    open_for_the_app(window, window.session, str(Path(path).resolve()))


def main_window():
    from tl_studio.gui.main_window import MainWindow

    return next(w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow))


def start_up_finished(window) -> bool:
    """True once the window's background start-up (MainWindow._after_shown: torch, the engine, each
    page's own loading) has begun and no background task of the window is running any more."""
    from tl_studio.gui.tasks import TaskRunner

    runners = window.findChildren(TaskRunner)
    return hasattr(window, "warm_up") and not any(runner.tasks for runner in runners)


def load_a_batch_like_gui_training(data_dir: str) -> int:
    """One batch from the folder through 2 loader processes of the GUI's fork server; its size."""
    from torchvision.transforms import Compose, PILToTensor, Resize

    from tl_studio.core.data import scan_dataset
    from tl_studio.core.dataset import ImageDataset, make_loader
    from tl_studio.gui.processes import child_process_context

    dataset = ImageDataset(scan_dataset(data_dir).records, Compose([Resize((32, 32)), PILToTensor()]))
    loader = make_loader(dataset, batch_size=8, shuffle=False, workers=2, seed=0,
                         mp_context=child_process_context())
    return len(next(iter(loader)))


def close_after_start(window, app: QApplication, outcome: dict, data_dir: str | None = None) -> None:
    """Checks on a timer (the event loop keeps running) and closes every window when start-up is over
    or START_TIMEOUT_MS have passed; outcome["ok"] says whether torch had loaded by then."""
    timer = QTimer(app)
    elapsed = {"ms": 0, "quiet": 0}

    def check() -> None:
        elapsed["ms"] += CHECK_EVERY_MS
        # One finished task's result can start the next (the model catalogue, then the model's
        # stages): quiet twice in a row means start-up is over.
        elapsed["quiet"] = elapsed["quiet"] + 1 if start_up_finished(window) else 0
        if elapsed["quiet"] >= 2 or elapsed["ms"] >= START_TIMEOUT_MS:
            timer.stop()
            outcome["ok"] = elapsed["quiet"] >= 2 and "torch" in sys.modules
            if not outcome["ok"]:
                print("TL Studio: the window's start-up did not finish "
                      f"within {START_TIMEOUT_MS // 1000} s.", file=sys.stderr)
            elif data_dir:
                size = load_a_batch_like_gui_training(data_dir)
                print(f"Loaded a batch of {size} images through 2 loader processes of the fork server.")
                outcome["ok"] = size > 0
            app.closeAllWindows()

    timer.timeout.connect(check)
    timer.start(CHECK_EVERY_MS)


def main(gui_argv: list[str], model_file: str | None = None) -> int:
    from tl_studio.gui.app import application
    from tl_studio.gui.app import main as app_main

    app, _ = application()
    app_main(gui_argv)  # an application exists: shows the window and returns
    window = main_window()
    if model_file:
        open_model_in_predict(window, model_file)
    outcome = {"ok": True}
    if os.environ.get(CLOSE_AFTER_START):
        outcome["ok"] = False
        close_after_start(window, app, outcome, gui_argv[0] if gui_argv else None)
    status = app.exec()
    return status or (0 if outcome["ok"] else 1)
