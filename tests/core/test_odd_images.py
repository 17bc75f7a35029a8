"""Nothing in a data set ends a run: every image the scan calls usable trains (tiny, 1 x N, 16-bit,
CMYK, palette with transparency, animated), the exported model takes any H, W >= 1, and an image that
fails mid-run is skipped, counted and named, in the main process and in loader workers alike; a loop of
file links is a problem the scan reports, not a traceback."""

from __future__ import annotations

import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tests.helpers import make_image_folder
from tl_studio.core.data import ImageRecord
from tl_studio.core.dataset import ImageDataset, LoadFailure, collate_skipping_failures
from tl_studio.core.preprocess import Preprocess, PreprocessSpec
from tl_studio.core.transforms import eval_transform, train_transform

ODD_SIZES = ((1, 1), (1, 37), (37, 1), (2, 2), (2, 5))


def _png_with_corrupt_pixel_data(path: Path) -> None:
    """A PNG whose header and end marker are fine (so the header-level scan accepts it) but whose
    compressed pixel data is garbage: it fails only when decoded, mid-run."""
    Image.new("RGB", (40, 40), (90, 90, 90)).save(path)
    data = bytearray(path.read_bytes())
    start = data.index(b"IDAT") + 4
    length = int.from_bytes(data[start - 8:start - 4], "big")
    data[start:start + length] = bytes(range(7, 7 + length)) if length < 240 else b"\x07" * length
    crc = zlib.crc32(data[start - 4:start + length]).to_bytes(4, "big")
    data[start + length:start + length + 4] = crc  # a valid checksum, so only the decoder notices
    path.write_bytes(bytes(data))


def make_odd_images(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for width, height in ODD_SIZES:
        files[f"{width}x{height}"] = folder / f"size_{width}x{height}.png"
        Image.new("RGB", (width, height), (200, 40, 40)).save(files[f"{width}x{height}"])
    files["16-bit"] = folder / "deep_16bit.png"
    Image.fromarray((np.arange(48 * 48, dtype=np.uint16).reshape(48, 48) * 20)).save(files["16-bit"])
    assert Image.open(files["16-bit"]).mode.startswith("I;16")
    files["cmyk"] = folder / "cmyk.jpg"
    Image.new("CMYK", (40, 30), (0, 180, 200, 20)).save(files["cmyk"])
    files["palette"] = folder / "palette_transparent.png"
    palette = Image.new("P", (30, 30), 1)
    palette.putpalette([0, 0, 0, 220, 30, 30] + [0] * 762)
    palette.paste(0, (0, 0, 15, 30))
    palette.save(files["palette"], transparency=0)
    files["animated"] = folder / "animated.gif"
    frames = [Image.new("RGB", (24, 24), colour) for colour in ((230, 20, 20), (20, 230, 20))]
    frames[0].save(files["animated"], save_all=True, append_images=frames[1:], duration=100, loop=0)
    return files


def _records(paths) -> list[ImageRecord]:
    return [ImageRecord(Path(path), 0, "train") for path in paths]


def test_the_evaluation_preprocessing_takes_any_size_from_one_pixel():
    preprocess = Preprocess(PreprocessSpec(crop_size=64, resize_size=73, interpolation="bicubic"))
    for height, width in ODD_SIZES:
        out = preprocess(torch.rand(1, 3, height, width))
        assert out.shape == (1, 3, 64, 64) and torch.isfinite(out).all()
    # A uniform tiny image stays that uniform colour: the edge border adds nothing of its own.
    grey = preprocess(torch.full((1, 3, 1, 2), 0.5))
    assert torch.allclose(grey, preprocess(torch.full((1, 3, 50, 60), 0.5)), atol=1e-5)


def test_every_odd_image_goes_through_both_transforms(tmp_path):
    files = make_odd_images(tmp_path)
    spec = PreprocessSpec(crop_size=64, resize_size=73)
    dataset = ImageDataset(_records(files.values()), eval_transform(spec))
    augmented = ImageDataset(_records(files.values()), train_transform("strong", spec))
    for index in range(len(dataset)):
        for items in (dataset, augmented):
            item = items[index]
            assert not isinstance(item, LoadFailure), (dataset.paths[index], item)
            assert item[0].shape == (3, 64, 64)


def test_the_exported_preprocessing_takes_any_size_from_one_pixel():
    from tl_studio.core.export import _export_program

    preprocess = Preprocess(PreprocessSpec(crop_size=64, resize_size=73, interpolation="bicubic"))
    exported = _export_program(preprocess).module()
    for height, width in (*ODD_SIZES, (8, 8), (301, 257), (100, 480)):
        image = torch.rand(1, 3, height, width)
        torch.testing.assert_close(exported(image), preprocess(image))


def test_an_unexpected_error_in_one_image_is_a_skipped_image_not_a_crash(tmp_path):
    files = make_odd_images(tmp_path)

    def transform(image):
        if image.size == (37, 1):
            raise RuntimeError("Input and output sizes should be greater than 0")
        return eval_transform(PreprocessSpec(crop_size=32, resize_size=37))(image)

    dataset = ImageDataset(_records(files.values()), transform)
    batch = collate_skipping_failures([dataset[index] for index in range(len(dataset))])
    assert len(batch) == len(files) - 1
    assert [failure.index for failure in batch.failures] == [list(files).index("37x1")]
    assert "greater than 0" in batch.failures[0].reason


def test_train_with_loader_workers_goes_through_every_odd_image(tmp_path):
    data = make_image_folder(tmp_path / "data", classes=("red", "green"), per_class=8, size=48)
    files = make_odd_images(data / "red")
    _png_with_corrupt_pixel_data(data / "green" / "corrupt_pixels.png")
    (data / "green" / "x1.jpg").symlink_to("x2.jpg")  # a loop of file links: a scan problem, not a crash
    (data / "green" / "x2.jpg").symlink_to("x1.jpg")
    scan = subprocess.run([sys.executable, "-m", "tl_studio", "scan", str(data)], capture_output=True,
                          text=True, timeout=120)
    assert scan.returncode == 0, scan.stderr
    assert "corrupt_pixels" not in scan.stdout  # the header-level scan calls every file usable
    assert "green/x1.jpg: Link loop" in scan.stdout

    # Default loader workers (2): the failures happen in worker processes.
    result = subprocess.run([sys.executable, "-m", "tl_studio", "train", str(data), "--out", str(tmp_path / "run"),
                             "--epochs", "1", "--img-size", "64", "--batch-size", "8"],
                            capture_output=True, text=True, timeout=540)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    assert (tmp_path / "run" / "model.pt2").exists()
    skipped = [line for line in output.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == 1 and "corrupt_pixels.png" in skipped[0], output
    assert not any(path.name in line for line in skipped for path in files.values())
