"""Which of the images about to be evaluated the model's run trained on.

Scores on training images overstate how a model does on new ones, and nothing in them shows it: a user
who opens a sub-folder of the training folder (ants-bees/train) and evaluates its "validation split",
or copies some training photos into a test folder, reads 100 % as the model's accuracy. The model file's
metadata names the folder its run trained on and the split settings; scanning that folder the same way
gives the run's training images, as the run chose them. An evaluated image counts as seen when it has
the bytes of one of them (BLAKE2b, as the feature cache identifies images): a copy or a renamed file
counts, a path that holds another photo now does not, and an exact duplicate that landed in both the
training and the validation split of one folder counts too. Only files with the size of some training
image are read, usually a handful; the rest is a scan of the training folder and a stat per image.
"""

from __future__ import annotations

import functools
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from tl_studio.core.errors import UserError
from tl_studio.core.feature_layout import file_digest


@dataclass(frozen=True)
class Overlap:
    """Of the evaluated images, those the run trained on (by content), and which of them are copies: at
    another path than the training image (a duplicate in the validation split, photos copied into a
    test folder), where the way forward is to remove the copy, not to evaluate another split."""
    seen: int
    copies: tuple[str, ...] = ()


def seen_in_training(paths: Iterable, metadata: dict, cancel: Callable[[], bool] | None = None) -> Overlap | None:
    """Which of ``paths`` are training images of the run that made the model (by content); None when
    that cannot be told: the metadata names no training folder, or that folder is not on this machine."""
    folder = (metadata.get("training_config") or {}).get("data_dir")
    if not folder or not Path(folder).is_dir():
        return None
    from tl_studio.core.evaluation import scan_for_model

    try:
        scan = scan_for_model(folder, metadata, cancel=cancel)
    except UserError:  # the folder changed past recognition (no class folders left): nothing to compare
        return None
    training_by_size = defaultdict(list)
    for record in scan.split("train"):
        if (size := _size(record.path)) is not None:
            training_by_size[size].append(record.path)
    candidates = {str(path): size for path in paths if (size := _size(path)) in training_by_size}
    digest = functools.cache(file_digest)  # an evaluated image inside the training folder is read once
    training = {digest(str(path)) for size in set(candidates.values()) for path in training_by_size[size]}
    seen = [path for path in candidates if digest(path) in training - {None}]
    trained_on = {os.path.realpath(path) for size in set(candidates.values()) for path in training_by_size[size]}
    return Overlap(len(seen), tuple(path for path in seen if os.path.realpath(path) not in trained_on))


def _size(path) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None
