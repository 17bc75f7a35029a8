"""Python's cyclic garbage collector runs in the GUI thread only.

Left automatic, a collection starts in whichever thread happens to allocate at that moment: a scan,
the full decode check, the thumbnail decoders, a training run. When the garbage it frees holds a Qt
object that Python owns (pyqtgraph's context menus, a parentless QObject of a window closed earlier),
that thread destroys it. ``~QObject`` takes Qt's connection lock and then waits for the GIL (PySide
asks Python about overrides), while the GUI thread, holding the GIL, waits for that lock in
``QObject::connect``: both wait forever. Seen with gdb in a window test that hung waiting for a
status message (the collector's thread in ``~QMenu`` -> ``PyGILState_Ensure``, the GUI thread in
``QObject::connect`` -> ``QBasicMutex::lockInternal``); Qt objects must die in their own thread anyway.

So automatic collection is switched off and a timer in the GUI thread collects instead, by the same
per-generation thresholds Python would use (the pattern of pyqtgraph's ``GarbageCollector``, after
Erik Janssens, "Should Python garbage collector be disabled in PyQt apps?"). Reference counting still
frees everything that is not in a cycle at once, in any thread; only cycles wait for the next tick.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QCoreApplication, QObject, QThread, QTimer

INTERVAL_MS = 1000


class GuiThreadCollector(QObject):
    def __init__(self, app: QCoreApplication, interval_ms: int = INTERVAL_MS):
        super().__init__(app)
        self.setObjectName("guiThreadCollector")
        self.thresholds = gc.get_threshold()
        gc.disable()
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.collect_if_due)
        self.timer.start(interval_ms)

    def collect_if_due(self) -> int:
        """Collects the oldest generation over its threshold, as Python itself would; returns the
        generation collected, or -1."""
        counts = gc.get_count()
        for generation in (2, 1, 0):
            if self.thresholds[generation] and counts[generation] > self.thresholds[generation]:
                gc.collect(generation)
                return generation
        return -1


def collect_in_gui_thread() -> GuiThreadCollector:
    """Installs the collector on the running QApplication (once; later calls return it). Call it from
    the GUI thread, before any background thread starts."""
    app = QCoreApplication.instance()
    if app is None:
        raise RuntimeError("collect_in_gui_thread() needs a QApplication")
    if QThread.currentThread() is not app.thread():
        raise RuntimeError("collect_in_gui_thread() must be called from the GUI thread")
    existing = app.findChild(GuiThreadCollector, "guiThreadCollector")
    if existing is not None:
        gc.disable()  # someone switched it back on meanwhile: the timer still collects
        return existing
    return GuiThreadCollector(app)
