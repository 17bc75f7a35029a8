"""int8 ONNX files: static post-training quantisation with ONNX Runtime, gated by a check on the val split.

ONNX Runtime's own quantiser (``onnxruntime.quantization.quantize_static``) writes QDQ (QuantizeLinear /
DequantizeLinear pairs) around the convolutions and matrix products, with per-channel int8 weights and
uint8 activations whose ranges come from calibration images of the training split. Depthwise convolutions
(EfficientNet, MobileNet) are where int8 breaks: measured on the ants/bees efficientnet_lite0 with 64
class-balanced calibration images, quantising every convolution gave 97.4 % top-1 agreement and -2.6
accuracy points (per-channel or per-tensor alike); leaving the depthwise ones float gives 98.7-99.3 % and
-0.7 to -1.3 (it depends on the calibration draw: on the gate's edge), and also leaving the stem convolution
float gives 100 % and no loss, with the file at 4.3 MB instead of 13.1 MB. So those stay float (see
``float_convolutions``), as do the preprocessing inside the file (crop, antialiased resize, normalisation)
and the softmax: only the other ``QUANTIZED_OPS`` are quantised, and the int8 file keeps the fp32 file's
inputs, outputs and metadata.

A quantised file is only written when it still answers like the fp32 one on the validation split: top-1
agreement at least ``MIN_AGREEMENT`` and accuracy at most ``MAX_ACCURACY_DROP`` lower. Otherwise the
export fails with one sentence saying what happened and what to try.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from tl_studio.core.errors import UserError

INT8_FORMAT = "onnx-int8"  # the name on the command line and in the Export step
INT8_SUFFIX = ".int8.onnx"
MIN_AGREEMENT = 0.99
MAX_ACCURACY_DROP = 0.01
CALIBRATION_IMAGES = 64
QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")


class Int8CheckError(UserError):
    """The int8 file answers too differently from the fp32 model; it was not written."""


@dataclass(frozen=True)
class Int8Check:
    images: int
    agreement: float  # share of images whose top-1 class is the fp32 model's
    fp32_accuracy: float
    int8_accuracy: float

    @property
    def accuracy_drop(self) -> float:
        return self.fp32_accuracy - self.int8_accuracy

    @property
    def passed(self) -> bool:
        return (self.images > 0 and self.agreement >= MIN_AGREEMENT
                and self.accuracy_drop <= MAX_ACCURACY_DROP + 1e-12)

    def describe(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        return (f"int8 check {verdict} on {self.images} validation images: top-1 agreement with the "
                f"full-precision model {self.agreement:.1%} (at least {MIN_AGREEMENT:.0%}), accuracy "
                f"{self.fp32_accuracy:.3f} -> "
                f"{self.int8_accuracy:.3f} (at most {MAX_ACCURACY_DROP * 100:.0f} point lower).")

    def to_dict(self) -> dict:
        return {"images": self.images, "agreement": self.agreement, "fp32_accuracy": self.fp32_accuracy,
                "int8_accuracy": self.int8_accuracy, "passed": self.passed}


def compare(fp32: Callable[[np.ndarray], np.ndarray], int8: Callable[[np.ndarray], np.ndarray],
            labelled_images: Iterable[tuple[np.ndarray, int]], cancel: Callable[[], bool] | None = None) -> Int8Check:
    """Both models on each (1 x 3 x H x W image in [0, 1], label in the model's class order)."""
    agree = right_fp32 = right_int8 = seen = 0
    for image, label in labelled_images:
        if cancel and cancel():
            from tl_studio.core.errors import Cancelled
            raise Cancelled()
        a, b = int(np.argmax(fp32(image))), int(np.argmax(int8(image)))
        agree += a == b
        right_fp32 += a == label
        right_int8 += b == label
        seen += 1
    if not seen:
        return Int8Check(0, 0.0, 0.0, 0.0)
    return Int8Check(seen, agree / seen, right_fp32 / seen, right_int8 / seen)


def quantize_onnx(fp32_path: Path, out_path: Path, calibration: Iterable[np.ndarray], per_channel: bool = True,
                  keep_float: Sequence[str] | None = None) -> None:
    """Writes the int8 QDQ model of ``fp32_path`` to ``out_path`` (not atomically: the caller owns that).
    ``keep_float``: the nodes left in float (default: ``float_convolutions``)."""
    from tl_studio.core.interrupts import ctrl_c_deferred

    with ctrl_c_deferred():  # a native library's initialisation is no place for a KeyboardInterrupt
        from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                              quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._batches = iter(calibration)

        def get_next(self):
            image = next(self._batches, None)
            return None if image is None else {"images": image}

    kept_float = list(float_convolutions(fp32_path) if keep_float is None else keep_float)
    with _quiet_quantizer():
        quantize_static(str(fp32_path), str(out_path), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=per_channel, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                        op_types_to_quantize=list(QUANTIZED_OPS), nodes_to_exclude=kept_float,
                        calibrate_method=CalibrationMethod.MinMax)


def float_convolutions(path: Path) -> list[str]:
    """The convolutions that stay float:

    - depthwise ones (one filter per channel): their few weights per channel and the wide activation ranges
      around them lose the most in int8, and they cost little of the model's time;
    - the stem, the first convolution, which sees the normalised pixels: three input channels give each
      output only a few dozen products to average the rounding over, and its error reaches every later
      layer. Keeping it float took top-1 agreement from 98.7 % to 100 % on the ants/bees efficientnet_lite0
      and resnet18 (benchmarks/bench_int8.py); it is a fraction of a percent of the file.
    """
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    convolutions = [node for node in model.graph.node if node.op_type == "Conv"]
    found = [convolutions[0].name] if convolutions else []
    for node in convolutions[1:]:
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if group > 1:
            found.append(node.name)
    return found


class _quiet_quantizer:
    """The quantiser logs advice through the root logger ("consider pre-processing"); it is about shape
    inference, which the exported graph already has, so it is not the user's concern."""

    def __enter__(self):
        import logging

        self._root = logging.getLogger()
        self._level = self._root.level
        self._root.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        self._root.setLevel(self._level)


def onnx_predictor(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    from tl_studio.core.interrupts import ctrl_c_deferred

    with ctrl_c_deferred():  # a native library's initialisation is no place for a KeyboardInterrupt
        import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda image: session.run(None, {name: image})[0]


def pick_calibration_records(records: Sequence, count: int = CALIBRATION_IMAGES, seed: int = 0) -> list:
    """A seeded, class-balanced draw from the training split (never the validation split)."""
    rng = np.random.default_rng(seed)
    by_class: dict[int, list] = {}
    for record in records:
        by_class.setdefault(record.label, []).append(record)
    chosen: list = []
    per_class = max(1, count // max(1, len(by_class)))
    for label in sorted(by_class):
        group = by_class[label]
        picks = rng.choice(len(group), size=min(per_class, len(group)), replace=False)
        chosen.extend(group[i] for i in sorted(picks))
    return chosen[:count]


def labelled_arrays(records: Iterable, decode_side: int | None) -> Iterable[tuple[np.ndarray, int]]:
    """Each readable image of ``records`` as (1 x 3 x H x W float32 in [0, 1], its label); unreadable ones
    are left out (the scan has named them already). ``decode_side``: the preprocessing's resize size, so a
    large JPEG is decoded reduced as predict, evaluate and training's validation decode it (decoded whole,
    a 96 px run's check gave accuracy 0.784 where every other command gave 0.797)."""
    from tl_studio.core.images import ImageLoadError, load_rgb
    from tl_studio.core.preprocess import to_unit_tensor

    for record in records:
        try:
            image = load_rgb(record.path, min_side=decode_side)
            yield to_unit_tensor(image).unsqueeze(0).numpy(), int(record.label)
        except (ImageLoadError, OSError):
            continue


MAX_CHECK_IMAGES = 2000  # a sample of a large validation split is enough to see a 1-point drop


@dataclass(frozen=True)
class Int8Export:
    path: Path
    check: Int8Check
    fp32_bytes: int
    int8_bytes: int


def export_int8_run(folder: Path, out: Path | None = None, *, overwrite: bool = False, per_channel: bool = True,
                    keep: float | None = None, cancel: Callable[[], bool] | None = None) -> Int8Export:
    """The run's ONNX file quantised to int8, calibrated on its training split and checked on its
    validation split; written to ``out`` only when the check passes."""
    import os
    import tempfile

    from tl_studio.core.evaluation import evaluation_set
    from tl_studio.core.export_formats import check_output_file, get_format
    from tl_studio.core.runs import export_run, open_run, scan_of

    run = open_run(folder)
    out = Path(out) if out else run.folder / f"model{INT8_SUFFIX}"
    check_output_file(out, get_format("onnx"))  # one sentence before the work
    if out.exists() and not overwrite:
        raise UserError(f"{out} already exists; choose another --out file or add --overwrite.")
    scan = scan_of(run)
    if scan is None:
        raise UserError(f"An int8 file is calibrated and checked on the run's images, but its data set "
                        f"{run.config.data_dir} is not there any more; put it back and export again.")
    val = evaluation_set(scan, "val", run.classes)
    train_records = [r for r in scan.split("train") if scan.classes[r.label] in run.classes]
    rng = np.random.default_rng(run.config.seed)
    checked = sorted(rng.choice(len(val.paths), size=min(MAX_CHECK_IMAGES, len(val.paths)), replace=False))

    with tempfile.TemporaryDirectory(prefix=".tl_studio_int8_", dir=out.parent) as work:
        fp32_path, int8_path = Path(work) / "fp32.onnx", Path(work) / "int8.onnx"
        export_run(run.folder, "onnx", fp32_path, overwrite=True, keep=keep)  # calibrated, with its unknown rule
        side = run.spec.resize_size
        calibration = (image for image, _ in labelled_arrays(
            pick_calibration_records(train_records, seed=run.config.seed), side))
        quantize_onnx(fp32_path, int8_path, calibration, per_channel=per_channel)
        records = [_Record(val.paths[i], val.labels[i]) for i in checked]
        check = compare(onnx_predictor(fp32_path), onnx_predictor(int8_path), labelled_arrays(records, side), cancel)
        if not check.passed:
            raise Int8CheckError(check.describe() + " The int8 file was not written; ship the full-precision ONNX file "
                                 "instead, or train longer or with another model and try again.")
        _record_check(int8_path, check)
        fp32_bytes, int8_bytes = fp32_path.stat().st_size, int8_path.stat().st_size
        os.replace(int8_path, out)
    return Int8Export(out, check, fp32_bytes, int8_bytes)


def _record_check(path: Path, check: Int8Check) -> None:
    """tl_studio.json of the int8 file says it is int8 and how it did against the fp32 model."""
    import json

    import onnx

    from tl_studio.core.model_file import METADATA_KEY

    model = onnx.load(str(path))
    for entry in model.metadata_props:
        if entry.key == METADATA_KEY:
            metadata = json.loads(entry.value)
            metadata["quantization"] = {"format": INT8_FORMAT, "weights": "int8 per channel", "activations": "uint8",
                                        "float": "depthwise and stem convolutions", "check": check.to_dict()}
            entry.value = json.dumps(metadata)
    onnx.save(model, str(path))


@dataclass(frozen=True)
class _Record:
    path: Path
    label: int
