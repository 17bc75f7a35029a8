"""Which file to ship: size, speed and accuracy of a run's model in every export format, on this machine.

For each format the run's model is written as a user would get it (``tl-studio export``), loaded back the way
a user loads it, and measured:

- file size;
- latency at batch 1: one validation image at its own size, the median of ``LATENCY_RUNS`` runs after
  ``WARMUP_RUNS`` warm-up runs (what one request to a service waits);
- images/s at batch 32: a batch of 32 images of the preprocessing's resize size, the median of a few runs
  (what a folder of photos costs);
- validation accuracy, and top-1 agreement with the app (the run's network in PyTorch in this process), on
  the same validation images.

Every figure comes from the same process, one format after the other, so they compare with each other; they
are this machine's, not a promise for another.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from tl_studio.core.errors import Cancelled, UserError
from tl_studio.core.wording import MB, counted

REPORT_FORMATS = ("pt2", "onnx", "onnx-int8", "torchscript")
WARMUP_RUNS = 5
LATENCY_RUNS = 50
THROUGHPUT_BATCH = 32
THROUGHPUT_RUNS = 3
MAX_ACCURACY_IMAGES = 500  # a sample of a large validation split is enough to rank formats

ProgressCallback = Callable[[str, int, int], None]  # what is happening, step, steps


@dataclass(frozen=True)
class FormatFigures:
    format: str
    file_bytes: int
    latency_ms: float  # batch 1, median
    images_per_s: float  # batch 32, median
    val_accuracy: float
    agreement: float  # top-1 agreement with the app
    images: int  # validation images measured
    error: str = ""  # why this format could not be measured (the others still are)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FormatReport:
    run: str
    device: str
    rows: tuple[FormatFigures, ...]

    def to_dict(self) -> dict:
        return {"run": self.run, "device": self.device, "formats": [row.to_dict() for row in self.rows]}


def measure_formats(folder: Path, formats: Sequence[str] = REPORT_FORMATS, *, progress: ProgressCallback | None = None,
                    cancel: Callable[[], bool] | None = None) -> FormatReport:
    from tl_studio.core.runs import open_run

    formats = tuple(dict.fromkeys(formats))  # a format named twice is measured once
    unknown = [f for f in formats if f not in REPORT_FORMATS]
    if unknown:
        raise UserError(f"Unknown format {unknown[0]!r}; choose from {', '.join(REPORT_FORMATS)}.")
    run = open_run(folder)
    images, labels = _validation_images(run)
    reference = _app_predictions(run, images)
    rows = []
    steps = len(formats)
    with tempfile.TemporaryDirectory(prefix="tl_studio_formats_") as work:
        for step, fmt in enumerate(formats):
            if cancel and cancel():
                raise Cancelled()
            if progress:
                progress(f"Writing and measuring {fmt}", step, steps)
            try:
                path = _write(run.folder, fmt, Path(work), cancel)
                rows.append(_measure(fmt, path, images, labels, reference, cancel))
            except Cancelled:
                raise
            except UserError as error:
                rows.append(FormatFigures(fmt, 0, float("nan"), float("nan"), float("nan"), float("nan"), 0, str(error)))
    if progress:
        progress("Done", steps, steps)
    return FormatReport(str(run.folder), _device_name(), tuple(rows))


def _write(folder: Path, fmt: str, work: Path, cancel) -> Path:
    from tl_studio.core.runs import export_run

    if fmt == "onnx-int8":
        from tl_studio.core.quantize import export_int8_run

        return export_int8_run(folder, work / "model.int8.onnx", cancel=cancel).path
    from tl_studio.core.export import FORMATS

    return export_run(folder, fmt, work / f"model{FORMATS[fmt]}").path


def _load(path: Path):
    """Files written a moment ago by this process: the project's loader, as a user would load them."""
    from tl_studio.core.model_file import load_model_file

    return load_model_file(path, trust_torchscript=True)  # written by this process a moment ago


def _validation_images(run) -> tuple[list, list[int]]:
    from tl_studio.core.evaluation import evaluation_set
    from tl_studio.core.images import ImageLoadError, load_rgb
    from tl_studio.core.preprocess import to_unit_tensor
    from tl_studio.core.runs import scan_of

    scan = scan_of(run)
    if scan is None:
        raise UserError(f"The report measures accuracy on the run's validation images, but its data set "
                        f"{run.config.data_dir} is not there any more; put it back and try again.")
    chosen = evaluation_set(scan, "val", run.classes)
    rng = np.random.default_rng(run.config.seed)
    picks = sorted(rng.choice(len(chosen.paths), size=min(MAX_ACCURACY_IMAGES, len(chosen.paths)), replace=False))
    images, labels = [], []
    for i in picks:
        try:
            # decoded as predict and evaluate decode them (a large JPEG reduced), as the int8 check does
            image = load_rgb(chosen.paths[i], min_side=run.spec.resize_size)
            images.append(to_unit_tensor(image).unsqueeze(0))
            labels.append(chosen.labels[i])
        except (ImageLoadError, OSError):
            continue
    if not images:
        raise UserError("None of the run's validation images could be read; check its data set folder.")
    return images, labels


def _app_predictions(run, images) -> list[int]:
    import torch

    from tl_studio.core.export import ExportedClassifier

    app = ExportedClassifier(run.build_network(), run.spec).eval()
    with torch.no_grad():
        return [int(app(image).argmax(1)) for image in images]


def _measure(fmt: str, path: Path, images, labels, reference, cancel) -> FormatFigures:
    import torch

    model = _load(path)
    predict = model.predict
    latency = _median_seconds(lambda: predict(images[0]), WARMUP_RUNS, LATENCY_RUNS, cancel) * 1000.0
    side = model.metadata.get("preprocessing", {}).get("resize_size", 256)
    batch = torch.rand(THROUGHPUT_BATCH, 3, side, side, generator=torch.Generator().manual_seed(0))
    throughput = THROUGHPUT_BATCH / _median_seconds(lambda: predict(batch), 1, THROUGHPUT_RUNS, cancel)
    right = agree = 0
    for image, label, expected in zip(images, labels, reference):
        if cancel and cancel():
            raise Cancelled()
        answer = int(np.argmax(np.asarray(predict(image))[0]))
        right += answer == label
        agree += answer == expected
    return FormatFigures(fmt, path.stat().st_size, latency, throughput, right / len(images), agree / len(images),
                         len(images))


def _median_seconds(call: Callable[[], object], warmup: int, runs: int, cancel) -> float:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        if cancel and cancel():
            raise Cancelled()
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _device_name() -> str:
    import platform

    import torch

    return f"CPU ({platform.processor() or platform.machine()}, {counted(torch.get_num_threads(), 'thread')})"


def format_table(report: FormatReport) -> str:
    """The report as a plain-text table for the terminal."""
    lines = [f"{'format':<12} {'size':>9} {'latency b1':>11} {'img/s b32':>10} {'val acc':>8} {'agreement':>10}"]
    for row in report.rows:
        if row.error:
            lines.append(f"{row.format:<12} {row.error}")
            continue
        size = row.file_bytes / MB
        lines.append(f"{row.format:<12} {size:>6.1f} MB {row.latency_ms:>8.1f} ms {row.images_per_s:>10.1f} "
                     f"{row.val_accuracy:>8.3f} {row.agreement:>9.1%}")
    lines.append(f"Measured on {report.device}, {report.rows[0].images if report.rows else 0} validation images.")
    return "\n".join(lines)
