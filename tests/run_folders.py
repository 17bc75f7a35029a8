"""Generated run folders in the engine's layout (core/run_folder.py, core/run_writers.py), for the run
history's tests, its benchmark and the screenshot: config.json, status.json, metrics.csv and
events.jsonl as a training run writes them, with placeholder checkpoint and model files (listing a
run never opens those)."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

from tl_studio.core import run_folder as names
from tl_studio.core.config import TrainConfig
from tl_studio.core.run_folder import RunStatus

METRICS_HEADER = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "train_images_per_s",
                  "feature_images_per_s")
LEGACY_METRICS_HEADER = METRICS_HEADER[:-1]


def curve(epochs: int, final_acc: float, seed: int = 0) -> list[tuple[float, float]]:
    """(val_loss, val_acc) per epoch: accuracy rising towards ``final_acc``, loss falling."""
    rows = []
    for epoch in range(1, epochs + 1):
        progress = 1 - math.exp(-1.2 * epoch)
        acc = 0.5 + (final_acc - 0.5) * progress + 0.004 * ((seed + epoch) % 3 - 1)
        loss = 0.12 + 2.2 * (1 - acc) + 0.5 * (1 - progress) ** 2 + 0.005 * (seed % 3)
        rows.append((round(loss, 4), round(min(acc, 1.0), 4)))
    return rows


def write_run(folder: Path, *, model: str = "efficientnet_lite0", freeze: str = "all", lr: float | None = None,
              epochs: int = 5, done: int | None = None, state: str = "done", reason: str = "",
              final_acc: float = 0.9, seconds_per_epoch: float = 12.0, images_per_s: float = 150.0,
              device: str = "CPU (2 threads)", data_dir: str = "/data/flowers", started: float | None = None,
              legacy: bool = False, schedule: str = "onecycle", points: list[tuple[float, float]] | None = None,
              seed: int = 0) -> Path:
    """A run folder as the engine leaves it. ``legacy`` = written before status.json/events.jsonl."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    done = epochs if done is None else done
    started = time.time() - 3600 if started is None else started
    config = TrainConfig(data_dir=data_dir, model=model, freeze=freeze, lr=lr, epochs=epochs, schedule=schedule,
                         seed=seed)
    config.save(folder / names.CONFIG)
    rows = (points or curve(epochs, final_acc, seed))[:done]
    header = LEGACY_METRICS_HEADER if legacy else METRICS_HEADER
    lines = [",".join(header)]
    for epoch, (val_loss, val_acc) in enumerate(rows, start=1):
        values = [str(epoch), f"{val_loss + 0.05:.6g}", f"{val_acc - 0.02:.6g}", f"{val_loss:.6g}", f"{val_acc:.6g}",
                  f"{config.resolved_lr():.6g}", f"{seconds_per_epoch:.6g}", f"{images_per_s:.6g}"]
        lines.append(",".join(values if legacy else [*values, ""]))  # feature rate: empty, as the engine writes it
    if rows:
        (folder / names.METRICS).write_text("\n".join(lines) + "\n", encoding="utf-8")
        (folder / names.LAST_CHECKPOINT).write_bytes(b"placeholder: listing never opens checkpoints")
        (folder / names.BEST_CHECKPOINT).write_bytes(b"placeholder")
        if state != "running":
            (folder / names.MODEL_FILE).write_bytes(b"placeholder")
    if legacy:
        return folder
    best = max(range(len(rows)), key=lambda i: (rows[i][1], -i), default=None)
    status = RunStatus(state=state, reason=reason, started=started,
                       ended=None if state == "running" else started + done * seconds_per_epoch, host="workstation",
                       pid=12345, planned_epochs=epochs, epochs_done=done,
                       best_epoch=None if best is None else best + 1,
                       best_val_acc=None if best is None else rows[best][1], model=model, data_dir=data_dir)
    (folder / names.STATUS).write_text(json.dumps(dataclasses.asdict(status), indent=2) + "\n", encoding="utf-8")
    events = [{"event": "FitStart", "time": started, "run_dir": str(folder), "classes": ["a", "b"], "num_train": 80,
               "num_val": 20, "epochs": epochs, "start_epoch": 1, "batches_per_epoch": 3, "device": device,
               "trainable_params": 2562, "total_params": 3_400_000, "feature_cache": True, "class_weights": None}]
    events += [epoch_event(epoch, loss, acc, started) for epoch, (loss, acc) in enumerate(rows, start=1)]
    (folder / names.EVENTS).write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    return folder


def epoch_event(epoch: int, val_loss: float, val_acc: float, started: float = 0.0) -> dict:
    return {"event": "EpochEnd", "time": started + epoch, "epoch": epoch, "train_loss": val_loss + 0.05,
            "train_acc": val_acc - 0.02, "val_loss": val_loss, "val_acc": val_acc, "lr": 1e-3, "seconds": 12.0,
            "train_images_per_s": 150.0, "is_best": True}


def append_batch(folder: Path, epoch: int, batch: int, num_batches: int) -> None:
    """A BatchEnd line, as the engine appends it during an epoch."""
    record = {"event": "BatchEnd", "time": 0.0, "epoch": epoch, "batch": batch, "num_batches": num_batches,
              "step": batch, "loss": 0.4, "lr": 1e-3, "images_per_s": 150.0}
    with open(folder / names.EVENTS, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def append_epoch(folder: Path, epoch: int, val_loss: float, val_acc: float) -> None:
    """What the engine adds at the end of an epoch of a live run: a metrics row and an EpochEnd line."""
    with open(folder / names.METRICS, "a", encoding="utf-8") as handle:
        handle.write(f"{epoch},{val_loss + 0.05},{val_acc - 0.02},{val_loss},{val_acc},0.001,12,150,\n")
    with open(folder / names.EVENTS, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(epoch_event(epoch, val_loss, val_acc)) + "\n")
