"""The run folder: its reader API, the write lock, and refusing to overwrite another run."""

from __future__ import annotations

import json
import os

import pytest

from tl_studio.core import run_folder as names
from tl_studio.core.errors import UserError
from tl_studio.core.run_folder import RunFolder, RunStatus


def test_events_leave_out_a_half_written_last_line(tmp_path):
    (tmp_path / names.EVENTS).write_text('{"event": "FitStart"}\n{"event": "EpochEnd", "epoch": 1}\n{"event": "Ba')
    assert [e["event"] for e in RunFolder(tmp_path).events()] == ["FitStart", "EpochEnd"]


def test_metrics_are_typed_rows(tmp_path):
    (tmp_path / names.METRICS).write_text("epoch,val_acc,feature_images_per_s\n1,0.5,\n2,0.75,12.5\n")
    rows = RunFolder(tmp_path).metrics()
    assert rows[1]["epoch"] == 2 and rows[1]["val_acc"] == 0.75 and rows[1]["feature_images_per_s"] == 12.5
    assert rows[0]["feature_images_per_s"] is None
    assert RunFolder(tmp_path / "missing").metrics() == []


def test_a_running_status_without_its_writer_reads_as_stopped(tmp_path):
    folder = RunFolder(tmp_path)
    folder.write_status(RunStatus(state="running", planned_epochs=5, epochs_done=2))
    assert folder.status().state == "stopped" and folder.status().resumable
    lock = folder.lock()
    try:
        assert folder.is_locked() and folder.status().state == "running"
    finally:
        lock.release()
    assert not folder.is_locked()


def test_a_second_writer_gets_one_sentence(tmp_path):
    folder = RunFolder(tmp_path / "run")
    lock = folder.lock()
    try:
        with pytest.raises(UserError, match="being written by another training run") as error:
            RunFolder(tmp_path / "run").lock()
        assert str(os.getpid()) in str(error.value) and "\n" not in str(error.value)
    finally:
        lock.release()


@pytest.mark.parametrize("flags", [{}, {"resume": True}, {"overwrite": True}])
def test_a_run_still_training_is_said_first_not_an_option_that_is_then_refused(tmp_path, flags):
    """`train --out R` on a run still training said "add --resume to continue it, --overwrite to replace
    it", and each of those was then refused as "being written by another training run"."""
    (tmp_path / names.METRICS).write_text("epoch,val_acc\n1,0.5\n")
    lock = RunFolder(tmp_path).lock()
    try:
        with pytest.raises(UserError, match="is being written by another training run") as refused:
            RunFolder(tmp_path).check_new_run(resume=flags.get("resume", False),
                                              overwrite=flags.get("overwrite", False))
        assert str(os.getpid()) in str(refused.value)
        assert (tmp_path / names.LOCK).read_text().startswith(str(os.getpid()))  # the holder's name stays
    finally:
        lock.release()
    RunFolder(tmp_path).check_new_run(resume=True, overwrite=False)  # once it has ended, it can be resumed


def test_overwrite_says_what_of_the_users_stands_in_its_way(tmp_path):
    (tmp_path / names.METRICS).write_text("epoch,val_acc\n1,0.5\n")
    (tmp_path / "notes.txt").write_text("my notes")
    with pytest.raises(UserError) as refused:
        RunFolder(tmp_path).check_new_run(resume=False, overwrite=True)
    assert str(refused.value) == (f"{tmp_path} also holds notes.txt, which is not a file of the run, and --overwrite "
                                  "replaces only the run's own files; move it out of the folder, then run again.")
    assert (tmp_path / "notes.txt").read_text() == "my notes"


@pytest.mark.parametrize("leftover", [names.MODEL_FILE, names.BEST_CHECKPOINT, names.METRICS])
def test_a_folder_holding_another_run_is_refused_unless_overwrite(tmp_path, leftover):
    (tmp_path / leftover).write_bytes(b"an earlier run")
    folder = RunFolder(tmp_path)
    with pytest.raises(UserError, match="--overwrite"):
        folder.check_new_run(resume=False, overwrite=False)
    folder.check_new_run(resume=False, overwrite=True)
    assert (tmp_path / leftover).exists()  # checking never removes anything
    folder.start_run(resume=False, overwrite=True)
    assert not (tmp_path / leftover).exists()


def test_overwrite_replaces_the_run_with_its_name_star_and_note(tmp_path):
    """They labelled the replaced run: "my favourite ★, important note" stood on a new 1-epoch run."""
    from tl_studio.core.run_history import annotate_run, read_sidecar

    (tmp_path / names.MODEL_FILE).write_bytes(b"an earlier run")
    annotate_run(str(tmp_path), name="my favourite", starred=True, note="important note")
    RunFolder(tmp_path).start_run(resume=False, overwrite=True)
    assert read_sidecar(tmp_path) == {}
    # a run that never finished an epoch is replaced without --overwrite: nothing of the user's to drop
    # with it, and a resume keeps them
    annotate_run(str(tmp_path), name="keep")
    RunFolder(tmp_path).start_run(resume=True, overwrite=False)
    assert read_sidecar(tmp_path)["name"] == "keep"


def test_overwrite_never_touches_the_users_own_files(tmp_path):
    (tmp_path / names.MODEL_FILE).write_bytes(b"an earlier run")
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="move it out of the folder"):
        RunFolder(tmp_path).start_run(resume=False, overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "mine" and (tmp_path / names.MODEL_FILE).exists()


def test_overwrite_replaces_the_runs_own_exports_with_it(tmp_path):
    """`tl-studio export RUN --format onnx` writes RUN/model.onnx; --overwrite then refused the folder as
    "not empty (it holds model.onnx)". Those files are the run's model: they go with it (left, they would
    be the old run's); without --overwrite the folder is still refused."""
    from tl_studio.core.export_formats import EXPORT_FORMATS
    from tl_studio.core.quantize import INT8_SUFFIX

    defaults = {fmt.default_file(tmp_path).name for fmt in EXPORT_FORMATS.values()} | {f"model{INT8_SUFFIX}"}
    assert defaults == {names.MODEL_FILE, *names.EXPORTED_FILES}
    for name in defaults:
        (tmp_path / name).write_bytes(b"the earlier run's model")
    with pytest.raises(UserError, match="--overwrite"):
        RunFolder(tmp_path).check_new_run(resume=False, overwrite=False)
    RunFolder(tmp_path).start_run(resume=False, overwrite=True)
    assert list(tmp_path.iterdir()) == []


def test_a_trainer_into_a_locked_folder_leaves_it_alone(tiny_dataset, tmp_path):
    from tl_studio.core.config import TrainConfig
    from tl_studio.core.engine import Trainer

    run = tmp_path / "run"
    lock = RunFolder(run).lock()
    (run / names.CONFIG).write_text("{}")  # the other run's, before its first epoch
    try:
        finished = Trainer(TrainConfig(data_dir=str(tiny_dataset), workers=0), run).fit()
    finally:
        lock.release()
    assert finished.status == "failed" and "another training run" in finished.message
    assert (run / names.CONFIG).read_text() == "{}" and not (run / names.STATUS).exists()


def test_status_json_round_trips(tmp_path):
    folder = RunFolder(tmp_path)
    folder.write_status(RunStatus(state="failed", reason="The disk is full.", planned_epochs=3, epochs_done=1))
    assert json.loads((tmp_path / names.STATUS).read_text())["reason"] == "The disk is full."
    assert folder.status().state == "failed" and folder.is_run()


def test_a_folder_made_for_a_run_that_never_started_is_removed_and_nothing_else(tmp_path):
    never = RunFolder(tmp_path / "never")
    never.lock().release()
    never.file(names.EVENTS).write_text('{"event": "RunFinished", "status": "failed"}\n')
    assert never.remove_if_never_started() and not never.path.exists()
    # a setting the model refuses fails in the set-up, after status.json: nothing trained, nothing kept
    set_up = RunFolder(tmp_path / "set-up")
    set_up.path.mkdir()
    set_up.write_status(RunStatus(state="failed", reason="Freeze depth 99 is out of range"))
    set_up.file(names.CONFIG).write_text("{}")
    set_up.file(names.EVENTS).write_text('{"event": "RunFinished", "status": "failed"}\n')
    assert set_up.remove_if_never_started() and not set_up.path.exists()
    # a run that began training and failed keeps its folder, listed as failed
    started = RunFolder(tmp_path / "started")
    started.path.mkdir()
    started.write_status(RunStatus(state="failed", reason="GPU out of memory at batch size 1"))
    started.file(names.EVENTS).write_text('{"event": "FitStart"}\n{"event": "RunFinished", "status": "failed"}\n')
    assert not started.remove_if_never_started() and started.file(names.STATUS).is_file()
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    assert not RunFolder(theirs).remove_if_never_started() and (theirs / "notes.txt").read_text() == "mine"
    assert not RunFolder(tmp_path / "missing").remove_if_never_started()


def test_tidying_a_read_only_folder_after_a_run_that_could_not_write_there_raises_nothing(tmp_path, monkeypatch):
    """`train --out` a read-only folder printed its one-line reason, then a traceback from the tidying."""
    import errno
    from pathlib import Path

    folder = RunFolder(tmp_path / "ro")
    folder.path.mkdir()

    def read_only(self, missing_ok=False):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "unlink", read_only)
    assert not folder.remove_if_never_started(keep_folder=True)


def test_a_lock_file_that_cannot_be_opened_is_one_sentence(tmp_path, monkeypatch):
    import builtins

    from tl_studio.core.run_folder import LOCK, RunFolder

    real_open = builtins.open

    def refusing(file, *args, **kwargs):  # root can open anything: refuse it as for a lock left by another user
        if str(file).endswith(LOCK):
            raise PermissionError(1, "Operation not permitted", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing)
    with pytest.raises(UserError, match=r"lock file .* cannot be opened \(Operation not permitted\); if no run is"):
        RunFolder(tmp_path / "run").lock()


@pytest.mark.parametrize("outcome", ["aborted", "quitting"])
def test_a_stopped_runs_model_file_of_its_best_epoch_is_named_not_the_command_to_write_it(tmp_path, outcome):
    """Stopped after epoch 1 (model.pt2 written), resumed, then the app quit (or a second Ctrl-C) in
    epoch 2: status.json said "no model file yet: tl-studio export ... makes it" beside that model.pt2."""
    import zipfile
    from types import SimpleNamespace

    import torch

    from tl_studio.core.run_writers import ModelFileWriter

    def stopped_run(best_epoch_of_the_file: int):
        run = tmp_path / f"file_of_epoch_{best_epoch_of_the_file}_{outcome}"
        run.mkdir()
        with zipfile.ZipFile(run / names.MODEL_FILE, "w") as archive:  # the members a .pt2 holds for this
            archive.writestr("model/extra/tl_studio.json", json.dumps({"best_epoch": best_epoch_of_the_file}))
        writes = SimpleNamespace(wait=lambda: None)
        quitting_app = (lambda run_dir, path, validation: None)  # the front end writes nothing now
        trainer = SimpleNamespace(state=SimpleNamespace(model=torch.nn.Linear(2, 2), best_val_logits=None),
                                  best=SimpleNamespace(epoch=1), model_file=None, model_file_error="")
        writer = ModelFileWriter(RunFolder(run), quitting_app, writes)
        writer.after_fit(trainer, "aborted" if outcome == "aborted" else "stopped")
        return run, trainer

    run, trainer = stopped_run(best_epoch_of_the_file=1)
    assert trainer.model_file == str(run / names.MODEL_FILE) and not trainer.model_file_error
    run, trainer = stopped_run(best_epoch_of_the_file=0)  # an older best's file: the command is still due
    assert trainer.model_file is None
