"""Renders a screenshot of every step of the app, offscreen, on the real ants/bees dataset, for the
README: `make screenshots` (or QT_QPA_PLATFORM=offscreen python packaging/render_screenshots.py DIR).

It drives the app the way a user would: open the folder, pick the model, train three epochs, evaluate,
export and classify a few images, grabbing the window after each step. The Evaluate step shows its
reliability diagram, the Export step its table comparing the formats.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QCoreApplication, QSettings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets" / "hymenoptera"
SIZE = (1360, 860)


def wait_until(condition, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the app did not get there in time")
        QCoreApplication.processEvents()
        time.sleep(0.02)


def settle(seconds: float = 0.5) -> None:
    wait_until(lambda s=time.monotonic() + seconds: time.monotonic() > s)


def grab(window, step: str, out: Path) -> None:
    window.steps.go_to(step)
    settle()
    path = out / f"{step.lower()}.png"
    window.grab().save(str(path))
    print(f"wrote {path}")


def main(out: Path, data: Path = DATA) -> None:
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tl_screens_"))
    os.environ["TL_STUDIO_RUNS_DIR"] = str(work / "runs")
    QSettings.setDefaultFormat(QSettings.IniFormat)
    QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, str(work / "settings"))
    from tl_studio.gui.app import application, create_window

    app, _ = application()
    window = create_window(str(data))
    window.resize(*SIZE)
    wait_until(lambda: window.session.scan is not None)
    settle(3)  # thumbnails and the full decode check
    grab(window, "Data", out)
    model_page = window.pages["Model"]
    wait_until(lambda: model_page.summary is not None)
    grab(window, "Model", out)

    window.session.update_config(epochs=3, workers=2)
    train = window.pages["Train"]
    finished = []
    train.runFinished.connect(finished.append)
    window.steps.go_to("Train")
    train.start()
    wait_until(lambda: finished)
    grab(window, "Train", out)
    _evaluate(window, out)
    _export(window, out, work)
    _predict(window, out, data)
    window.close()
    app.processEvents()


def _evaluate(window, out: Path) -> None:
    page = window.pages["Evaluate"]
    evaluations = []
    page.evaluated.connect(evaluations.append)
    window.steps.go_to("Evaluate")  # arriving at the step starts the evaluation
    if not page.running and not evaluations:
        page.evaluate()
    wait_until(lambda: evaluations)
    # Show the gallery of the most interesting cell: the largest off-diagonal count.
    matrix = evaluations[-1].confusion_matrix().tolist()
    cells = [(matrix[t][p], t, p) for t in range(len(matrix)) for p in range(len(matrix)) if t != p]
    if cells and max(cells)[0] > 0:
        _, true_class, predicted_class = max(cells)
        page.show_cell(true_class, predicted_class)
    page.tabs.setCurrentWidget(page.calibration_tab)  # the cell stays selected in the matrix
    grab(window, "Evaluate", out)


def _export(window, out: Path, work: Path) -> None:
    page = window.pages["Export"]
    reports = []
    page.exported.connect(reports.append)
    page.path_edit.setText(str(work / "exported" / "ants-bees.pt2"))
    page.export()
    wait_until(lambda: reports)
    page.compare_formats()
    wait_until(lambda: not page.comparing, timeout=1800)
    if page.format_report is None:
        raise RuntimeError(f"the format comparison failed: {page.compare_result.text()}")
    grab(window, "Export", out)


def _predict(window, out: Path, data: Path) -> None:
    page = window.pages["Predict"]
    finished = []
    page.predictionsFinished.connect(finished.append)
    images = sorted((data / "val" / "ants").glob("*.jpg"))[:6] + sorted((data / "val" / "bees").glob("*.jpg"))[:6]
    window.steps.go_to("Predict")
    page.add_paths([str(p) for p in images])
    wait_until(lambda: finished and not page.running)
    grab(window, "Predict", out)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshots")
