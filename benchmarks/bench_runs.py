"""The run history with many runs (issue: run history).

Generates N run folders (default 300) in the engine's layout (tests/run_folders.py: config.json,
status.json, metrics.csv, events.jsonl, placeholder checkpoints), then measures:

1. ``tl-studio runs``' core: seconds to find and summarise every run (``list_runs``), median of 5.
2. The Runs step: seconds from ``show()`` until every run is in the table (target < 1 s), and how
   long ``show()`` itself took (the folders are read in the background, so it returns at once).
3. The window while the folders are read: a 5 ms QTimer probe records the gaps between its ticks.
   The first gap is the page's first paint (its plots and table, the same with 2 runs or 300); the
   worst later gap is how long reading the folders and adding the rows kept the window from
   repainting (target: well under 100 ms).

Usage: python benchmarks/bench_runs.py [--runs 300] [--repeat 3]
Runs offscreen unless QT_QPA_PLATFORM says otherwise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def generate(root: Path, count: int) -> None:
    from tests.run_folders import write_run

    models = ("efficientnet_lite0", "resnet18", "mobilenet_v3_large", "convnext_tiny")
    for index in range(count):
        write_run(root / f"flowers-{models[index % 4]}-{index:03d}", model=models[index % 4],
                  freeze=("all", "none", "2")[index % 3], lr=(None, 3e-4, 1e-3)[index % 3], epochs=10 + index % 5,
                  final_acc=0.8 + (index % 37) / 200, started=1.7e9 + index * 600, seed=index,
                  state="failed" if index % 50 == 7 else "done",
                  reason="GPU out of memory; lower the batch size." if index % 50 == 7 else "")


def time_core(root: Path) -> list[float]:
    from tl_studio.core.run_history import list_runs

    times = []
    for _ in range(5):
        started = time.perf_counter()
        runs = list_runs([root])
        times.append(time.perf_counter() - started)
    assert len(runs) == COUNT
    return times


def time_page(root: Path) -> tuple[float, float, float, float]:
    """(seconds until every run is in the table, seconds show() took, the first paint's event-loop
    gap, the worst gap after it), times in seconds, gaps in ms."""
    from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from tl_studio.gui.pages.runs_page import RunsPage
    from tl_studio.gui.session import Session

    app = QApplication.instance() or QApplication([])
    os.environ["TL_STUDIO_RUNS_DIR"] = str(root)
    page = RunsPage(Session())
    page.resize(1400, 800)
    gaps: list[float] = []
    clock = QElapsedTimer()
    probe = QTimer()
    probe.setInterval(5)

    def tick() -> None:
        gaps.append(clock.restart())

    probe.timeout.connect(tick)
    loop = QEventLoop()
    page.loader.finished.connect(loop.quit)
    QTimer.singleShot(30_000, loop.quit)
    clock.start()
    probe.start()
    started = time.perf_counter()
    page.show()
    shown = time.perf_counter() - started
    loop.exec()
    app.processEvents()  # the rows' first paint
    filled = time.perf_counter() - started
    probe.stop()
    assert page.model.rowCount() == COUNT, page.model.rowCount()
    page.shutdown()
    page.close()
    page.deleteLater()
    return filled, shown, gaps[0] if gaps else 0.0, max(gaps[1:], default=0.0)


COUNT = 300


def main() -> None:
    global COUNT
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    COUNT = args.runs
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "runs"
        started = time.perf_counter()
        generate(root, COUNT)
        print(f"generated {COUNT} run folders in {time.perf_counter() - started:.1f} s")
        core = time_core(root)
        print(f"list_runs (find + summarise {COUNT} runs): median {statistics.median(core) * 1000:.0f} ms, "
              f"worst {max(core) * 1000:.0f} ms")
        for attempt in range(1, args.repeat + 1):
            filled, shown, first_paint, worst_gap = time_page(root)
            print(f"Runs step, try {attempt}: all {COUNT} rows in {filled:.3f} s (target < 1 s); show() took "
                  f"{shown * 1000:.0f} ms; first paint {first_paint:.0f} ms; worst event-loop gap after it, while "
                  f"reading and adding rows: {worst_gap:.0f} ms")


if __name__ == "__main__":
    main()
