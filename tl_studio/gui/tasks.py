"""Background tasks for everything longer than a blink (scan, export, downloads, evaluation):
a function runs in its own QThread (worker-object pattern) and reports progress, a result or one
sentence of error back to the GUI thread through queued signals. Cancel is a threading.Event the
function polls.

The function is called as ``fn(report, cancelled)``: ``report(payload)`` sends progress (throttled by
the caller if needed), ``cancelled()`` says whether to stop (raise ``Cancelled``).
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from PySide6.QtCore import QCoreApplication, QObject, Qt, QThread, Signal, Slot

from tl_studio.core.errors import Cancelled, UserError

log = logging.getLogger(__name__)


class _Worker(QObject):
    progress = Signal(object)
    succeeded = Signal(object)
    failed = Signal(str)
    cancelled = Signal()
    done = Signal()

    def __init__(self, fn: Callable, cancel_event: threading.Event):
        super().__init__()
        self.fn = fn
        self.cancel_event = cancel_event

    @Slot()
    def run(self) -> None:
        from tl_studio.gui.libraries import load_libraries

        try:
            load_libraries()  # one thread at a time imports torch (see libraries.py)
            result = self.fn(self.progress.emit, self.cancel_event.is_set)
        except Cancelled:
            self.cancelled.emit()
        except UserError as error:
            self.failed.emit(str(error))
        except Exception as error:  # unexpected: keep the traceback in the log, show one sentence
            log.exception("background task failed")
            self.failed.emit(f"Something went wrong: {type(error).__name__}: {error}")
        else:
            self.succeeded.emit(result)
        finally:
            # Back to the GUI thread before this thread ends, so that thread.finished -> deleteLater
            # destroys the worker there: destroying a Python-made QObject in a worker thread holds
            # Qt's connection lock while waiting for the GIL, and a GUI thread that connects a signal
            # at that moment holds the GIL while waiting for the lock (a deadlock, seen with gdb).
            self.moveToThread(QCoreApplication.instance().thread())
            self.done.emit()


class Task(QObject):
    """A handle on one background call. Connect to its signals before or right after ``start``."""

    progress = Signal(object)
    succeeded = Signal(object)
    failed = Signal(str)
    cancelled = Signal()
    finished = Signal()  # after any of succeeded / failed / cancelled

    def __init__(self, fn: Callable, name: str = "task", parent: QObject | None = None):
        super().__init__(parent)
        self._cancel = threading.Event()
        self.thread = QThread(self)
        self.thread.setObjectName(name)
        self.worker = _Worker(fn, self._cancel)
        self.worker.moveToThread(self.thread)
        self.thread.started.connect(self.worker.run)
        self.worker.progress.connect(self._on_progress)
        self.worker.succeeded.connect(self._on_succeeded)
        self.worker.failed.connect(self._on_failed)
        self.worker.cancelled.connect(self._on_cancelled)
        # Direct: quit() is thread-safe, and a queued call would wait for the GUI thread, which may be
        # blocked in wait() for this very thread (closing the window).
        self.worker.done.connect(self.thread.quit, Qt.DirectConnection)
        self.thread.finished.connect(self.worker.deleteLater)
        self.thread.finished.connect(self.finished)
        self.running = False
        # Set when the window closes: the pages that would receive a result are being torn down, so
        # nothing more is delivered to them (a late result could start new work mid-shutdown).
        self.silenced = False

    # slots on this GUI-thread object, so the payloads are delivered in the GUI thread
    @Slot(object)
    def _on_progress(self, payload) -> None:
        if not self._cancel.is_set() and not self.silenced:
            self.progress.emit(payload)

    @Slot(object)
    def _on_succeeded(self, result) -> None:
        self.running = False
        if not self.silenced:
            self.succeeded.emit(result)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self.running = False
        if not self.silenced:
            self.failed.emit(message)

    @Slot()
    def _on_cancelled(self) -> None:
        self.running = False
        if not self.silenced:
            self.cancelled.emit()

    def start(self) -> "Task":
        self.running = True
        self.thread.start()
        return self

    def cancel(self) -> None:
        self._cancel.set()

    def wait(self, timeout_ms: int | None = None) -> bool:
        """Joins the thread; without a timeout, until it ends (a QThread destroyed while it runs
        aborts the whole process, so when in doubt, wait)."""
        if timeout_ms is None:
            return self.thread.wait()
        return self.thread.wait(timeout_ms)


class TaskRunner(QObject):
    """Starts tasks and keeps them alive until their threads end; ``shutdown`` cancels and joins all
    of them and refuses new ones (closing the window)."""

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.tasks: list[Task] = []
        self.closed = False

    def start(self, fn: Callable, name: str = "task") -> Task:
        task = Task(fn, name, self)
        if self.closed:
            # The window is closing: a handler that ran late must not start a thread that would
            # outlive the window. The caller still gets a handle; it never starts nor reports.
            task.silenced = True
            return task
        self.tasks.append(task)
        task.finished.connect(lambda: self._forget(task))
        return task.start()

    def _forget(self, task: Task) -> None:
        if task in self.tasks:
            self.tasks.remove(task)
        # "finished" is emitted from the thread just before it exits; deleting a QThread that has not
        # quite returned aborts the process, so join it first (immediate at this point).
        task.thread.wait()
        # Out of this runner's tree before it goes: the slots connected to a task are released while it
        # is destroyed, and a closure among them may hold the last reference to a parentless widget
        # that owns this runner (a page or dialog whose caller let go of it). Freed there, that widget
        # would delete its children, this task included, in the middle of the task's own destructor: a
        # double free (heap corruption; gdb showed ~QObject -> a closure's cell -> ~QWidget).
        task.setParent(None)
        task.deleteLater()

    def shutdown(self) -> None:
        """Cancels every task, joins every thread (a task that does not poll ``cancelled`` is waited
        for: the window is already hidden), and refuses new tasks from then on."""
        self.closed = True
        for task in list(self.tasks):
            task.silenced = True
            task.cancel()
        for task in list(self.tasks):
            task.wait()
