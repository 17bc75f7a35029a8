"""Work that the GUI hands to child processes rather than threads.

Two reasons. Data-loader workers must not be forked from a process that runs Qt threads, so they come
from a fork server. And a few library calls hold Python's GIL for hundreds of milliseconds
(``torch.export.export`` and ``torch.export.save`` while writing a model file): run in a thread they
would freeze the window, run in a child process they cost the window nothing.
"""

from __future__ import annotations

import multiprocessing
import queue
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable

PRELOAD = ["torch", "PIL.Image", "tl_studio.core.dataset", "tl_studio.core.transforms", "tl_studio.core.runs"]


def child_process_context():
    """A fork server started once, with torch and the data code already imported, so each child
    starts in a fraction of a second (plain "spawn" would import torch again for every child)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def start_child_process_server() -> None:
    """Starts the fork server now rather than when the first run needs a loader worker: it is a new
    interpreter that imports PRELOAD (about 2.5 s on the 2-core machine), and a run's loader workers and
    its model-file child wait for it. Started when the window is shown, beside the window's own imports:
    a first default run (2 epochs, empty feature cache), Start to finished, 13.3-13.5 s -> 11.6-11.9 s
    when Start is pressed a second after the imports end, 10.5-10.6 s once the server is ready. Safe
    from any thread (the server is started with fork and exec, not a fork of this process)."""
    import multiprocessing.forkserver

    child_process_context()  # sets the preload list on the one fork server
    multiprocessing.forkserver.ensure_running()


CANCEL_GRACE_S = 10.0  # a cancelled child that has not stopped by then is terminated


def export_in_child_process(run_dir: Path, fmt: str, out: Path, *, overwrite: bool = False,
                            keep: float | None = None, validation=None):
    """``core.runs.export_run`` in a child process; returns its ExportReport or raises its error."""
    from tl_studio.core.runs import export_run

    with ProcessPoolExecutor(max_workers=1, mp_context=child_process_context()) as pool:
        return pool.submit(export_run, Path(run_dir), fmt, Path(out), overwrite=overwrite, keep=keep,
                           validation=validation).result()


def call_in_child_process(fn: Callable, *args, cancelled: Callable[[], bool], report: Callable | None = None,
                          **kwargs):
    """``fn(*args, cancel=..., **kwargs)`` in a child process, from a background task's thread: the
    child polls the task's cancel through an Event, and with ``report`` gets ``progress=`` whose
    calls come back to ``report`` as one tuple each. Returns fn's result or raises its exception
    (``Cancelled`` included); a child that dies without a word is one sentence."""
    from tl_studio.core.errors import Cancelled, UserError

    context = child_process_context()
    messages, cancel = context.Queue(), context.Event()
    child = context.Process(target=_child_main, args=(fn, args, kwargs, messages, cancel, report is not None),
                            daemon=True)
    child.start()
    cancel_asked_at = None
    try:
        while True:
            if cancelled() and cancel_asked_at is None:
                cancel.set()
                cancel_asked_at = _now()
            if cancel_asked_at is not None and _now() - cancel_asked_at > CANCEL_GRACE_S:
                child.terminate()
                raise Cancelled()
            try:
                kind, payload = messages.get(timeout=0.1)  # this task's thread, never the GUI's
            except queue.Empty:
                if not child.is_alive() and messages.empty():
                    raise UserError(f"The background process ended unexpectedly (exit code {child.exitcode}); "
                                    "see the log, and try again.") from None
                continue
            if kind == "progress":
                report(payload)
            elif kind == "result":
                return payload
            else:
                raise payload
    finally:
        child.join(timeout=CANCEL_GRACE_S)
        if child.is_alive():
            child.terminate()
            child.join()


def _now() -> float:
    import time

    return time.monotonic()


def _child_main(fn, args, kwargs, messages, cancel, with_progress: bool) -> None:
    if with_progress:
        kwargs = {**kwargs, "progress": lambda *payload: messages.put(("progress", payload))}
    try:
        result = fn(*args, cancel=cancel.is_set, **kwargs)
    except BaseException as error:  # noqa: BLE001 - every error goes back to the parent to be shown there
        messages.put(("error", error))
    else:
        messages.put(("result", result))


def write_model_file_in_child_process(run_dir: Path, path: Path, validation=None) -> Path:
    """The engine's model-file writer for GUI runs (see Trainer's ``model_file_writer``): ``validation``,
    the best epoch's (logits, labels) on the val split, spares the child a pass over the val images."""
    from tl_studio.core.run_folder import RunFolder

    # the share its model file keeps known stays (`export --keep 0.8`), as in run_model_file.export_best
    return export_in_child_process(run_dir, "pt2", path, overwrite=True, keep=RunFolder(run_dir).model_file_keep(),
                                   validation=validation).path
