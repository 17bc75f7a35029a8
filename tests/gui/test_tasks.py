"""Background tasks (gui/tasks.py): a finished task goes without taking its owner down with it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Parentless pages (as a test makes them, or a dialog whose caller let go of it), each owning a runner
# and one task whose result goes to a closure that holds the last reference to the page. When the task
# ends, its destruction releases the closure, and with it the page that owns the runner that owned the
# task. Collection is off, as in the app (gui/collector.py), so the page goes the moment its last
# reference does. Run in a child process: the failure this guards against kills the process.
SCRIPT = """
import gc, sys, weakref
from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtWidgets import QApplication, QWidget
import tl_studio.gui.libraries as libraries
libraries.load_libraries = lambda: None  # these tasks need no torch
from tl_studio.gui.tasks import TaskRunner

app = QApplication([])
gc.disable()
delivered, pages = [], []

def spin(ms):
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()

for i in range(int(sys.argv[1])):
    page = QWidget()
    page.tasks = TaskRunner(page)
    task = page.tasks.start(lambda report, cancelled, i=i: i * i)
    task.succeeded.connect(lambda result, page=page: delivered.append(result))
    pages.append(weakref.ref(page))
    del page, task
    spin(30)

kept = QWidget()  # a page that lives on still runs its next task
kept.tasks = TaskRunner(kept)
for n in (1, 2):
    task = kept.tasks.start(lambda report, cancelled, n=n: n)
    task.succeeded.connect(delivered.append)
    spin(30)
gc.collect()
print("delivered", len(delivered), sum(delivered), "pages_alive", sum(ref() is not None for ref in pages))
"""


def test_a_task_whose_slot_holds_the_last_reference_to_its_owner_ends_cleanly():
    """Without the fix this process died in 5 of 5 runs (segfault or bus error: the page, freed inside the
    task's destructor, deleted the task again), and a window test crashed a test worker now and then."""
    count = 30
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(count)], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "QT_QPA_PLATFORM": "offscreen"}, timeout=120)
    assert result.returncode == 0, f"the process ended with {result.returncode}:\n{result.stderr[-3000:]}"
    assert result.stdout.split() == ["delivered", str(count + 2), str(sum(i * i for i in range(count)) + 3),
                                     "pages_alive", "0"], result.stdout + result.stderr[-3000:]
    assert "deleted directly" not in result.stderr  # Qt's own warning of a QObject deleted twice
