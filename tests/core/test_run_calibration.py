"""The model file of a run is calibrated on the logits its best epoch's validation already computed:
no second pass over the validation images at the end of a fine-tuning run, and the same temperature
(within the small difference between the run's and the model file's preprocessing) as that pass gives."""

from __future__ import annotations

import pytest

from tl_studio.core import run_calibration
from tl_studio.core.config import TrainConfig
from tl_studio.core.engine import Trainer
from tl_studio.core.model_file import load_model_file
from tl_studio.core.runs import open_run, scan_of, validation_records_for


@pytest.mark.parametrize("freeze", ["none", "all"])
def test_the_best_epochs_validation_logits_calibrate_the_model_file(tiny_dataset, tmp_path, monkeypatch, freeze):
    config = TrainConfig(data_dir=str(tiny_dataset), model="resnet18", weights="none", freeze=freeze, epochs=3,
                         batch_size=8, workers=0, img_size=64, seed=0, lr=0.01)
    passes = []
    separate_pass = run_calibration.validation_logits
    monkeypatch.setattr(run_calibration, "validation_logits", lambda *a, **k: passes.append(1) or separate_pass(*a, **k))
    trainer = Trainer(config, tmp_path / "run", [])
    finished = trainer.fit()
    assert trainer.error is None and finished.model_file, finished.message
    assert passes == []  # no second pass over the validation images
    calibration = load_model_file(finished.model_file).metadata["calibration"]
    run = open_run(tmp_path / "run")
    records = validation_records_for(run, scan_of(run))
    assert calibration["images"] == len(records)
    # the same fit as a separate pass over the val images through the model file's preprocessing
    logits, labels = separate_pass(run.build_network(), run.spec, records)
    expected = run_calibration.calibration.calibrate(logits, labels).temperature
    assert calibration["temperature"] == pytest.approx(expected, rel=0.05)
