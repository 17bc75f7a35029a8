"""Out of memory in one pass of an epoch: halve that pass's batch and run the pass again, telling the user.

Two kinds of pass have their own batch: "train" (the optimizer's batch) and "inference" (feature extraction
and validation, which keep no gradients and so can use larger batches). A training pass that ran out of
memory has already changed weights and schedule; the caller's ``start_again`` puts them back as they were
at the start of the epoch, after the batch was lowered (the schedule is rebuilt for the new number of steps).
At batch size 1 nothing is left to lower, and with several processes one process alone cannot change the
batch of all of them: both end the run with one sentence saying what to change.
"""

from __future__ import annotations

from typing import Callable

import torch

from tl_studio.core import events
from tl_studio.core.errors import UserError


def retry_halving_batch(work: Callable[[], object], kind: str, data, strategy, device,
                        notice: Callable[[events.Notice], None], start_again: Callable[[], None] | None = None):
    """``work()``, run again with half the batch of ``kind`` each time it runs out of memory."""
    while True:
        try:
            return work()
        except torch.OutOfMemoryError:
            old = data.batch_size if kind == "train" else data.inference_batch_size
            if strategy.distributed:
                raise UserError(f"A GPU ran out of memory at batch size {old} over {strategy.world_size} "
                                f"processes; start again with a lower --batch-size (--resume keeps the epochs "
                                f"done).") from None
            if old <= 1:
                raise UserError("Out of memory even at batch size 1; choose a smaller model or image size, or "
                                "train on the CPU.") from None
            if device.is_cuda:
                torch.cuda.empty_cache()
            if kind == "train":
                data.set_batch_size(old // 2)
                new, what = data.batch_size, "training"
            else:
                data.set_inference_batch_size(old // 2)
                new, what = data.inference_batch_size, "feature and validation"
            if start_again is not None:
                start_again()
            notice(events.Notice(f"The {_device_word(device)} ran out of memory at {what} batch size {old}; "
                                 f"continuing with batch size {new}."))


def _device_word(device) -> str:
    return {"cuda": "GPU", "mps": "Apple GPU", "cpu": "computer"}.get(device.device.type, "device")
