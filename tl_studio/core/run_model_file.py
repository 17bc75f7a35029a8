"""A run's model file: the best epoch's weights from ``best.ckpt``, calibrated on that epoch's
validation logits, exported to ``model.pt2`` and checked (export.py). Called by the run-folder writer
(run_writers.ModelFileWriter) when a run ends."""

from __future__ import annotations

import copy

import torch

from tl_studio.core import checkpoint as ckpt
from tl_studio.core.run_folder import BEST_CHECKPOINT, MODEL_FILE, RunFolder
from tl_studio.core.unknown import DEFAULT_KEEP


def model_file_bytes(model: torch.nn.Module) -> int:
    """About the size of model.pt2: the weights in float32 (the graph adds little)."""
    return sum(t.numel() * 4 for t in model.state_dict().values())


def export_best(state, path):
    """Writes the best epoch of the run ``state`` (a RunState) to ``path``; returns the path written."""
    from tl_studio.core.export import export_model, metadata_for_run
    from tl_studio.core.run_calibration import calibrated_metadata

    best = ckpt.load_checkpoint(path.parent / BEST_CHECKPOINT)
    network = copy.deepcopy(state.model).cpu().float().to(memory_format=torch.contiguous_format)
    network.load_state_dict(best["model"])
    metadata = metadata_for_run(state.config, state.data.classes, state.spec, best["epoch"], best["val_acc"])
    # the share the run's model file keeps known (`export --keep 0.8 --overwrite`): a resumed run put it back to
    # the default without a word
    recorded = RunFolder(path.parent).model_file_keep() if path.name == MODEL_FILE else None
    metadata = calibrated_metadata(metadata, *_best_validation_logits(state, network),
                                   DEFAULT_KEEP if recorded is None else recorded)
    return export_model(network, state.spec, metadata, path, "pt2", state.data.check_images()).path


@torch.no_grad()
def _best_validation_logits(state, network):
    """The best epoch's logits on the val split, for calibration, as the float32 file computes them:
    those its validation kept, else (a run resumed after its best epoch, several processes) from the
    cached features when the backbone stayed frozen and they are float32 (the head alone,
    milliseconds), else one pass over the val images."""
    from tl_studio.core.models import classify_features
    from tl_studio.core.run_calibration import validation_logits

    if state.best_val_logits is not None:
        return state.best_val_logits
    cached = (state.features or {}).get("val")
    if cached is not None and len(cached) and state.validates_in_float32:
        network.eval()
        logits = classify_features(network, cached.features.cpu().float()).float().numpy()
        return logits, cached.labels.cpu().numpy()
    return validation_logits(network, state.spec, state.data.val_records)  # also after a stop: no cancel
