"""What the engine tells its observers. Small frozen dataclasses holding copies (floats, tuples,
numpy arrays), never the trainer itself, so they can cross threads safely."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class FitStart:
    run_dir: str
    classes: tuple[str, ...]
    num_train: int
    num_val: int
    epochs: int
    start_epoch: int  # 1 for a new run; later when resuming
    batches_per_epoch: int
    device: str  # human-readable, e.g. "CPU (2 threads)" or "NVIDIA RTX 4090 (24 GB)"
    trainable_params: int
    total_params: int
    feature_cache: bool
    class_weights: tuple[float, ...] | None  # set when the loss is class-weighted
    notes: tuple[str, ...] = ()  # things the user should know (class weighting switched on, ...)
    history: tuple["EpochEnd", ...] = ()  # earlier epochs of a resumed run, so curves continue
    processes: int = 1  # training processes (torchrun's world size): a resume in the window keeps it


@dataclass(frozen=True)
class PhaseStart:
    """A training phase begins: the whole run is one phase, the fine-tune schedule has two."""
    name: str  # "train", "head" or "fine-tune"
    first_epoch: int
    trainable_params: int
    description: str
    feature_cache: bool = False  # the phase trains on cached features (events.jsonl of older runs lack it)


@dataclass(frozen=True)
class FeatureProgress:
    """The feature cache is being filled (first epoch of a frozen-backbone run): ``done`` of ``total``
    images after ``seconds`` (enough for a time-left estimate)."""
    done: int
    total: int
    seconds: float = 0.0


@dataclass(frozen=True)
class BatchEnd:
    epoch: int
    batch: int  # 1-based within the epoch
    num_batches: int
    step: int  # global optimizer step, 1-based
    loss: float
    lr: float
    images_per_s: float  # training throughput so far in this epoch


@dataclass(frozen=True)
class EpochEnd:
    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float
    seconds: float
    train_images_per_s: float  # distinct training images / the training pass's seconds
    is_best: bool = False
    skipped_images: int = 0  # images that failed to load in this epoch
    peak_memory_mb: float | None = None  # this epoch's GPU memory high-water mark, MB (CUDA only)
    phase: str = "train"
    feature_images_per_s: float | None = None  # the feature cache's fill rate, in the epoch that filled it

    def to_row(self) -> dict:
        """The metrics.csv / --json fields."""
        return {"epoch": self.epoch, "train_loss": self.train_loss, "train_acc": self.train_acc,
                "val_loss": self.val_loss, "val_acc": self.val_acc, "lr": self.lr, "seconds": self.seconds,
                "train_images_per_s": self.train_images_per_s, "feature_images_per_s": self.feature_images_per_s,
                "gpu_memory_peak_mb": self.peak_memory_mb}

    def gpu_memory_text(self) -> str:
        """", GPU memory peak 3.2 GB" for the epoch's line; empty off CUDA."""
        if self.peak_memory_mb is None:
            return ""
        return f", GPU memory peak {self.peak_memory_mb / 1000:.1f} GB"


@dataclass(frozen=True)
class SamplePrediction:
    thumbnail: np.ndarray  # H x W x 3 uint8
    path: str
    true_label: int
    top_labels: tuple[int, ...]  # best first
    top_probs: tuple[float, ...]


@dataclass(frozen=True)
class SamplePredictions:
    epoch: int
    classes: tuple[str, ...]
    samples: tuple[SamplePrediction, ...]


@dataclass(frozen=True)
class Notice:
    """Something the user should know mid-run (batch size lowered after GPU out-of-memory, ...)."""
    message: str


@dataclass(frozen=True)
class ImageSkipped:
    path: str
    reason: str


@dataclass(frozen=True)
class RunFinished:
    status: str  # "completed", "stopped", "early-stopped" or "failed"
    epochs_done: int
    best_epoch: int | None
    best_val_acc: float | None
    model_file: str | None
    seconds: float
    message: str = ""  # for "failed": one sentence for the user; else a summary
    skipped_images: tuple[ImageSkipped, ...] = field(default=())
