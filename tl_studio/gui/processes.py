"""Work that the GUI hands to child processes rather than threads.

Two reasons. Data-loader workers must not be forked from a process that runs Qt threads, so they come
from a fork server. And a few library calls hold Python's GIL for hundreds of milliseconds
(``torch.export.export`` and ``torch.export.save`` while writing a model file): run in a thread they
would freeze the window, run in a child process they cost the window nothing.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

PRELOAD = ["torch", "PIL.Image", "tl_studio.core.dataset", "tl_studio.core.transforms", "tl_studio.core.runs"]


def child_process_context():
    """A fork server started once, with torch and the data code already imported, so each child
    starts in a fraction of a second (plain "spawn" would import torch again for every child)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def export_in_child_process(run_dir: Path, fmt: str, out: Path, *, overwrite: bool = False):
    """``core.runs.export_run`` in a child process; returns its ExportReport or raises its error."""
    from tl_studio.core.runs import export_run

    with ProcessPoolExecutor(max_workers=1, mp_context=child_process_context()) as pool:
        return pool.submit(export_run, Path(run_dir), fmt, Path(out), overwrite=overwrite).result()


def write_model_file_in_child_process(run_dir: Path, path: Path) -> Path:
    """The engine's model-file writer for GUI runs (see Trainer's ``model_file_writer``)."""
    return export_in_child_process(run_dir, "pt2", path, overwrite=True).path
