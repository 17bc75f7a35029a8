"""GUI responsiveness (issue: the point-and-click app).

1. Start-up: seconds from launching a process until the main window is on screen (python start-up
   included), median of several launches. Target <= 2 s.
2. Event-loop stalls while training on the CPU: a 10 ms QTimer probe records the gaps between its
   ticks during a 2-epoch run; prints the median, p99 and worst gap. Targets p99 <= 100 ms and
   worst <= 250 ms. Two runs: the default (frozen efficientnet_lite0, feature cache) and full
   fine-tuning (every batch through the whole network).

Usage: .venv/bin/python benchmarks/bench_gui.py [--launches 5] [--data DIR]
Runs offscreen (QT_QPA_PLATFORM=offscreen) unless DISPLAY is set and --onscreen is given.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "hymenoptera"


def launch_child() -> None:
    """The child side of the start-up measurement: exactly what `tl-studio` does, then report."""
    from PySide6.QtCore import QTimer

    from tl_studio.gui.app import application, create_window

    app, _ = application()
    window = create_window()
    QTimer.singleShot(0, lambda: (print("shown", flush=True), window.close(), app.quit()))
    app.exec()


def measure_startup(launches: int) -> list[float]:
    times = []
    for _ in range(launches):
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, __file__, "--child"], stdout=subprocess.PIPE, text=True,
                                   env={**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen")})
        for line in process.stdout:
            if line.startswith("shown"):
                times.append(time.perf_counter() - started)
                break
        process.wait()
    return times


def measure_stalls(data: Path, changes: dict) -> tuple[list[float], object]:
    from PySide6.QtCore import QCoreApplication, QElapsedTimer, QTimer

    from tl_studio.gui.app import application, create_window

    app, _ = application()
    window = create_window(str(data))
    from tl_studio.gui.libraries import libraries_loaded

    # like a user: the folder is scanned and the app has finished loading before Start is pressed
    while window.session.scan is None or not libraries_loaded():
        QCoreApplication.processEvents()
        time.sleep(0.01)
    window.session.update_config(epochs=2, **changes)
    train = window.pages["Train"]
    window.steps.go_to("Train")
    # like a user: the Train step is on screen (first paint done) before Start is clicked
    settle_until = time.monotonic() + 1.0
    while time.monotonic() < settle_until:
        QCoreApplication.processEvents()
        time.sleep(0.01)
    finished, gaps = [], []
    clock = QElapsedTimer()
    probe = QTimer()
    probe.setInterval(10)

    started = time.monotonic()
    marks: list[tuple[float, str]] = []  # when the run reached each milestone, to explain long gaps
    long_gaps: list[tuple[float, int]] = []

    def tick():
        gap = clock.restart()
        gaps.append(gap)
        if gap > 100:
            long_gaps.append((time.monotonic() - started, gap))

    c = train.controller
    c.fitStarted.connect(lambda e: marks.append((time.monotonic() - started, "fit started")))
    c.epochEnded.connect(lambda e: marks.append((time.monotonic() - started, f"epoch {e.epoch} ended")))
    c.samplesReady.connect(lambda e: marks.append((time.monotonic() - started, "samples shown")))
    c.finished.connect(lambda e: marks.append((time.monotonic() - started, "finished")))

    probe.timeout.connect(tick)
    train.runFinished.connect(finished.append)
    # exit(), not quit(): quit() would also close the window
    train.runFinished.connect(lambda _: QTimer.singleShot(0, lambda: app.exit(0)))
    app.setQuitOnLastWindowClosed(False)
    clock.start()
    probe.start()
    # Start is clicked from inside the running event loop, so every gap from here on counts
    QTimer.singleShot(0, train.start)
    app.exec()
    probe.stop()
    if not finished:
        sys.exit("the window closed before the run finished")
    if os.environ.get("BENCH_GUI_VERBOSE"):
        print("  milestones:", [(round(t, 2), m) for t, m in marks])
        print("  gaps over 100 ms (at s, ms):", [(round(t, 2), g) for t, g in long_gaps])
    window.close()
    return [float(g) for g in gaps], finished[0]


def describe(gaps: list[float]) -> str:
    ordered = sorted(gaps)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return (f"{len(gaps)} ticks, median gap {statistics.median(gaps):.0f} ms, p99 {p99:.0f} ms, "
            f"worst {max(gaps):.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--launches", type=int, default=5)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--onscreen", action="store_true")
    args = parser.parse_args()
    if not args.onscreen:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    if args.child:
        launch_child()
        return
    os.environ.setdefault("TL_STUDIO_RUNS_DIR", tempfile.mkdtemp(prefix="tl_bench_gui_"))
    startup = measure_startup(args.launches)
    print(f"start-up to window shown: {[round(t, 2) for t in startup]} s, MEDIAN {statistics.median(startup):.2f} s")
    for label, changes in (("default: efficientnet_lite0 frozen, feature cache", {}),
                           ("full fine-tuning of efficientnet_lite0", {"freeze": "none", "batch_size": 16})):
        gaps, finished = measure_stalls(args.data, changes)
        print(f"{label} ({finished.status}, {finished.seconds:.0f} s): {describe(gaps)}", flush=True)


if __name__ == "__main__":
    main()
