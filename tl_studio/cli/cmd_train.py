"""``tl-studio train DATA_DIR [--out RUN_DIR]``: train a model; Ctrl-C stops after the current batch. Without
--out the run gets a new folder in the runs folder, the one the app's Runs step and `tl-studio runs` list."""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
from pathlib import Path

from tl_studio.cli import config_flags, torchrun_launch

# every setting train offers (config_flags holds each flag's type, choices and help); the argparse default is
# None, so only flags the user gave override a config file or a resumed run's config
SETTINGS = ("model", "weights", "freeze", "epochs", "batch_size", "lr", "img_size", "val_fraction", "test_fraction",
            "seed", "device", "workers", "decode", "augment", "optimizer", "schedule", "freeze_epochs", "weight_decay",
            "label_smoothing", "class_weights", "early_stopping", "feature_cache", "amp")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    config_flags.add_data_arguments(parser)
    parser.add_argument("--out", help="run folder for checkpoints, metrics.csv and model.pt2 (default: a new "
                        "folder in the runs folder, $TL_STUDIO_RUNS_DIR or Documents/TL Studio/runs)")
    config_flags.add_config_flags(parser, SETTINGS)
    parser.add_argument("--resume", action="store_true", help="continue the run in --out (after a crash or Ctrl-C)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the earlier run in --out (its checkpoints, metrics and model file)")
    parser.add_argument("--json", action="store_true", help="JSON Lines on stdout instead of a progress bar")
    torchrun_launch.add_arguments(parser)


def build_config(args: argparse.Namespace):
    from tl_studio.core.config import TrainConfig
    from tl_studio.core.run_folder import CONFIG

    start = None
    if args.resume and (run_config := Path(args.out) / CONFIG).is_file():
        if getattr(args, "config", None):  # it was left unread, and the run went on with its own settings
            from tl_studio.core.errors import UserError

            raise UserError(f"--config is not read with --resume: a resumed run goes on with its own settings "
                            f"({run_config}); leave --config out, or train with {args.config} in another folder "
                            "(--out).")
        start = TrainConfig.load(run_config)  # a resumed run keeps its settings; flags change how long and how fast
        _check_the_resumed_runs_images(start.data_dir, args.data_dir, args.out)
    config = config_flags.build_config(args, SETTINGS, start)
    if start is not None and (changed := start.recipe_changes(config)):
        from tl_studio.core.errors import UserError

        named = " and ".join(f"{_setting_name(key)} {_shown(before)} (not {_shown(given)})"
                             for key, (before, given) in changed.items())
        raise UserError(f"{args.out} was trained with {named}, and a resumed run goes on with its own settings "
                        "(how long and how fast it trains may change: --epochs, --early-stopping, --device, "
                        "--workers…): resume it without them, or train with the new ones in another folder (--out).")
    return config


def _setting_name(field: str) -> str:
    try:
        return config_flags.flag_for(field)
    except KeyError:  # a setting of --config files only (stage_lr_factor, momentum…)
        return field


def _shown(value) -> str:
    return "default" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _check_out_given_where_needed(args: argparse.Namespace) -> None:
    """A resumed run and a run on several machines need the folder named: the first continues a run
    that exists, and every machine of the second must write to the same folder."""
    from tl_studio.core.errors import UserError

    if args.out is not None:
        return
    if args.resume:
        raise UserError("--resume continues a run: name its folder with --out RUN_DIR (`tl-studio runs` lists "
                        "the runs).")
    if (args.nnodes or 1) > 1:
        raise UserError("A run on several machines needs --out RUN_DIR, the same folder on every machine (a "
                        "shared file system).")


def check_out_is_not_in_the_data(args: argparse.Namespace, way_out: str = ", or leave out --out") -> None:
    """The next scan of the data set would list a run's checkpoints, CSVs and JSON files as problems
    (or, in a class folder, train on them). Also cluster-script's check, where --out is required."""
    from tl_studio.core.errors import UserError

    if args.out is None or args.resume:
        return
    out, data = Path(args.out).expanduser().resolve(), Path(args.data_dir).expanduser().resolve()
    if out == data or data in out.parents:
        raise UserError(f"{args.out} is inside the data set {args.data_dir}, whose next scan would take the "
                        f"run's files for images; put the run folder elsewhere{way_out}.")


def _new_run_folder(data_dir: str, model: str) -> Path:
    """A new folder in the runs folder, named after the data and the model, made now (see new_run_dir)."""
    from tl_studio.core.data import dataset_root
    from tl_studio.core.errors import UserError
    from tl_studio.core.run_history import default_runs_root, new_run_dir

    data = dataset_root(data_dir).resolve()  # a missing data folder is said before any folder is made
    root = default_runs_root()
    try:
        return new_run_dir(root, data.name, model, create=True)
    except OSError as error:
        raise UserError(f"Cannot make a run folder in {root} ({error.strerror or error}); name one with --out "
                        f"RUN_DIR, or set TL_STUDIO_RUNS_DIR to a folder you can write to.") from None


def finished_already(out: str, epochs: int) -> str | None:
    """What to say when --resume finds a run that already trained every epoch asked for (it would only
    write the same model file again), else None."""
    from tl_studio.core.run_folder import MODEL_FILE, RunFolder

    folder = RunFolder(out)
    status = folder.status()
    if status is None or status.state != "done" or status.epochs_done < epochs or not folder.file(MODEL_FILE).is_file():
        return None
    best = f" (best val accuracy {status.best_val_acc:.3f} at epoch {status.best_epoch})" \
        if status.best_val_acc is not None else ""
    from tl_studio.core.wording import counted

    return (f"{out} has already trained its {counted(status.epochs_done, 'epoch')}{best}; to train it further, "
            f"resume with more epochs, e.g. --epochs {status.epochs_done + 5}.")


def _nothing_to_train(args: argparse.Namespace) -> bool:
    """--resume with no epoch left to train: a finished run is said so (True; before its settings are checked
    against the flags: --epochs 1 on a two-phase run of 2 said "--freeze-epochs < --epochs"), and a stopped
    one that --epochs would cut short is refused (it was re-planned and marked done without a word)."""
    from tl_studio.core.config import TrainConfig
    from tl_studio.core.errors import UserError
    from tl_studio.core.run_folder import CONFIG, RunFolder

    stored = Path(args.out) / CONFIG
    epochs = args.epochs if args.epochs is not None else TrainConfig.load(stored).epochs if stored.is_file() else None
    if epochs is None:
        return False
    status = RunFolder(args.out).status()
    if finished := finished_already(args.out, epochs):
        if args.json:  # stdout stays JSON Lines: the reporter's own last line
            from tl_studio.cli.reporters import JsonLines
            from tl_studio.core import events
            from tl_studio.core.run_folder import MODEL_FILE

            JsonLines().on_fit_end(events.RunFinished(
                status="completed", epochs_done=status.epochs_done, best_epoch=status.best_epoch,
                best_val_acc=status.best_val_acc, model_file=str(Path(args.out) / MODEL_FILE), seconds=0.0,
                message=finished))
        print(finished, file=sys.stderr if args.json else sys.stdout)
        return True
    if status is not None and status.state != "done" and status.epochs_done and status.epochs_done >= epochs:
        planned = max(status.planned_epochs or 0, status.epochs_done + 1)
        raise UserError(f"{args.out} ended after epoch {status.epochs_done} of {status.planned_epochs}, so "
                        f"--epochs {epochs} leaves nothing to train: resume it with --epochs {planned} or more, or "
                        f"write its model file as it is with: tl-studio export {shlex.quote(args.out)}")
    return False


def _check_the_resumed_runs_images(trained_on: str, given: str, out: str) -> None:
    """A resumed run goes on with the images it was trained on: another folder would put two data sets'
    validation accuracies into one run (its best epoch chosen across them) and rewrite the data folder its
    config.json records. A folder that has moved (nothing left at the old path) is accepted."""
    from tl_studio.core.errors import UserError

    before, now = Path(trained_on).expanduser().resolve(), Path(given).expanduser().resolve()
    if before == now or not before.exists():
        return
    raise UserError(f"{out} was trained on {trained_on}, and a resumed run goes on with its own images: resume "
                    f"it with that folder, or train on {given} in a new run (another --out).")


def run(args: argparse.Namespace) -> int:
    torchrun_launch.check_arguments(args)
    _check_out_given_where_needed(args)
    check_out_is_not_in_the_data(args)
    if args.resume and not args.overwrite and args.out is not None and _nothing_to_train(args):
        return 0
    config = build_config(args)
    from tl_studio.core.catalog import refuse_unknown_name_if_cached
    from tl_studio.core.run_folder import RunFolder

    refuse_unknown_name_if_cached(config.model)  # before "Run folder: ..." names a folder for it
    argv = list(getattr(args, "_argv", sys.argv[1:]))[1:]
    if args.out is not None:
        existed = Path(args.out).exists()
        try:
            return _run_into_out(args, config, argv)
        finally:
            if not args.distributed_worker:  # what this command wrote for a run that never started
                RunFolder(args.out).remove_if_never_started(keep_folder=existed)
    made = _new_run_folder(args.data_dir, config.model)
    args.out = str(made)
    print(f"Run folder: {made}", file=sys.stderr if args.json else sys.stdout, flush=True)
    try:
        return _run_into_out(args, config, [*argv, "--out", args.out])  # torchrun's processes write there too
    finally:
        if RunFolder(made).remove_if_never_started():  # e.g. weights that could not be downloaded: no litter
            # "Run folder: ..." above named it: say it is gone
            print(f"The run did not start, so its folder {made.name} was removed.", file=sys.stderr, flush=True)


def _run_into_out(args: argparse.Namespace, config, argv: list[str]) -> int:
    from tl_studio.core import read_ahead

    if torchrun_launch.wants_several_processes(args):
        return torchrun_launch.launch(args, argv, config.device)
    owns_the_process = getattr(args, "_owns_the_process", False)
    # the images decoded on the idle core while torch is imported below (core/read_ahead.py); a process
    # that is not this command's alone keeps its interpreter settings and threads to itself
    ahead = read_ahead.begin(config) if owns_the_process and not args.distributed_worker else None
    try:
        return _train(args, config, ahead, owns_the_process)
    finally:
        read_ahead.end()


def _train(args: argparse.Namespace, config, ahead, owns_the_process: bool) -> int:
    from tl_studio.cli.reporters import JsonLines, ProgressBar
    from tl_studio.core.control import RunControl
    from tl_studio.core.cpu_settings import leave_to_the_exit
    from tl_studio.core.engine import Trainer

    if owns_the_process:
        leave_to_the_exit()  # torch and the rest just imported: no collection during the run walks them again
    if args.distributed_worker:
        return _run_worker(args, config)
    control = RunControl()
    reporters = [JsonLines()] if args.json else [ProgressBar()]
    trainer = Trainer(config, Path(args.out), reporters, control, scan=ahead.scanned() if ahead else None)
    previous = signal.signal(signal.SIGINT, _stop_on_interrupt(control))
    try:
        finished = trainer.fit(resume=args.resume, overwrite=args.overwrite)
    except KeyboardInterrupt:  # the second Ctrl-C arrived while the run was already winding up
        print("tl-studio train: interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, previous)
    return _report(finished, trainer, args)


def _run_worker(args: argparse.Namespace, config) -> int:
    """One of the processes torchrun started. Rank 0 shows the progress and writes the run folder;
    stop and pause arrive through the folder (torchrun_launch.py). A run that ended as planned or
    was stopped exits 0 (the launcher reads the outcome from status.json); a failed one exits non-zero,
    so that torchrun ends the other processes at once instead of leaving them waiting for this one."""
    from tl_studio.cli.reporters import JsonLines, ProgressBar
    from tl_studio.core.control import FolderRequests, RunControl
    from tl_studio.core.engine import Trainer
    from tl_studio.core.run_folder import RunFolder
    from tl_studio.core.strategy import strategy_for

    strategy = strategy_for(config, distributed=True)
    control = RunControl()
    reporters = ([JsonLines()] if args.json else [ProgressBar()]) if strategy.is_writer else []
    requests = FolderRequests(RunFolder(args.out), control).start() if strategy.is_writer else None
    try:
        finished = Trainer(config, Path(args.out), reporters, control, strategy=strategy).fit(
            resume=args.resume, overwrite=args.overwrite)
    finally:
        if requests is not None:
            requests.close()
    if finished.status == "failed":
        print(f"tl-studio train (process {strategy.rank}): {finished.message}", file=sys.stderr)
        return 2
    strategy.close()
    return 0


def _stop_on_interrupt(control):
    """The first Ctrl-C asks the loop to stop after the current batch (the run then writes its model
    file); the second ends the run at once (the engine unwinds, ends the loader workers, and the
    command still exits with one line). Loader worker processes inherit this handler when they are
    forked and receive the same Ctrl-C from the terminal: they ignore it (the main process ends them)."""
    main_pid = os.getpid()

    def handler(signum, frame):
        if os.getpid() != main_pid:
            return
        if control.stop_requested:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a third Ctrl-C must not interrupt the clean-up
            raise KeyboardInterrupt
        print("\nStopping after the current batch (Ctrl-C again to stop at once)...", file=sys.stderr)
        control.request_stop()
    return handler


def _report(finished, trainer, args) -> int:
    out = sys.stderr if args.json else sys.stdout
    if finished.status == "stopped":
        if finished.epochs_done == 0:
            from tl_studio.core.wording import STOPPED_IN_FIRST_EPOCH

            print(STOPPED_IN_FIRST_EPOCH, file=sys.stderr)
        else:
            print(f"Stopped after epoch {finished.epochs_done}. The last checkpoint is in {args.out}; "
                  f"continue with: tl-studio train {shlex.quote(args.data_dir)} --out {shlex.quote(args.out)} --resume",
                  file=sys.stderr)
            if not finished.model_file:  # a second Ctrl-C stops before the model file is written
                from tl_studio.core.run_folder import export_command

                print(f"No model file was written; {export_command(args.out)} makes it from the best "
                      f"epoch.", file=sys.stderr)
        return 130
    if finished.status == "failed":
        print(f"tl-studio train: {finished.message}", file=sys.stderr)
        return 1 if trainer.error is not None else 2
    if not args.json:
        print(finished.message, file=out)
    return 0
