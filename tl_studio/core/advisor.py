"""The dataset advisor: looks at a dataset and a model, and recommends how to train (advice_rules.py).

It measures what the rules need, within a few seconds whatever the dataset's size:
- the number of classes and of training images per class (from the scan);
- the typical image size (from the headers of a sample of files);
- how well a linear head on the frozen pretrained features separates the classes: a "linear probe"
  on a stratified subsample (at most ``max_images``, default 400) at the model's evaluation
  preprocessing, scored by k-fold cross-validation of an L2-regularised logistic regression.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from typing import Sequence

import torch
import torch.nn.functional as F

from tl_studio.core.advice_rules import DatasetStats, ProbeResult, Recommendation, images_per_class, recommend
from tl_studio.core.config import TrainConfig
from tl_studio.core.workbench import (CancelCallback, ProgressCallback, check_cancel, look_up_stored, open_workbench,
                                      record_features, report, stored_feature_set, stratified_subsample)

MAX_PROBE_IMAGES = 400
SIZE_SAMPLE = 100  # image headers read for the typical size
PROBE_FOLDS = 5


def analyse_dataset(config: TrainConfig, scan=None, *, model=None, max_images: int = MAX_PROBE_IMAGES,
                    progress: ProgressCallback | None = None, cancel: CancelCallback | None = None) -> Recommendation:
    """The recommendation for ``config.model`` on ``config.data_dir`` (or ``scan``). ``model``, when
    given, is the model with its new head (only read: its backbone computes the features)."""
    from tl_studio.core.catalog import get_model_info
    from tl_studio.core.models import model_stages
    from tl_studio.core.problem_summary import problems_sentence

    started = time.perf_counter()
    bench = open_workbench(config, scan, model=model, progress=progress, cancel=cancel, build=False)
    train = bench.scan.split("train")
    records = stratified_subsample(train, max_images, config.seed)
    side = median_short_side(records[:SIZE_SAMPLE])
    if not config.pretrained:
        # Random features say nothing about the data: no probe (advice_rules trains from scratch).
        bench.ensure_model(progress, cancel)
        probe, stages = None, len(model_stages(bench.model))
    else:
        probe, stages = _probe_features(bench, records, config, progress, cancel)
    stats = dataset_stats(bench.scan, config, side, stages, get_model_info(config.model).crop_size)
    return replace(recommend(stats, probe), seconds=time.perf_counter() - started,
                   dataset_problems=problems_sentence(bench.scan.problems, left_out_of="the analysis"))


def _probe_features(bench, records, config: TrainConfig, progress, cancel) -> tuple[ProbeResult | None, int]:
    """(the linear probe on the frozen features of ``records``, the backbone's stages)."""
    from tl_studio.core.models import model_stages

    # After a run on these images every feature is stored: the model need not be built at all.
    stored = look_up_stored(bench, records)
    if stored is not None and stored.complete:
        features, stages = stored_feature_set(bench, stored, progress), stored.facts.stages
    else:
        bench.ensure_model(progress, cancel)
        features = record_features(bench, records, progress=progress, cancel=cancel, stored=stored)
        stages = len(model_stages(bench.model))
    report(progress, "probe", 0, 1, "Testing how well the frozen features separate your classes...")
    probe = linear_probe(features.features, features.labels, bench.num_classes, seed=config.seed, cancel=cancel)
    report(progress, "probe", 1, 1, "Done.")
    return probe, stages


def dataset_stats(scan, config: TrainConfig, median_side: int | None, num_stages: int,
                  model_size: int) -> DatasetStats:
    from tl_studio.core.class_weighting import plan_weighting

    counts = [scan.counts()["train"].get(name, 0) for name in scan.classes]
    present = [count for count in counts if count > 0] or [0]
    return DatasetStats(
        num_classes=len(scan.classes), num_train=sum(counts), per_class_median=images_per_class(counts),
        per_class_min=min(present),
        median_short_side=median_side, model=config.model, model_size=model_size, num_stages=num_stages,
        batch_size=config.batch_size, optimizer=config.optimizer, pretrained=config.pretrained,
        weighting=tuple(plan_weighting(counts, config.class_weighting).sentences(scan.classes)))


def median_short_side(records: Sequence) -> int | None:
    """The median of min(width, height) over the files' headers (no decoding); None if none is readable."""
    from tl_studio.core.images import ImageLoadError, check_image

    sides = []
    for record in records:
        try:
            info = check_image(record.path)
        except (ImageLoadError, OSError):
            continue
        sides.append(min(info.width, info.height))
    return int(statistics.median(sides)) if sides else None


# ---- the linear probe ------------------------------------------------------------------------------
def linear_probe(features: torch.Tensor, labels: torch.Tensor, num_classes: int, *, folds: int = PROBE_FOLDS,
                 seed: int = 0, cancel: CancelCallback | None = None) -> ProbeResult | None:
    """Cross-validated accuracy of a logistic-regression head on ``features`` (N x D). None when a
    class has fewer than two images (nothing to hold out)."""
    started = time.perf_counter()
    x, y = features.detach().float().cpu(), labels.detach().cpu()
    counts = torch.bincount(y, minlength=num_classes)
    present = counts[counts > 0]
    k = min(folds, int(present.min())) if len(present) >= 2 else 0
    if k < 2:
        return None
    fold_of = _stratified_folds(y, k, seed)
    correct = 0
    for fold in range(k):
        check_cancel(cancel)
        held_out = fold_of == fold
        predictions = _fit_and_predict(x[~held_out], y[~held_out], x[held_out], num_classes)
        correct += int((predictions == y[held_out]).sum())
    return ProbeResult(accuracy=correct / len(y), chance=float(present.max()) / len(y), images=len(y), folds=k,
                       seconds=time.perf_counter() - started)


def _stratified_folds(labels: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """Each image's fold: every class spread evenly over the folds, in a seeded random order."""
    generator = torch.Generator().manual_seed(seed)
    fold_of = torch.empty_like(labels)
    for label in labels.unique():
        members = (labels == label).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        fold_of[members] = torch.arange(len(members)) % k
    return fold_of


def _fit_and_predict(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor,
                     num_classes: int) -> torch.Tensor:
    """Standardised features, multinomial logistic regression with an L2 penalty as scikit-learn's
    default (C = 1), fitted to convergence with L-BFGS (a fraction of a second at these sizes)."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    weight = torch.zeros(num_classes, x_train.shape[1], requires_grad=True)
    bias = torch.zeros(num_classes, requires_grad=True)
    penalty = 0.5 / len(y_train)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(x_train @ weight.T + bias, y_train) + penalty * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        return (x_test @ weight.T + bias).argmax(1)
