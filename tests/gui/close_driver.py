"""Opens the app on a data set, does one thing, and closes the window at a chosen moment, from inside
the app's own process (a timer on its event loop), the way a user's click on the close button would.

    python -m tests.gui.close_driver DATA_DIR idle SECONDS
    python -m tests.gui.close_driver DATA_DIR train SECONDS        (SECONDS after the first epoch ended)
    python -m tests.gui.close_driver DATA_DIR evaluate SECONDS RUN_DIR   (SECONDS after it started)
    python -m tests.gui.close_driver DATA_DIR export SECONDS RUN_DIR

The process's exit status is the app's. It prints "closing at T s" and "closed in D s" (from the close
request to the end of closeEvent) for the test to check. Every "Stop and quit?" question is answered Yes.
"""

from __future__ import annotations

import faulthandler
import sys
import time
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QMessageBox

from tl_studio.gui import app as gui_app

STARTED = time.monotonic()


def close_later(window, seconds: float) -> None:
    def close() -> None:
        print(f"closing at {time.monotonic() - STARTED:.2f} s", flush=True)
        began = time.monotonic()
        window.close()
        print(f"closed in {time.monotonic() - began:.2f} s", flush=True)

    QTimer.singleShot(int(seconds * 1000), close)


def when(condition, then, poll_ms: int = 50) -> None:
    """Calls ``then`` once ``condition()`` holds, checking on the event loop (never blocking it)."""
    timer = QTimer()
    timer.setInterval(poll_ms)

    def check() -> None:
        if condition():
            timer.stop()
            then()

    timer.timeout.connect(check)
    timer.start()
    when.timers.append(timer)  # kept alive until the process ends


when.timers = []


def main(argv: list[str]) -> int:
    faulthandler.enable()
    data_dir, action, seconds = argv[0], argv[1], float(argv[2])
    run_dir = Path(argv[3]) if len(argv) > 3 else None
    QMessageBox.question = staticmethod(lambda *args, **kwargs: QMessageBox.Yes)
    QMessageBox.exec = lambda box: QMessageBox.Yes  # the quit question, which follows the run while it waits
    app, _ = gui_app.application()
    window = gui_app.create_window(data_dir)
    session = window.session
    if action == "idle":
        close_later(window, seconds)
    elif action == "train":
        def start() -> None:
            session.update_config(img_size=64, workers=0, batch_size=4, epochs=50, feature_cache=False)
            train = window.pages["Train"]
            train.controller.epochEnded.connect(lambda _: first_epoch())
            window.steps.go_to("Train")
            train.start()

        def first_epoch() -> None:
            if not getattr(first_epoch, "seen", False):
                first_epoch.seen = True
                close_later(window, seconds)

        when(lambda: session.scan is not None, start)
    elif action == "evaluate":
        def evaluate() -> None:
            window.open_model_file(str(run_dir / "model.pt2"))
            page = window.pages["Evaluate"]
            page.source_box.setCurrentIndex(page.source_box.findData("all"))
            page.evaluate_button.click()
            close_later(window, seconds)

        when(lambda: session.scan is not None, evaluate)
    elif action == "export":
        def export() -> None:
            window.open_model_file(str(run_dir / "model.pt2"))
            page = window.pages["Export"]
            window.steps.go_to("Export")
            page.path_edit.setText(str(run_dir / "exported.onnx"))
            page.format_buttons.button(1).setChecked(True)  # ONNX
            page.path_edit.setText(str(run_dir / "exported.onnx"))
            page.export()
            close_later(window, seconds)

        when(lambda: session.scan is not None, export)
    else:
        raise SystemExit(f"unknown action {action}")
    return app.exec()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
