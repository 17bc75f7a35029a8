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

from tl_studio.core import events
from tl_studio.core.dataset import LoadFailure
from tl_studio.core.feature_store import look_up, open_store, store_and_complete


class RunFeatureFill:
    """One fill of ``{"train": FeatureSet, "val": FeatureSet}`` for a RunState. ``report_failures(failures,
    split)`` takes LoadFailures whose indices are places in the split's record list; ``checks(common)``
    returns the stop/pause check to call after each batch (collective for the first ``common``)."""

    def __init__(self, data, model, device, spec, strategy, callbacks, report_failures, checks):
        self.data, self.model, self.device, self.spec = data, model, device, spec
        self.strategy, self.callbacks = strategy, callbacks
        self.report_failures, self.checks = report_failures, checks
        self.total = len(data.train_records) + len(data.val_records)
        self.started = time.perf_counter()

    def run(self) -> dict:
        store = open_store(self.model, self.spec, self.device.device, self.device.amp_dtype)
        offset = {"train": 0, "val": len(self.data.train_records)}
        return {split: self._split(split, store, offset[split]) for split in ("train", "val")}

    def _split(self, split: str, store, offset: int):
        records = self.data.records_of(split)
        share = self.strategy.inference_share(len(records))
        positions = list(range(len(records))) if share is None else list(share)
        mine = [records[i] for i in positions]
        lookup = look_up(store, mine, positions)
        missing = lookup.missing
        hits = len(lookup.hits)
        self._progress(offset, len(records), hits)
        batch_size = self.data.process_inference_batch_size
        # every process must agree on how many batches all of them run (stop/pause is collective there)
        common = min(self.strategy.gather_objects(math.ceil(len(missing) / batch_size)))
        computed = self._compute(split, [mine[i] for i in missing], [positions[i] for i in missing],
                                 batch_size, offset, hits, self.checks(split, common)) if missing else None
        return self.strategy.gather_features(store_and_complete(store, lookup, computed, self.device.device))

    def _compute(self, split, subset, subset_positions, batch_size, offset, hits, check):
        from tl_studio.core import features

        split_size = len(self.data.records_of(split))

        def on_batch(batch, done):
            self.report_failures([LoadFailure(subset_positions[f.index], f.reason) for f in batch.failures], split)
            self._progress(offset, split_size, hits + done)
            check()

        loader = self.data.feature_loader(subset, batch_size)
        try:
            return features.extract_features(self.model, loader, self.device.device,
                                             amp_dtype=self.device.amp_dtype, on_batch=on_batch)
        finally:
            self.data.close_loader(loader)

    def _progress(self, offset: int, split_size: int, done_here: int) -> None:
        # each process reports its own share, scaled to the whole split
        done = offset + min(split_size, done_here * self.strategy.world_size)
        self.callbacks.on_feature_progress(events.FeatureProgress(done, self.total,
                                                                  time.perf_counter() - self.started))
