"""Renders the Runs step for the README, offscreen, with a few generated run folders (one still
training, one failed): QT_QPA_PLATFORM=offscreen python packaging/render_runs_screenshot.py [DIR]
(default docs/screenshots). Writes runs.png.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PySide6.QtCore import QCoreApplication, QSettings  # noqa: E402

SIZE = (1360, 860)
DAY = 86_400.0


def settle(seconds: float) -> None:
    """Lets the app run for a moment (this script is the only thing driving it)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QCoreApplication.processEvents()
        time.sleep(0.02)


def make_runs(root: Path) -> list:
    from tests.run_folders import append_batch, write_run
    from tl_studio.core.run_folder import RunFolder
    from tl_studio.core.run_history import annotate_run

    now = time.time()
    data = "/home/me/data/flowers"
    specs = [
        ("flowers-efficientnet_lite0-20261124-091502", dict(final_acc=0.912, epochs=5, seconds_per_epoch=9,
                                                             images_per_s=410, started=now - 6 * DAY)),
        ("flowers-resnet18-20261125-142210", dict(model="resnet18", freeze="2", lr=1e-3, final_acc=0.935, epochs=8,
                                                  seconds_per_epoch=31, images_per_s=190, started=now - 5 * DAY,
                                                  device="NVIDIA RTX 4070 (12 GB)")),
        ("flowers-resnet18-20261126-100031", dict(model="resnet18", freeze="none", lr=3e-4, final_acc=0.951,
                                                  epochs=10, seconds_per_epoch=44, images_per_s=120,
                                                  started=now - 4 * DAY, device="NVIDIA RTX 4070 (12 GB)",
                                                  schedule="fine-tune")),
        ("flowers-convnext_tiny-20261127-181544", dict(model="convnext_tiny", freeze="none", lr=1e-4,
                                                       final_acc=0.949, epochs=10, seconds_per_epoch=61,
                                                       images_per_s=85, started=now - 3 * DAY,
                                                       device="NVIDIA RTX 4070 (12 GB)")),
        ("flowers-convnext_base-20261128-083012", dict(model="convnext_base", freeze="none", lr=1e-4, epochs=10,
                                                       done=1, state="failed", started=now - 2 * DAY,
                                                       reason="GPU out of memory at batch size 32 even after "
                                                              "lowering it to 4; choose a smaller model or "
                                                              "image size.", device="NVIDIA RTX 4070 (12 GB)")),
        ("flowers-mobilenet_v3_large-20261130-094417", dict(model="mobilenet_v3_large", freeze="all",
                                                            final_acc=0.925, epochs=12, done=4, state="running",
                                                            seconds_per_epoch=14, images_per_s=330,
                                                            started=now - 600)),
    ]
    locks = []
    for seed, (name, spec) in enumerate(specs):
        folder = write_run(root / name, data_dir=data, seed=seed, **spec)
        if spec.get("state") == "running":
            locks.append(RunFolder(folder).lock())  # as if a CLI run were training it now
            append_batch(folder, spec["done"] + 1, 23, 40)
    annotate_run(root / specs[2][0], starred=True, note="fine-tune schedule: best so far")
    annotate_run(root / specs[0][0], name="baseline (frozen lite0)")
    return locks


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tl_runs_screen_"))
    os.environ["TL_STUDIO_RUNS_DIR"] = str(work / "runs")
    QSettings.setDefaultFormat(QSettings.IniFormat)
    QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, str(work / "settings"))
    locks = make_runs(work / "runs")
    from tl_studio.gui.app import application, create_window

    app, _ = application()
    window = create_window()
    window.resize(*SIZE)
    window.steps.go_to("Runs")
    page = window.pages["Runs"]
    end = time.monotonic() + 30
    while page.model.rowCount() < 6 and time.monotonic() < end:
        settle(0.05)
    runs = work / "runs"
    page.select_paths([str(runs / "flowers-resnet18-20261126-100031"), str(runs / "flowers-convnext_tiny-20261127-181544"),
                       str(runs / "flowers-efficientnet_lite0-20261124-091502")])
    settle(1.0)
    path = out / "runs.png"
    window.grab().save(str(path))
    print(f"wrote {path}")
    page.tabs.setCurrentIndex(1)
    settle(0.3)
    window.grab().save(str(work / "runs-diff.png"))
    print(f"wrote {work / 'runs-diff.png'} (the settings diff, to look at)")
    for lock in locks:
        lock.release()
    window.close()
    settle(0.5)
    app.quit()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshots")
