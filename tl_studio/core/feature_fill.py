"""Filling a run's feature cache in the first epoch of a frozen-backbone phase: what the persistent
store (feature_store.py) already has is read, only the rest goes through the backbone, and the new
features are stored for the next run.

With several processes (core/strategy.py) each one looks up and computes its own share of the images
(the shares are disjoint, so no two processes write the same entry), and ``gather_features`` gives
every process all of them. Progress is reported as FeatureProgress events; a hit counts as done at
once, so a fully cached run shows its bar complete within a moment.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import torch

from tl_studio.core import backbone_facts, events, read_ahead
from tl_studio.core.dataset import LoadFailure
from tl_studio.core.feature_store import look_up, open_store, store_and_complete


class RunFeatureFill:
    """One fill of ``{"train": FeatureSet, "val": FeatureSet}`` for a RunState. ``report_failures(failures,
    split)`` takes LoadFailures whose indices are places in the split's record list; ``checks(common)``
    returns the stop/pause check to call after each batch (collective for the first ``common``)."""

    def __init__(self, data, model, device, spec, strategy, callbacks, report_failures, checks,
                 clock: Callable[[], float] = time.perf_counter):
        self.data, self.model, self.device, self.spec = data, model, device, spec
        self.strategy, self.callbacks = strategy, callbacks
        self.report_failures, self.checks = report_failures, checks
        self.total = len(data.train_records) + len(data.val_records)
        self.clock = clock  # RunControl.clock: a pause is not counted as time spent computing
        self.started = clock()

    def run(self) -> dict:
        splits = ("train", "val")
        # The training images' features in the fast precision; the validation images' in validation's,
        # float32 on the CPU (device.autocast_dtype): the accuracy a run reports and its model file's
        # calibration are then the float32 file's own.
        dtypes = {"train": self._autocast("features"), "val": self._autocast("validate")}
        stores = {}
        for split in splits:
            if dtypes[split] not in stores:
                stores[dtypes[split]] = open_store(self.model, self.spec, self.device.device, dtypes[split])
                backbone_facts.remember(self.model, stores[dtypes[split]])
        lookups = {split: self._look_up(split, stores[dtypes[split]]) for split in splits}
        hits = sum(len(lookup.hits) for lookup in lookups.values())
        self._progress(hits * self.strategy.world_size)
        # What neither split had goes through the backbone in one pass: one start of the loader's
        # workers and one batch-norm folding for both splits, and no pause between them.
        subset, places = [], []  # the records to compute; each one's (split, index into its lookup.missing)
        for split in splits:
            lookup = lookups[split]
            subset += [lookup.records[i] for i in lookup.missing]
            places += [(split, n) for n in range(len(lookup.missing))]
        batch_size = self.data.process_inference_batch_size
        # every process must agree on how many batches all of them run (stop/pause is collective there)
        common = min(self.strategy.gather_objects(math.ceil(len(subset) / batch_size)))
        computed = None
        if subset:
            # the validation images come last: from the first of them on, float32 where the training
            # images' precision is not
            float32_from = len(lookups["train"].missing) if dtypes["train"] != dtypes["val"] else None
            computed = self._compute(subset, places, lookups, batch_size, hits, self.checks("train", common),
                                     dtypes["train"], float32_from)
        return {split: self.strategy.gather_features(store_and_complete(
            stores[dtypes[split]], lookups[split], _rows_of(computed, places, split), self.device.device))
            for split in splits}

    def _look_up(self, split: str, store):
        records = self.data.records_of(split)
        share = self.strategy.inference_share(len(records))
        positions = list(range(len(records))) if share is None else list(share)
        return look_up(store, [records[i] for i in positions], positions)

    def _compute(self, subset, places, lookups, batch_size, hits, check, amp_dtype, float32_from):
        from tl_studio.core import features

        def on_batch(batch, done):
            for failure in batch.failures:
                split, n = places[failure.index]
                lookup = lookups[split]
                self.report_failures([LoadFailure(lookup.positions[lookup.missing[n]], failure.reason)], split)
            self._progress((hits + done) * self.strategy.world_size)
            check()

        loader = self.data.feature_loader(subset, batch_size)
        try:
            return features.extract_features(self.model, loader, self.device.device, amp_dtype=amp_dtype,
                                             on_batch=on_batch, probe_size=self.spec.crop_size,
                                             float32_from=float32_from)
        finally:
            self.data.close_loader(loader)
            read_ahead.end()  # what this process decoded ahead was for this pass (core/read_ahead.py)

    def _autocast(self, purpose: str):
        from tl_studio.core.device import autocast_dtype

        return autocast_dtype(self.device, self.model, purpose=purpose)

    def _progress(self, done: int) -> None:
        # each process reports its own share, scaled to the whole run
        self.callbacks.on_feature_progress(events.FeatureProgress(min(self.total, done), self.total,
                                                                  self.clock() - self.started))


def _rows_of(computed, places, split: str):
    """The rows of the one pass's ``computed`` FeatureSet that belong to ``split``, their indices made
    indices into that split's lookup.missing (what feature_store.complete expects)."""
    if computed is None:
        return None
    from tl_studio.core.features import FeatureSet

    rows = [row for row, index in enumerate(computed.indices.tolist()) if places[index][0] == split]
    chosen = torch.tensor(rows, dtype=torch.long)
    local = torch.tensor([places[index][1] for index in computed.indices[chosen].tolist()], dtype=torch.long)
    on_device = chosen.to(computed.features.device)
    return FeatureSet(computed.features[on_device], computed.labels[on_device], local)
