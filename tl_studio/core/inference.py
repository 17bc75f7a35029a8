"""Running a model file over many image files: decoded in loader workers, classified in batches, the
results handed back in input order as each batch is done.

A model file takes N x 3 x H x W of any H and W and does its own preprocessing (core/export.py), so a
batch needs images of one size. A TL Studio file records that preprocessing (``metadata["preprocessing"]``):
it crops a centred square of min(H, W) * crop / resize pixels and resamples it to crop x crop. The
loader workers do that crop and resample themselves, with the same ``Preprocess`` code
(core/preprocess.py), and put each crop x crop result in the middle of a resize x resize canvas. The
file's own preprocessing then crops exactly that square back out of the canvas, resamples it to the
size it already has (an identity), normalises it and runs the network: the answer is the file's, and
every image of a batch has the same size. Whether a file really answers so is checked once, when the
plan is made (``plan_for``): synthetic images through the canvas, in one batch, against each image
whole on its own. A file without that metadata, or one that fails the check (an ONNX file with a fixed
batch of 1, say), gets its images one at a time and whole, as before.

Images are decoded with ``images.load_rgb`` inside ``dataset.ImageDataset``, the loader training uses:
EXIF orientation, JPEG draft decoding (a JPEG at least twice the size the preprocessing needs decodes
directly at 1/2, 1/4 or 1/8 size, as validation does) and one failure record per unreadable file, whose
reason is the one ``predict`` has always printed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, NamedTuple, Sequence

import torch

from tl_studio.core.errors import Cancelled, UserError
from tl_studio.core.preprocess import (Preprocess, PreprocessSpec, crop_and_resize_pixels, to_pixels,
                                       to_unit_tensor)

DEFAULT_BATCH_SIZE = 32
# Probe images for the plan's check: blocky colour patterns (a crop off by a pixel changes the answer), of
# sizes unlike any canvas, portrait and landscape.
_PROBE_SIZES = ((300, 400), (517, 333))
_PROBE_TOLERANCE = 1e-3  # the export check's own limit (core/export.py)
_BATCH_TOLERANCE = 1e-5  # the same image at two places of one batch
# An int8 file's integer rounding tells a canvas from the whole image: in batches of canvases its confidences
# moved by up to 3.9 points from the file run on each image whole (as ONNX Runtime runs it anywhere else,
# the README's snippet too) and 2 of 153 "unknown" answers changed (hymenoptera val). It gets each image whole.
QUANTIZED_ONE_AT_A_TIME = ("an int8 file answers exactly as elsewhere only on each image whole (in batches its "
                           "integer rounding moves confidences by a few points)")


@dataclass(frozen=True)
class InputPlan:
    """How images reach a model file: ``spec`` set means batches of canvases (see the module's doc),
    None means each image whole and on its own. ``note`` says why a file gets the slow way."""

    spec: PreprocessSpec | None = None
    batch_size: int = 1
    channels_last: bool = False  # torch formats: the convolutions run faster on CPU with NHWC tensors
    note: str = ""
    decode_side: int | None = None  # each image whole, decoded as training's validation does (a JPEG at 1/2-1/8)

    @property
    def batched(self) -> bool:
        return self.spec is not None


ONE_AT_A_TIME = InputPlan()


class Result(NamedTuple):
    """One file's outcome: its class probabilities (a float32 tensor), or why it could not be read."""

    index: int
    probabilities: torch.Tensor | None
    error: str | None


def plan_for(model, batch_size: int = DEFAULT_BATCH_SIZE) -> InputPlan:
    """The plan for a loaded ``ModelFile`` (core/model_file.py): batches of ``batch_size`` when the
    file's metadata names its preprocessing and the file answers on canvases as on whole images."""
    spec = _spec_of(model.metadata)
    if spec is None:
        return InputPlan(note="the model file does not say how it preprocesses images")
    if spec.resize_size < spec.crop_size:
        return InputPlan(note="the model file's crop is larger than its resize size")
    if model.metadata.get("quantization"):
        return InputPlan(note=QUANTIZED_ONE_AT_A_TIME, decode_side=spec.resize_size)
    problem = probe(model.predict, spec, _PROBE_TOLERANCE)
    if problem:
        return InputPlan(note=problem, decode_side=spec.resize_size)
    return InputPlan(spec, max(1, int(batch_size)), channels_last=model.format in ("pt2", "torchscript"))


def _spec_of(metadata: dict) -> PreprocessSpec | None:
    try:
        return PreprocessSpec.from_dict(metadata["preprocessing"])
    except (KeyError, TypeError, ValueError):
        return None


def canvas_side(spec: PreprocessSpec) -> int:
    """The side of the square canvas whose centre crop, as ``Preprocess`` computes it, is exactly
    crop_size: min(H, W) * crop // resize == crop for a side of resize."""
    return spec.resize_size


def canvas_offset(spec: PreprocessSpec) -> int:
    """Where ``Preprocess`` starts its crop in a canvas (it pads by one pixel first)."""
    side = canvas_side(spec)
    return (side + 2 - spec.crop_size) // 2 - 1


class PrepareImage:
    """PIL RGB image -> what the plan feeds the model file (picklable, for loader workers):
    the image whole (3 x H x W in [0, 1]), or its resampled crop on a canvas."""

    def __init__(self, spec: PreprocessSpec | None, decode_side: int | None = None):
        self.spec = spec
        self.preprocess = Preprocess(spec) if spec else None
        self.decode_side = spec.resize_size if spec else decode_side  # read by ImageDataset

    def __call__(self, image) -> torch.Tensor:
        if self.spec is None:
            return to_unit_tensor(image)
        return to_canvas(self.preprocess, self.spec, to_pixels(image).unsqueeze(0))[0]


def to_canvas(preprocess: Preprocess, spec: PreprocessSpec, images: torch.Tensor) -> torch.Tensor:
    """N x 3 x H x W, uint8 or float in [0, 1] -> N x 3 x S x S float canvases (S = ``canvas_side``)."""
    side, offset, crop = canvas_side(spec), canvas_offset(spec), spec.crop_size
    with torch.no_grad():
        square = crop_and_resize_pixels(preprocess, images)
    canvas = square.new_zeros(square.shape[0], 3, side, side)
    canvas[:, :, offset:offset + crop, offset:offset + crop] = square
    return canvas


def probe(predict: Callable, spec: PreprocessSpec, tolerance: float) -> str:
    """Empty when ``predict`` answers a batch of canvases as it answers each image whole; else why not."""
    images = _probe_images()
    preprocess = Preprocess(spec)
    try:
        whole = [torch.as_tensor(predict(image)).float() for image in images]
        canvases = torch.cat([to_canvas(preprocess, spec, image) for image in images + images[:1]])
        batched = torch.as_tensor(predict(canvases)).float()
    except UserError:  # the file answers in another width than its class names: that sentence, not this one
        raise
    except Exception as error:  # noqa: BLE001 - a file that cannot take a batch (fixed batch of 1) is one case
        return f"the model file does not take a batch of images ({type(error).__name__})"
    expected = torch.cat(whole)
    if batched.shape != (len(images) + 1, expected.shape[1]):
        return "the model file does not answer a batch of images with one row each"
    if float((batched[-1] - batched[0]).abs().max()) > _BATCH_TOLERANCE:
        return "the model file answers the same image differently within one batch"
    if float((batched[:-1] - expected).abs().max()) > tolerance:
        return "the model file's preprocessing is not the one its metadata names"
    return ""


def _probe_images() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    images = []
    for height, width in _PROBE_SIZES:
        blocks = torch.rand(1, 3, height // 16 + 1, width // 16 + 1, generator=generator)
        images.append(torch.nn.functional.interpolate(blocks, scale_factor=16, mode="nearest")[:, :, :height, :width])
    return images


class _Item(NamedTuple):  # what ImageDataset reads from a record
    path: str
    label: int


def run(predict: Callable, paths: Sequence, plan: InputPlan = ONE_AT_A_TIME, *, workers: int = 0,
        cancel: Callable[[], bool] | None = None) -> Iterator[list[Result]]:
    """Classifies ``paths`` batch by batch; yields each batch's results in input order (a file that
    could not be read is a Result with its reason). ``cancel`` is asked before each batch: when it
    says yes, ``Cancelled`` is raised and nothing more is read."""
    from tl_studio.core.dataset import ImageDataset, collate_skipping_failures

    if not paths:
        return
    dataset = ImageDataset([_Item(str(path), 0) for path in paths], PrepareImage(plan.spec, plan.decode_side))
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=plan.batch_size if plan.batched else 1, shuffle=False, num_workers=workers,
        collate_fn=collate_skipping_failures, prefetch_factor=2 if workers > 0 else None,
        generator=torch.Generator())  # not a draw from the caller's global RNG
    iterator = iter(loader)
    try:
        for batch in iterator:
            if cancel is not None and cancel():
                raise Cancelled()
            yield _results(predict, batch, plan)
    finally:
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:  # the workers stop now, not whenever the iterator is collected
            shutdown()


def _results(predict: Callable, batch, plan: InputPlan) -> list[Result]:
    results = [Result(failure.index, None, failure.reason) for failure in batch.failures]
    if len(batch):
        images = batch.images.contiguous(memory_format=torch.channels_last) if plan.channels_last else batch.images
        probabilities = torch.as_tensor(predict(images)).float()
        results += [Result(int(index), row, None) for index, row in zip(batch.indices.tolist(), probabilities)]
    return sorted(results, key=lambda result: result.index)


def default_workers() -> int:
    """Loader workers for a command: one beside the model on a small machine, two on a larger one."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 1 if cores <= 4 else 2
