"""Training JPEGs decoded on the GPU (nvJPEG, through torchvision.io.decode_jpeg), for runs whose
loader processes cannot keep the GPU busy (``--decode gpu``, see docs/training.md).

On a GPU machine the CPU's decoding bounds fine-tuning: on the H200 of issue 15, 8 loader processes
decoded and augmented about 830 images/s where the GPU trained resnet50 at over 4,000; a plain AMP
loop that decoded its JPEGs on the GPU instead ran 1.7-1.8x faster than the same loop decoding them
on the CPU. With decoding on the GPU the loader processes only read each file and its header, and
the training step decodes the batch, turns each image upright, augments it and normalises it there.

What decoding on the GPU must do that the CPU's path (images.load_rgb) already does:
- EXIF orientation: torchvision's CUDA decoder ignores it, so the loader reads the tag from the
  file's header (Pillow, headers only) and ``upright`` turns the decoded pixels as
  ``ImageOps.exif_transpose`` turns a Pillow image.
- Files nvJPEG cannot take: only 8-bit YCbCr or grey JPEGs go to the GPU; a CMYK JPEG, an Adobe JPEG
  stored as RGB, a PNG, a WebP... is decoded and augmented by the loader process as before, and
  travels as pixels beside the others. A file the GPU refuses all the same is decoded again on the CPU
  (Pillow, as load_rgb), and a file neither can decode is skipped and reported like any unreadable
  image (dataset.LoadFailure).
- Memory: a 12-megapixel phone photo is 36 MB of pixels before it is cropped; a batch is decoded in
  chunks of at most ``DECODE_CHUNK_BYTES`` of full-size pixels, each chunk cropped to the model's size
  before the next one is decoded.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from tl_studio.core.images import (DEFAULT_MAX_PIXELS, ImageLoadError, _decode_failure, _os_error_reason,
                                   check_pixel_limit, to_rgb)

# Full-size decoded pixels held on the GPU at once (then cropped): 14 phone photos of 12 MP, or 128
# images of 1 MP.
DECODE_CHUNK_BYTES = 512 << 20
# The colour modes nvJPEG decodes to RGB the way Pillow's convert("RGB") does (YCbCr and grey JPEGs).
DEVICE_MODES = ("RGB", "L")
EXIF_ORIENTATION = 0x0112
JPEG_START = b"\xff\xd8\xff"  # start of image, then the first marker

# torchvision 0.29 marks its image decoders deprecated in favour of TorchCodec, on every call.
warnings.filterwarnings("ignore", message=".*TorchCodec", category=DeprecationWarning)


@dataclass(frozen=True)
class EncodedJpeg:
    """A JPEG file's bytes, as the loader process read them, for the GPU to decode."""
    data: bytes
    orientation: int  # EXIF orientation, 1 (upright) to 8
    width: int  # as stored, before the orientation turns it
    height: int


def read_for_device(path: str, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> EncodedJpeg | None:
    """The file's bytes and what its header says, when it is a JPEG the GPU can decode; None for any
    other file (the CPU decodes it). Raises ImageLoadError when the file cannot be read or is too large,
    as images.load_rgb does."""
    try:
        with open(path, "rb") as file:
            if file.read(len(JPEG_START)) != JPEG_START:
                return None  # not a JPEG: read once, by the loader's own decoding
            file.seek(0)
            data = file.read()
    except OSError as error:
        raise ImageLoadError(_os_error_reason(error), "unreadable") from error
    try:
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as image:  # the header only
            if image.mode not in DEVICE_MODES or _stored_as_rgb(image):
                return None
            width, height = image.size
            orientation = _orientation(image)
    except Exception:  # a header Pillow cannot read: the CPU's decoder says why
        return None
    check_pixel_limit(width, height, max_pixels)
    return EncodedJpeg(data, orientation, width, height)


def _stored_as_rgb(image: Image.Image) -> bool:
    """An Adobe JPEG whose three channels are RGB as they are (APP14 transform 0), not YCbCr: Pillow
    reads it so, a decoder that assumes YCbCr would turn its colours."""
    return image.mode == "RGB" and "adobe" in image.info and image.info.get("adobe_transform") == 0


def _orientation(image: Image.Image) -> int:
    try:
        value = int(image.getexif().get(EXIF_ORIENTATION, 1))
    except Exception:  # a broken EXIF block costs the image its orientation, not the image (as _upright)
        return 1
    return value if 1 <= value <= 8 else 1


def upright(pixels: torch.Tensor, orientation: int) -> torch.Tensor:
    """C x H x W pixels as stored -> turned the way EXIF ``orientation`` says, as ImageOps.exif_transpose
    turns a Pillow image (2: mirrored, 3: upside down, 6: turned for a camera held upright...)."""
    if orientation == 2:
        return pixels.flip(-1)
    if orientation == 3:
        return pixels.flip(-2, -1)
    if orientation == 4:
        return pixels.flip(-2)
    if orientation == 5:
        return pixels.transpose(-2, -1)
    if orientation == 6:
        return pixels.transpose(-2, -1).flip(-1)
    if orientation == 7:
        return pixels.transpose(-2, -1).flip(-2, -1)
    if orientation == 8:
        return pixels.transpose(-2, -1).flip(-2)
    return pixels


@dataclass
class EncodedBatch:
    """The JPEGs of one batch as a loader process hands them over: one tensor of all their bytes (one
    block of shared memory, not one per file) and, per file, where its bytes start and end, its
    orientation and its stored size."""
    data: torch.Tensor  # uint8, every file's bytes one after the other
    offsets: torch.Tensor  # int64, n + 1: file i is data[offsets[i]:offsets[i + 1]]
    orientations: torch.Tensor  # int64, n
    sizes: torch.Tensor  # int64, n x 2: width, height as stored

    @classmethod
    def of(cls, files: Sequence[EncodedJpeg]) -> "EncodedBatch":
        offsets = torch.tensor([0] + [len(f.data) for f in files], dtype=torch.int64).cumsum(0)
        data = torch.empty(int(offsets[-1]), dtype=torch.uint8)
        every_byte = data.numpy()
        for file, start, end in zip(files, offsets.tolist(), offsets[1:].tolist()):
            every_byte[start:end] = np.frombuffer(file.data, dtype=np.uint8)  # one copy of each
        return cls(data, offsets, torch.tensor([f.orientation for f in files], dtype=torch.int64),
                   torch.tensor([(f.width, f.height) for f in files], dtype=torch.int64).view(-1, 2))

    def __len__(self) -> int:
        return int(self.orientations.shape[0])

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return self.data, self.offsets, self.orientations, self.sizes

    def share_memory_(self) -> "EncodedBatch":
        for tensor in self.tensors():
            tensor.share_memory_()
        return self

    def file(self, i: int) -> torch.Tensor:
        return self.data[int(self.offsets[i]):int(self.offsets[i + 1])]


def chunks_within(sizes: torch.Tensor, budget_bytes: int) -> list[range]:
    """Consecutive runs of files whose full-size RGB pixels take at most ``budget_bytes`` together (a
    file larger than the budget alone)."""
    runs, start, used = [], 0, 0
    for i, (width, height) in enumerate(sizes.tolist()):
        size = width * height * 3
        if i > start and used + size > budget_bytes:
            runs.append(range(start, i))
            start, used = i, 0
        used += size
    if start < len(sizes):
        runs.append(range(start, len(sizes)))
    return runs


@dataclass(frozen=True)
class DecodedBatch:
    images: torch.Tensor  # uint8 N x 3 x C x C on the device, in the order of ``kept``
    kept: list[int]  # positions (in the batch) of the JPEGs decoded, in order
    failed: list[tuple[int, str]]  # (position, reason) of those neither the GPU nor the CPU could decode


class GpuDecoder:
    """Decodes a batch's JPEGs on ``device``, turns each upright and augments it there (``augment``: the
    training preset's random crop, flips and colour changes, on a C x H x W uint8 tensor)."""

    def __init__(self, augment: Callable[[torch.Tensor], torch.Tensor], device: torch.device,
                 chunk_bytes: int = DECODE_CHUNK_BYTES):
        self.augment = augment
        self.device = device
        self.chunk_bytes = chunk_bytes

    def __call__(self, encoded: EncodedBatch) -> DecodedBatch:
        images, kept, failed = [], [], []
        for run in chunks_within(encoded.sizes, self.chunk_bytes):
            for position, decoded in zip(run, self._decode([encoded.file(i) for i in run])):
                if isinstance(decoded, str):
                    failed.append((position, decoded))
                    continue
                images.append(self.augment(upright(decoded, int(encoded.orientations[position]))))
                kept.append(position)
        stacked = torch.stack(images) if images else torch.empty(0, 3, 1, 1, dtype=torch.uint8, device=self.device)
        return DecodedBatch(stacked, kept, failed)

    def _decode(self, files: list[torch.Tensor]) -> list:
        """Each file's pixels (3 x H x W uint8 on the device) or the reason it could not be decoded. All
        in one call where the decoder takes them all (nvJPEG decodes a list as a batch); else file by
        file, each on the device, then on the CPU."""
        from torchvision.io import ImageReadMode, decode_jpeg

        try:
            return list(decode_jpeg(files, mode=ImageReadMode.RGB, device=self.device))
        except torch.OutOfMemoryError:
            raise  # the engine's own recovery halves the batch (oom_retry.py); no file is to blame
        except RuntimeError:
            pass
        results = []
        for data in files:
            try:
                results.append(decode_jpeg(data, mode=ImageReadMode.RGB, device=self.device))
            except torch.OutOfMemoryError:
                raise
            except RuntimeError:
                results.append(self._decode_on_cpu(data))
        return results

    def _decode_on_cpu(self, data: torch.Tensor):
        """Pillow's pixels as stored (``upright`` turns them after), or the reason load_rgb would give."""
        try:
            with Image.open(io.BytesIO(data.numpy().tobytes()), formats=["JPEG"]) as image:
                image.load()
                pixels = torch.from_numpy(np.asarray(to_rgb(image)).copy())
        except Exception as error:  # noqa: BLE001 - one file, whatever is wrong with it
            return _decode_failure(error, "JPEG").reason
        return pixels.permute(2, 0, 1).contiguous().to(self.device)
