"""The run history: finding run folders, summarising them (new and older layouts, live, failed),
ranking, config diffs, the sidecar and trash with undo."""

from __future__ import annotations

import time

import pytest

from tl_studio.core import run_folder as names
from tl_studio.core import run_history as history
from tl_studio.core.errors import UserError
from tl_studio.core.run_folder import RunFolder
from tests.run_folders import append_batch, append_epoch, write_run


@pytest.fixture
def runs_root(tmp_path):
    root = tmp_path / "runs"
    write_run(root / "flowers-lite0", final_acc=0.93, started=1_000_000, data_dir="/data/flowers")
    write_run(root / "flowers-resnet", model="resnet18", freeze="none", lr=3e-4, final_acc=0.95, started=2_000_000,
              device="NVIDIA RTX 4090 (24 GB)")
    write_run(root / "nested" / "old-run", legacy=True, epochs=4, done=2)
    (root / ".hidden" / "x").mkdir(parents=True)
    write_run(root / ".hidden" / "x", final_acc=0.99)  # a hidden folder is never searched
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("not a run")
    return root


def test_discover_finds_runs_by_their_files_at_any_depth_but_not_in_hidden_folders(runs_root):
    found = [path.relative_to(runs_root).as_posix() for path in history.discover_runs([runs_root])]
    assert found == ["flowers-lite0", "flowers-resnet", "nested/old-run"]


def test_a_root_that_is_itself_a_run_and_a_missing_root_are_both_fine(runs_root, tmp_path):
    assert history.discover_runs([runs_root / "flowers-lite0", tmp_path / "missing"]) == [runs_root / "flowers-lite0"]


def test_summary_has_the_table_fields(runs_root):
    summary = history.summarize_run(runs_root / "flowers-resnet")
    assert (summary.name, summary.status, summary.model, summary.freeze) == ("flowers-resnet", "done", "resnet18", "none")
    assert summary.lr == pytest.approx(3e-4)
    assert (summary.epochs_done, summary.planned_epochs, summary.best_epoch) == (5, 5, 5)
    assert summary.best_val_acc == pytest.approx(0.95, abs=0.01)
    assert summary.best_val_loss == pytest.approx(0.22, abs=0.02)  # the loss of the best epoch
    assert summary.train_seconds == pytest.approx(60.0)
    assert summary.images_per_s == pytest.approx(150.0)
    assert summary.device == "NVIDIA RTX 4090 (24 GB)"
    assert summary.data_set == "flowers" and summary.created == 2_000_000
    assert summary.has_model_file and not summary.resumable


def test_images_per_second_is_what_a_clock_would_show_for_a_frozen_backbone_run(runs_root):
    """245 images an epoch: a first epoch of 16.3 s that computes the features (15 img/s), then four epochs
    of 0.3 s on them (800 img/s). The run trained on 5 x 245 images in 17.5 s: 70 img/s, not 800."""
    import csv

    metrics = runs_root / "flowers-lite0" / "metrics.csv"
    with open(metrics, newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows = [dict(rows[0], epoch=str(epoch), train_images_per_s=str(rate))
            for epoch, rate in enumerate([15.0, 800.0, 800.0, 800.0, 800.0], start=1)]
    with open(metrics, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    seconds = 245 / 15 + 4 * 245 / 800
    assert history.summarize_run(runs_root / "flowers-lite0").images_per_s == pytest.approx(5 * 245 / seconds)


def test_default_learning_rate_is_the_one_the_run_used(runs_root):
    assert history.summarize_run(runs_root / "flowers-lite0").lr == pytest.approx(1e-3)  # frozen backbone default


def test_older_run_without_status_is_listed_as_stopped_with_its_epochs(runs_root):
    summary = history.summarize_run(runs_root / "nested" / "old-run")
    assert summary.status == "stopped" and "2 of 4 epochs" in summary.reason
    assert (summary.epochs_done, summary.planned_epochs, summary.best_epoch) == (2, 4, 2)
    assert summary.resumable and summary.best_val_acc is not None


def test_older_finished_run_is_done(tmp_path):
    summary = history.summarize_run(write_run(tmp_path / "old", legacy=True, epochs=3))
    assert summary.status == "done" and summary.epochs_done == 3


def test_a_running_run_with_its_lock_held_is_running_and_follows_new_epochs(tmp_path):
    folder = write_run(tmp_path / "live", state="running", epochs=6, done=2)
    lock = RunFolder(folder).lock()  # the training process holds it
    try:
        summary = history.summarize_run(folder)
        assert summary.status == "running" and summary.epochs_done == 2
        assert summary.progress == "epoch 2 done"
        append_batch(folder, 3, 7, 20)
        with open(folder / names.EVENTS, "a") as handle:
            handle.write('{"event": "BatchEnd", "epoch": 3, "batch": 8')  # still being written
        assert history.summarize_run(folder).progress == "epoch 3, batch 7/20"
        with open(folder / names.EVENTS, "a") as handle:
            handle.write(', "num_batches": 20}\n')
        append_epoch(folder, 3, 0.2, 0.97)
        live = history.summarize_run(folder)
        assert live.epochs_done == 3 and live.progress == "epoch 3 done"
        with pytest.raises(UserError, match="still training"):
            from tl_studio.core.run_trash import trash_run

            trash_run(folder)
    finally:
        lock.release()


def test_a_running_status_whose_process_is_gone_reads_as_stopped(tmp_path):
    folder = write_run(tmp_path / "crashed", state="running", epochs=6, done=2)
    (folder / names.LOCK).write_text("4242 on elsewhere")  # left behind, nobody holds it
    summary = history.summarize_run(folder)
    assert summary.status == "stopped" and "without finishing" in summary.reason and summary.resumable


def test_a_failed_run_keeps_its_reason(tmp_path):
    reason = "GPU out of memory at batch size 8; lower the batch size or the image size."
    summary = history.summarize_run(write_run(tmp_path / "failed", state="failed", reason=reason, epochs=5, done=1))
    assert summary.status == "failed" and summary.reason == reason
    assert summary.resumable


def test_list_runs_is_newest_first_and_torch_free_fields_serialise(runs_root):
    import json

    runs = history.list_runs([runs_root])
    assert all(runs[i].created >= runs[i + 1].created for i in range(len(runs) - 1))
    record = json.loads(json.dumps(runs[0].to_json()))
    for key in ("path", "name", "status", "model", "freeze", "lr", "epochs_done", "best_val_acc", "best_epoch",
                "train_seconds", "created"):
        assert key in record


def _summary(name, acc, loss, seconds):
    return history.RunSummary(path=f"/runs/{name}", name=name, status="done", best_val_acc=acc, best_val_loss=loss,
                              train_seconds=seconds)


def test_best_run_is_highest_accuracy_when_clearly_ahead():
    runs = [_summary("a", 0.90, 0.1, 10), _summary("b", 0.95, 0.5, 100)]
    assert history.best_run(runs).run.name == "b"


def test_within_half_a_point_lower_val_loss_wins_then_shorter_training():
    runs = [_summary("a", 0.950, 0.30, 100), _summary("b", 0.946, 0.20, 300), _summary("c", 0.946, 0.20, 50),
            _summary("d", 0.940, 0.01, 1)]
    ranked = history.rank_runs(runs)
    assert [run.name for run in ranked] == ["c", "b", "a", "d"]
    assert history.best_run(runs).why == ("c: val accuracy 94.6%, within 0.5 points of 2 other runs, with the lowest "
                                          "val loss (0.2000), which 1 other run has too, and the shortest training "
                                          "of the two.")
    # a faster run of a higher loss: the loss decides, and no "shortest training" is claimed
    runs = [_summary("slow", 0.946, 0.20, 13), _summary("fast", 0.946, 0.25, 7)]
    assert history.best_run(runs).why == ("slow: val accuracy 94.6%, within 0.5 points of 1 other run, with the "
                                          "lowest val loss (0.2000).")


def test_the_best_run_says_when_the_runs_were_validated_on_different_images():
    import dataclasses

    same = [_summary("a", 0.90, 0.1, 10), _summary("b", 0.95, 0.5, 100)]
    assert "different images" not in history.best_run(same).why
    other_split = dataclasses.replace(same[0], config={"val_fraction": 0.3})
    assert "validated on different images" in history.best_run([other_split, same[1]]).why
    other_data = dataclasses.replace(same[0], data_dir="/data/other")
    assert "validated on different images" in history.best_run([other_data, same[1]]).why


def test_the_best_run_knows_when_it_has_no_model_file_yet_or_still_trains():
    """`runs best` named a run stopped before its model file was written; `predict` on it found none."""
    import dataclasses

    stopped = [dataclasses.replace(_summary("a", 0.95, 0.1, 10), status="stopped"), _summary("b", 0.90, 0.5, 100)]
    assert history.best_run(stopped).lacks_model_file
    written = [dataclasses.replace(run, has_model_file=True) for run in stopped]
    assert not history.best_run(written).lacks_model_file
    assert history.best_run(written).why == "a: best val accuracy 95.0%."
    running = [dataclasses.replace(stopped[0], status="running"), stopped[1]]
    assert not history.best_run(running).lacks_model_file  # it writes one when it ends
    assert history.best_run(running).why.endswith(" It is still training, so this can change.")


def test_runs_without_any_epoch_are_not_ranked():
    assert history.best_run([_summary("a", None, None, None)]) is None


def test_config_diff_lists_only_what_differs(runs_root):
    a = history.summarize_run(runs_root / "flowers-lite0").config
    b = history.summarize_run(runs_root / "flowers-resnet").config
    diff = history.config_diff([a, b])
    assert diff == {"model": ["efficientnet_lite0", "resnet18"], "freeze": ["all", "none"], "lr": [None, 3e-4]}


def test_config_diff_compares_the_learning_rate_each_run_used():
    """`runs diff` left out lr for a frozen run (default 0.001) beside a fine-tuned one (default 0.0003),
    and listed 0.001 given beside the default 0.001 as a difference."""
    frozen, tuned = {"freeze": "all", "lr": None}, {"freeze": "none", "lr": None}
    assert history.config_diff([frozen, tuned]) == {"freeze": ["all", "none"], "lr": [None, None]}
    assert history.config_diff([frozen, {"freeze": "all", "lr": history.resolved_lr(frozen)}]) == {}


def test_star_note_and_name_live_in_the_sidecar_and_survive_a_rescan(runs_root):
    folder = runs_root / "flowers-lite0"
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    history.annotate_run(folder, name="Baseline", note="first try", starred=True)
    summary = history.summarize_run(folder)
    assert (summary.name, summary.note, summary.starred) == ("Baseline", "first try", True)
    assert all(folder.joinpath(name).stat().st_mtime_ns == mtime for name, mtime in before.items())
    history.annotate_run(folder, name="", starred=False)
    again = history.summarize_run(folder)
    assert (again.name, again.note, again.starred) == ("flowers-lite0", "first try", False)


@pytest.fixture
def private_trash(tmp_path, monkeypatch):
    """send2trash reads the trash location once at import: point it at a folder of the test's own."""
    import os

    import send2trash.plat_other as freedesktop

    data_home = tmp_path / "xdg"
    monkeypatch.setattr(freedesktop, "XDG_DATA_HOME", os.fsencode(data_home))
    monkeypatch.setattr(freedesktop, "HOMETRASH_B", os.fsencode(data_home / "Trash"))
    monkeypatch.setattr(freedesktop, "HOMETRASH", str(data_home / "Trash"))
    monkeypatch.setattr("send2trash.send2trash", freedesktop.send2trash)
    return data_home / "Trash"


def test_delete_goes_to_the_trash_and_undo_puts_it_back(runs_root, private_trash):
    from tl_studio.core.run_trash import restore_run, trash_run

    folder = runs_root / "flowers-lite0"
    history.annotate_run(folder, note="keep me")
    trashed = trash_run(folder)
    assert not folder.exists()
    assert (private_trash / "files" / "flowers-lite0" / names.METRICS).is_file()
    assert (private_trash / "info" / "flowers-lite0.trashinfo").is_file()
    assert [p.name for p in history.discover_runs([runs_root])] == ["flowers-resnet", "old-run"]
    assert restore_run(trashed) == folder.absolute()
    assert history.summarize_run(folder).note == "keep me"
    assert not (private_trash / "info" / "flowers-lite0.trashinfo").exists()


def test_undo_when_the_place_is_taken_again_says_so(runs_root, private_trash):
    from tl_studio.core.run_trash import restore_run, trash_run

    folder = runs_root / "flowers-lite0"
    trashed = trash_run(folder)
    folder.mkdir()
    with pytest.raises(UserError, match="exists again"):
        restore_run(trashed)
    assert (private_trash / "files" / "flowers-lite0").is_dir()  # still safe in the trash


def test_summarising_300_runs_is_fast(tmp_path):
    root = tmp_path / "many"
    for index in range(300):
        write_run(root / f"run-{index:03d}", final_acc=0.8 + index / 2000, seed=index)
    started = time.perf_counter()
    runs = history.list_runs([root])
    assert len(runs) == 300
    assert time.perf_counter() - started < 3.0  # the benchmark measures it properly; this guards the order


def test_a_new_run_folder_is_named_for_its_data_and_model_and_never_an_existing_one(tmp_path):
    import threading

    first = history.new_run_dir(tmp_path, ".my photos/2026", "resnet18")
    assert first.parent == tmp_path and not first.exists()
    # no hidden folder (the run list skips those) and no path separators from the data folder's name
    assert first.name.startswith("my-photos-2026-resnet18-")
    made, start = [], threading.Barrier(4)

    def make():
        start.wait()
        made.append(history.new_run_dir(tmp_path, "flowers", "resnet18", create=True))

    threads = [threading.Thread(target=make) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(made)) == 4 and all(folder.is_dir() for folder in made)  # each command its own folder
    assert history.new_run_dir(tmp_path, "", "m").name.startswith("dataset-m-")


@pytest.mark.parametrize("optimizer, head, tuned", [("adamw", 1e-3, 1e-4), ("sgd", 1e-2, 1e-3)])
def test_a_two_phase_run_lists_the_rate_it_fine_tuned_at(optimizer, head, tuned):
    """A two-phase run with the automatic rate fine-tunes at 1e-4 after its head phase at 1e-3; the history
    listed 3e-4, the one-cycle fine-tuning default, which no phase of it used. The rate each phase trains at
    is the engine's (optim.phase_lr)."""
    from tl_studio.core.config import Phase, TrainConfig
    from tl_studio.core.optim import phase_lr

    config = {"freeze": "4", "schedule": "fine-tune", "optimizer": optimizer, "lr": None}
    assert history.resolved_lr(config) == tuned
    train_config = TrainConfig(freeze="4", schedule="fine-tune", optimizer=optimizer)
    assert phase_lr(Phase("fine-tune", 2, 5, "4", 0.5), train_config) == tuned
    assert phase_lr(Phase("head", 1, 1, "all", 0.5), train_config) == head
    given = train_config.replace(lr=5e-5)
    assert history.resolved_lr({**config, "lr": 5e-5}) == given.trained_lr() == 5e-5
    assert phase_lr(Phase("head", 1, 1, "all", 0.5), given) == head
    one_cycle = {"freeze": "4", "schedule": "onecycle", "optimizer": optimizer}
    assert history.resolved_lr(one_cycle) == pytest.approx(head * 0.3)


def test_a_run_stopped_before_its_model_file_says_so_until_export_writes_it(tmp_path):
    """`runs` kept "no model file yet: tl-studio export ... makes it" after that export had written it."""
    from tl_studio.core.run_folder import export_later_clause

    run = tmp_path / "int3"
    reason = f"Stopped after epoch 1 of 3. Best val accuracy 0.902 at epoch 1{export_later_clause('runs/int3')}"
    write_run(run, epochs=3, done=1, state="stopped", reason=reason)
    (run / names.MODEL_FILE).unlink()
    before = history.summarize_run(run)
    assert before.reason == reason and not before.has_model_file
    (run / names.MODEL_FILE).write_bytes(b"as export writes it")
    after = history.summarize_run(run)
    assert after.has_model_file
    assert after.reason == f"Stopped after epoch 1 of 3. Best val accuracy 0.902 at epoch 1; model saved to " \
                           f"{run / names.MODEL_FILE}."
