"""A finished (or stopped) run folder: its config, classes and best weights, and exporting it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tl_studio.core import checkpoint as ckpt
from tl_studio.core.config import TrainConfig
from tl_studio.core.errors import UserError
from tl_studio.core.preprocess import PreprocessSpec
from tl_studio.core.run_folder import MODEL_FILE


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
        from tl_studio.core.models import build_model

        network = build_model(self.config.model, len(self.classes), "none")
        network.load_state_dict(self.weights)
        return network.eval()


def open_run(folder: Path) -> Run:
    folder = Path(folder)
    if not (folder / ckpt.BEST).is_file():
        raise UserError(f"{folder} holds no trained run (no {ckpt.BEST}); train one with `tl-studio train`.")
    best = ckpt.load_checkpoint(folder / ckpt.BEST)
    return Run(folder, TrainConfig.from_dict(best["config"]), list(best["classes"]),
               PreprocessSpec.from_dict(best["preprocess"]), int(best["epoch"]), float(best["val_acc"]), best["model"])


def check_images_for(run: Run, limit: int = 8) -> list:
    """Validation images of the run's dataset when it is still there, else none (synthetic ones are
    then used by the export check)."""
    from tl_studio.core.data import scan_dataset
    from tl_studio.core.samples import load_check_images, pick_samples

    try:
        scan = scan_dataset(run.config.data_dir, val_fraction=run.config.val_fraction,
                            test_fraction=run.config.test_fraction, seed=run.config.seed)
    except UserError:
        return []
    records = list(scan.split("val")) or list(scan.split("train"))
    chosen = pick_samples(records, len(scan.classes), limit=limit, seed=run.config.seed)
    return load_check_images([records[i].path for i in chosen], limit)


def export_run(folder: Path, fmt: str, out: Path | None = None, *, overwrite: bool = False):
    from tl_studio.core.export import FORMATS, export_model, metadata_for_run

    run = open_run(folder)
    if fmt not in FORMATS:
        raise UserError(f"Unknown export format {fmt!r}; choose pt2, onnx or torchscript.")
    out = Path(out) if out else run.folder / f"model{FORMATS[fmt]}"
    if out.exists() and not overwrite and not (fmt == "pt2" and out == run.folder / MODEL_FILE):
        raise UserError(f"{out} already exists; choose another --out file or add --overwrite.")
    metadata = metadata_for_run(run.config, run.classes, run.spec, run.best_epoch, run.best_val_acc)
    return export_model(run.build_network(), run.spec, metadata, out, fmt, check_images_for(run))
