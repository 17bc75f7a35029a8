"""Finding stored features without building the model (core/backbone_facts.py): an analysis after a run
on the same images does not build the model and answers as before; a changed image builds it and
recomputes that image alone; a backbone changed since its build, random weights, another weights file,
a damaged record or the cache turned off are never taken for the pretrained backbone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tl_studio.core import backbone_facts, feature_layout, feature_store, features, models
from tl_studio.core.callbacks import Recorder
from tl_studio.core.config import TrainConfig
from tl_studio.core.engine import Trainer
from tl_studio.core.workbench import open_workbench, record_features
from tests.core.test_feature_store import FAST
from tests.helpers import make_image

MODEL = FAST["model"]


def records_of(cache: Path) -> list[Path]:
    return sorted((cache / "features" / backbone_facts.FOLDER).glob("*.json"))


class BuildCounter:
    def __init__(self, monkeypatch):
        self.builds = 0
        real = models.build_model

        def counting(*args, **kwargs):
            self.builds += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(models, "build_model", counting)


def _analyse(dataset: Path):
    from tl_studio.core.advisor import analyse_dataset

    return analyse_dataset(TrainConfig(data_dir=str(dataset), img_size=64, seed=0))


def _answer(recommendation) -> dict:
    answer = recommendation.to_dict()
    answer.pop("seconds")
    answer["probe"].pop("seconds")
    return answer


def test_an_analysis_after_a_run_reads_its_features_without_building_the_model(tiny_dataset, tmp_path,
                                                                               private_cache_dir, monkeypatch):
    import shutil

    trainer = Trainer(TrainConfig(data_dir=str(tiny_dataset), **FAST), tmp_path / "run", [Recorder()],
                      strict_callbacks=True)
    trainer.fit()
    if trainer.error is not None:
        raise trainer.error
    assert len(records_of(private_cache_dir)) == 1  # the run's feature fill left it
    builds = BuildCounter(monkeypatch)
    computed = []
    real = feature_store.complete
    monkeypatch.setattr(feature_store, "complete", lambda lookup, new, device: computed.append(new) or real(
        lookup, new, device))
    warm = _answer(_analyse(tiny_dataset))
    assert builds.builds == 0 and computed == [None]  # no model, nothing computed
    shutil.rmtree(private_cache_dir / "features" / backbone_facts.FOLDER)
    assert _answer(_analyse(tiny_dataset)) == warm  # the same probe score, stage count and advice as a build
    assert builds.builds == 1


def test_a_changed_image_builds_the_model_and_recomputes_that_image_only(tiny_dataset, private_cache_dir,
                                                                          monkeypatch):
    _analyse(tiny_dataset)
    bench = open_workbench(TrainConfig(data_dir=str(tiny_dataset), img_size=64, seed=0), build=False)
    changed = bench.scan.split("train")[2].path
    make_image(Path(changed), (250, 250, 250), size=64, seed=999)  # same name, new content
    builds = BuildCounter(monkeypatch)
    hashed = []
    real_digest = feature_store.file_digest
    monkeypatch.setattr(feature_store, "file_digest", lambda path: hashed.append(path) or real_digest(path))
    counted = []
    real_extract = features.extract_features
    monkeypatch.setattr(features, "extract_features",
                        lambda *a, **k: counted.append(real_extract(*a, **k)) or counted[-1])
    result = _analyse(tiny_dataset)
    assert builds.builds == 1 and sum(len(c) for c in counted) == 1
    train = {str(record.path) for record in bench.scan.split("train")}
    images = [str(path) for path in hashed if str(path) in train]
    assert len(images) == len(set(images)) == len(train)  # each image read and hashed once
    assert result.linear_probe_acc is not None


def test_the_record_is_what_the_built_model_says(tiny_dataset, private_cache_dir):
    from tl_studio.core.models import head_of, model_stages

    bench = open_workbench(TrainConfig(data_dir=str(tiny_dataset), **FAST))
    record_features(bench, bench.scan.split("train")[:2])
    facts = backbone_facts.recall(MODEL, "default")
    assert facts == backbone_facts.BackboneFacts(feature_store.weights_digest(bench.model),
                                                 (head_of(bench.model).in_features,), len(model_stages(bench.model)))


def test_a_backbone_changed_since_its_build_is_never_recorded(tiny_dataset, private_cache_dir):
    bench = open_workbench(TrainConfig(data_dir=str(tiny_dataset), **FAST))
    batch_norm = next(m for m in bench.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    batch_norm.running_mean += 0.01  # as a training-mode forward moves it: no version counter sees this
    record_features(bench, bench.scan.split("train")[:2])
    assert records_of(private_cache_dir) == [] and backbone_facts.recall(MODEL, "default") is None


def test_other_weights_random_weights_a_damaged_record_or_the_cache_off_are_never_recalled(
        tiny_dataset, tmp_path, private_cache_dir, monkeypatch):
    from tl_studio.core.catalog import get_model_info

    state = models.build_imagenet_model(get_model_info(MODEL)).state_dict()
    imported = tmp_path / "imported.pth"
    torch.save(state, imported)
    config = TrainConfig(data_dir=str(tiny_dataset), **{**FAST, "weights": str(imported)})
    bench = open_workbench(config)
    record_features(bench, bench.scan.split("train")[:2])
    assert backbone_facts.recall(MODEL, str(imported)).weights == feature_store.weights_digest(bench.model)

    first = next(key for key, value in state.items() if value.is_floating_point())
    state[first] = state[first] + 1
    torch.save(state, imported)  # the same path, other weights
    assert backbone_facts.recall(MODEL, str(imported)) is None

    random_weights = open_workbench(TrainConfig(data_dir=str(tiny_dataset), **{**FAST, "weights": "none"}))
    record_features(random_weights, random_weights.scan.split("train")[:2])
    assert backbone_facts.recall(MODEL, "none") is None and len(records_of(private_cache_dir)) == 1

    records_of(private_cache_dir)[0].write_text('{"weights": 3}', encoding="utf-8")
    assert backbone_facts.recall(MODEL, str(imported)) is None

    monkeypatch.setenv(feature_layout.LIMIT_ENV, "0")
    off = open_workbench(config)
    assert not hasattr(off.model, "tl_built_weights") and backbone_facts.recall(MODEL, str(imported)) is None


@pytest.mark.parametrize("damage", ["truncated", "other model"])
def test_a_damaged_record_only_costs_a_build(tiny_dataset, private_cache_dir, monkeypatch, damage):
    cold = _answer(_analyse(tiny_dataset))
    record = records_of(private_cache_dir)[0]
    if damage == "truncated":
        record.write_bytes(record.read_bytes()[:20])
    else:
        record.write_text(record.read_text(encoding="utf-8").replace(MODEL, "resnet18"), encoding="utf-8")
    builds = BuildCounter(monkeypatch)
    assert _answer(_analyse(tiny_dataset)) == cold
    assert builds.builds == 1
