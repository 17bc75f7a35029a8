"""A model and a dataset made ready for the quick analyses that run outside a training run: the
learning-rate finder (lr_finder.py) and the dataset advisor (advisor.py).

Both need the same things a run needs (the scanned folder, the model with its new head, the device,
the evaluation preprocessing) and both may compute frozen-backbone features for a subset of images.
Progress is reported as ``Progress`` payloads and cancel is polled between batches (raising
``Cancelled``), so the GUI can run them in a background task and the CLI in the foreground.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

from tl_studio.core.config import INFERENCE_BATCH, TrainConfig
from tl_studio.core.errors import Cancelled, UserError


@dataclass(frozen=True)
class Progress:
    """How far a quick analysis is: ``stage`` is "model", "features", "sweep" or "probe"."""
    stage: str
    done: int
    total: int
    text: str


ProgressCallback = Callable[[Progress], None]
CancelCallback = Callable[[], bool]


@dataclass
class Workbench:
    config: TrainConfig
    scan: object  # DatasetScan
    device: object  # DeviceInfo
    spec: object  # PreprocessSpec
    model: nn.Module | None = None  # None until ensure_model builds it
    _ready: bool = field(default=False, init=False, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.scan.classes)

    def ensure_model(self, progress: ProgressCallback | None = None,
                     cancel: CancelCallback | None = None) -> nn.Module:
        """The model on the device, built first (pretrained weights, a new head) when none was given.
        Every random generator is seeded from ``config.seed`` first, once: the new head's weights and an
        analysis's random draws are the same whenever it runs."""
        if not self._ready:
            from tl_studio.core.run_state import seed_everything

            seed_everything(self.config.seed)
            if self.model is None:
                from tl_studio.core import backbone_facts
                from tl_studio.core.models import build_model

                report(progress, "model", 0, 1, f"Loading {self.config.model}...")
                self.model = build_model(self.config.model, self.num_classes, self.config.weights, cancel=cancel)
                backbone_facts.stamp(self.model)
            self.model = self.model.to(self.device.device)
            self._ready = True
        return self.model


def open_workbench(config: TrainConfig, scan=None, *, model: nn.Module | None = None,
                   progress: ProgressCallback | None = None, cancel: CancelCallback | None = None,
                   build: bool = True) -> Workbench:
    """Scans ``config.data_dir`` unless ``scan`` is given, and builds the model (pretrained weights, a new
    head) unless ``model`` is given or ``build`` is False (``Workbench.ensure_model`` builds it later, when
    it turns out to be needed). Seeds every random generator from ``config.seed`` (with the build)."""
    from tl_studio.core.catalog import get_model_info
    from tl_studio.core.data import scan_for
    from tl_studio.core.device import resolve_device
    from tl_studio.core.preprocess import PreprocessSpec

    config = config.validate()
    scan = scan if scan is not None else scan_for(config)
    if len(scan.classes) < 2 or not scan.split("train"):
        raise UserError("This needs at least two classes with training images; add another class folder.")
    device = resolve_device(config.device, config.amp)
    spec = PreprocessSpec.for_model(get_model_info(config.model), config.img_size)
    bench = Workbench(config, scan, device, spec, model)
    if build or model is not None:
        bench.ensure_model(progress, cancel)
    return bench


def report(progress: ProgressCallback | None, stage: str, done: int, total: int, text: str) -> None:
    if progress is not None:
        progress(Progress(stage, done, total, text))


def check_cancel(cancel: CancelCallback | None) -> None:
    if cancel is not None and cancel():
        raise Cancelled()


def stratified_subsample(records: Sequence, limit: int, seed: int = 0) -> list:
    """At most ``limit`` records, each class keeping its share (at least 2 where it has them), chosen
    by a seeded shuffle: the same folder and seed always give the same subset."""
    if len(records) <= limit:
        return list(records)
    by_class: dict[int, list] = defaultdict(list)
    for record in records:
        by_class[record.label].append(record)
    rng = random.Random(seed)
    chosen = []
    for label in sorted(by_class):
        members = sorted(by_class[label], key=lambda r: str(r.path))
        rng.shuffle(members)
        share = max(2, round(limit * len(members) / len(records)))
        chosen += members[:share]
    rng.shuffle(chosen)
    return chosen[:limit] if len(chosen) > limit else chosen


@dataclass
class StoredFeatures:
    """What the persistent store holds of some records for a model that was not built (look_up_stored)."""
    store: object  # FeatureStore
    lookup: object  # feature_store.Lookup
    facts: object  # backbone_facts.BackboneFacts

    @property
    def complete(self) -> bool:
        return not self.lookup.missing


def look_up_stored(bench: Workbench, records: Sequence) -> StoredFeatures | None:
    """The stored features of ``records`` for the model ``bench.config`` describes, found without
    building it (backbone_facts.py); None when they cannot be found so (a model was given, random
    weights, the store off, the model never built from these weights on this machine)."""
    from tl_studio.core import backbone_facts
    from tl_studio.core.catalog import get_model_info
    from tl_studio.core.device import autocast_dtype
    from tl_studio.core.feature_store import look_up, open_store_without_model

    if bench.model is not None:
        return None
    name = get_model_info(bench.config.model).name
    facts = backbone_facts.recall(name, bench.config.weights)
    if facts is None:
        return None
    autocast = autocast_dtype(bench.device, name, purpose="features")
    store = open_store_without_model(name, facts, bench.spec, bench.device.device, autocast)
    return StoredFeatures(store, look_up(store, records), facts) if store is not None else None


def stored_feature_set(bench: Workbench, stored: StoredFeatures, progress: ProgressCallback | None = None):
    """The FeatureSet of a complete ``stored`` lookup, on the device (record_features' answer)."""
    from tl_studio.core.feature_store import complete

    total = len(stored.lookup.records)
    report(progress, "features", total, total, f"Computing features: {total}/{total} images")
    return complete(stored.lookup, None, bench.device.device)


def record_features(bench: Workbench, records: Sequence, *, progress: ProgressCallback | None = None,
                    cancel: CancelCallback | None = None, stored: StoredFeatures | None = None):
    """The frozen backbone's features of ``records`` (evaluation preprocessing, no augmentation), as a
    FeatureSet on the device; images that fail to load are left out. The model is left in eval mode.
    Features the persistent store has (feature_store.py) are read from it; only the rest are computed.
    ``stored``: look_up_stored's lookup of the same records, used instead of a second one when it was
    made under the same key as the built model's (the images are not read and hashed again)."""
    from tl_studio.core import backbone_facts
    from tl_studio.core import features as feature_module
    from tl_studio.core.dataset import ImageDataset, make_loader
    from tl_studio.core.device import autocast_dtype
    from tl_studio.core.feature_store import look_up, open_store, store_and_complete
    from tl_studio.core.transforms import eval_transform

    total = len(records)
    report(progress, "features", 0, total, f"Computing features: 0/{total} images")
    device = bench.device.device
    autocast = autocast_dtype(bench.device, bench.model, purpose="features")
    store = open_store(bench.model, bench.spec, device, autocast)
    backbone_facts.remember(bench.model, store)
    same_key = stored is not None and store is not None and stored.store.key == store.key
    lookup = stored.lookup if same_key and list(stored.lookup.records) == list(records) else look_up(store, records)
    hits = len(lookup.hits)
    missing = [records[i] for i in lookup.missing]

    def on_batch(_batch, done: int) -> None:
        report(progress, "features", hits + done, total, f"Computing features: {hits + done}/{total} images")
        check_cancel(cancel)

    bench.model.eval()
    on_batch(None, 0)  # hits count as done at once
    computed = None
    if missing:
        # No loader processes: the work is a few hundred images, and worker start-up would cost more than
        # it saves (and forking from a GUI thread is best avoided).
        loader = make_loader(ImageDataset(missing, eval_transform(bench.spec)), batch_size=INFERENCE_BATCH,
                             shuffle=False, workers=0, seed=bench.config.seed)
        with torch.no_grad():
            computed = feature_module.extract_features(bench.model, loader, device, amp_dtype=autocast,
                                                       on_batch=on_batch)
    features = store_and_complete(store, lookup, computed, device)
    if len(features) == 0:
        raise UserError("None of the images could be read; check the dataset with `tl-studio scan`.")
    return features
