"""A finished (or stopped) run folder: its config, classes and best weights, and exporting it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tl_studio.core import checkpoint as ckpt
from tl_studio.core.config import TrainConfig
from tl_studio.core.errors import UserError
from tl_studio.core.preprocess import PreprocessSpec
from tl_studio.core.run_folder import BEST_CHECKPOINT, CONFIG, MODEL_FILE, RunFolder



@dataclass
class Run:
    folder: Path
    config: TrainConfig
    classes: list[str]
    spec: PreprocessSpec
    best_epoch: int
    best_val_acc: float
    weights: dict  # the best epoch's state dict

    def build_network(self):
        """The trained network (no preprocessing), on the CPU, in eval mode."""
        from tl_studio.core.models import build_trained_model

        network = build_trained_model(self.config.model, len(self.classes), self.weights, BEST_CHECKPOINT)
        return network.eval()


def open_run(folder: Path) -> Run:
    """The run in ``folder``; a file inside a run folder (its model.pt2, given where the folder was
    meant) stands for that run."""
    folder = Path(folder)
    if folder.is_file() and (folder.parent / BEST_CHECKPOINT).is_file():
        folder = folder.parent
    elif folder.is_file():
        raise UserError(f"{folder} is a file; this starts from the run folder that trained the model (the one "
                        f"holding {BEST_CHECKPOINT}): give that folder.")
    if not folder.exists():
        raise UserError(f"{folder} does not exist; give a run folder (`tl-studio runs` lists them).")
    if not (folder / BEST_CHECKPOINT).is_file() and (folder / CONFIG).is_file():
        raise UserError(f"The run in {folder} has not finished its first epoch, so there is nothing to export yet; "
                        "wait until it has, or train it again if it stopped.")
    if not (folder / BEST_CHECKPOINT).is_file():
        raise UserError(f"{folder} holds no trained run (no {BEST_CHECKPOINT}); train one with `tl-studio train`.")
    best = ckpt.load_checkpoint(folder / BEST_CHECKPOINT)
    return Run(folder, TrainConfig.from_dict(best["config"]), list(best["classes"]),
               PreprocessSpec.from_dict(best["preprocess"]), int(best["epoch"]), float(best["val_acc"]), best["model"])


def scan_of(run: Run):
    """The run's data set scanned with its own split settings, or None when the folder is gone."""
    from tl_studio.core.data import scan_dataset

    try:
        return scan_dataset(run.config.data_dir, val_fraction=run.config.val_fraction,
                            test_fraction=run.config.test_fraction, seed=run.config.seed)
    except UserError:
        return None


def check_images_for(run: Run, limit: int = 8, scan=None) -> list:
    """Validation images of the run's dataset when it is still there, else none (synthetic ones are
    then used by the export check)."""
    from tl_studio.core.samples import load_check_images, pick_samples

    scan = scan or scan_of(run)
    if scan is None:
        return []
    records = list(scan.split("val")) or list(scan.split("train"))
    chosen = pick_samples(records, len(scan.classes), limit=limit, seed=run.config.seed)
    return load_check_images([records[i].path for i in chosen], limit)


def validation_records_for(run: Run, scan) -> list:
    """The validation images of the run's data set, labelled in the run's class order (matched by name)."""
    if scan is None:
        return []
    from dataclasses import replace

    index_of = {name: i for i, name in enumerate(run.classes)}
    return [replace(r, label=index_of[scan.classes[r.label]]) for r in scan.split("val")
            if scan.classes[r.label] in index_of]


def export_run(folder: Path, fmt: str, out: Path | None = None, *, overwrite: bool = False, keep: float | None = None,
               validation=None):
    """``keep``: the share of validation images the unknown rule keeps (core/unknown.py, default 0.95).
    The model file's probabilities are calibrated on the validation split (core/run_calibration.py):
    on ``validation`` = (logits, labels) of the run's best weights there when the caller has them (the
    run that has just trained them), else with one pass over the validation images."""
    from tl_studio.core.export import export_model, metadata_for_run
    from tl_studio.core.export_formats import check_output_file, get_format
    from tl_studio.core.run_calibration import calibrate_for_export, calibrated_metadata
    from tl_studio.core.unknown import DEFAULT_KEEP, check_keep

    export_format = get_format(fmt)
    keep = check_keep(DEFAULT_KEEP if keep is None else keep)
    run = open_run(folder)
    out = Path(out) if out else export_format.default_file(run.folder)
    check_output_file(out, export_format)  # one sentence now, not after the work
    existed = out.exists()
    own_model_file = fmt == "pt2" and out == run.folder / MODEL_FILE  # the same best epoch again
    if out.exists() and not overwrite and not own_model_file:
        raise UserError(f"{out} already exists; choose another --out file or add --overwrite.")
    if own_model_file and not overwrite and (change := RunFolder(run.folder).replacing_model_file_changes_it(keep)):
        raise UserError(f"{change}: add --overwrite to replace it, or choose another --out file.")
    scan = scan_of(run)
    network = run.build_network()
    metadata = metadata_for_run(run.config, run.classes, run.spec, run.best_epoch, run.best_val_acc)
    if validation is not None:
        metadata = calibrated_metadata(metadata, *validation, keep)
    else:
        metadata = calibrate_for_export(network, run.spec, metadata, validation_records_for(run, scan), keep)
    try:
        # a new file stays new: two exports to one --out both passed the check above, 15-35 s apart, and
        # the second replaced the first without a word
        return export_model(network, run.spec, metadata, out, fmt, check_images_for(run, scan=scan),
                            keep_existing=not existed)
    except FileExistsError:
        raise UserError(f"{out} was written by another export while this one ran; it was left as it is: choose "
                        "another --out file, or add --overwrite to replace it.") from None
