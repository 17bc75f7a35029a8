"""A built-in callback that says, once a run, when loader processes' batches did not fit in shared
memory and travelled through a pipe instead (core/dataset.py): the run goes on, slower, and the user
learns how to give the loaders room."""

from __future__ import annotations

from tl_studio.core import events
from tl_studio.core.callbacks import Callback
from tl_studio.core.dataset import SHARED_MEMORY_ADVICE, batches_through_pipe


class SharedMemoryNotice(Callback):
    def __init__(self):
        self.before = batches_through_pipe()  # the count is the process's: the app runs many runs
        self.told = False

    def after_epoch(self, trainer, event: events.EpochEnd) -> None:
        if not self.told and batches_through_pipe() > self.before:
            self.told = True
            trainer.callbacks.on_notice(events.Notice(SHARED_MEMORY_ADVICE))
