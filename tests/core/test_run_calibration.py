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


def test_a_model_file_written_by_another_process_is_calibrated_on_the_logits_the_run_hands_it(
        tiny_dataset, tmp_path, monkeypatch):
    """The app writes model.pt2 in a child process (gui/processes.py): the run hands its writer the best
    epoch's validation logits, and export_run fits on them instead of a pass over the val images."""
    from tl_studio.core.runs import export_run

    config = TrainConfig(data_dir=str(tiny_dataset), model="resnet18", weights="none", freeze="all", epochs=2,
                         batch_size=8, workers=0, img_size=64, seed=0, lr=0.01)
    passes, handed = [], []
    separate_pass = run_calibration.validation_logits
    monkeypatch.setattr(run_calibration, "validation_logits", lambda *a, **k: passes.append(1) or separate_pass(*a, **k))

    def writer(run_dir, path, validation):
        handed.append(validation)
        return export_run(run_dir, "pt2", path, overwrite=True, validation=validation).path

    finished = Trainer(config, tmp_path / "run", [], model_file_writer=writer).fit()
    assert finished.model_file, finished.message
    assert passes == []
    logits, labels = handed[0]
    metadata = load_model_file(finished.model_file).metadata
    run = open_run(tmp_path / "run")
    assert metadata["calibration"]["images"] == len(labels) == len(validation_records_for(run, scan_of(run)))
    assert metadata["calibration"]["temperature"] == pytest.approx(
        run_calibration.calibration.calibrate(logits, labels).temperature)
    # without them (an older run exported later) the pass is made, as before
    export_run(tmp_path / "run", "pt2", tmp_path / "again.pt2")
    assert passes == [1]
