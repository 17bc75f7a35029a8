"""Training JPEGs decoded where the model runs (gpu_decoding.py): the loaders read bytes and headers,
the training step decodes, turns upright and augments. Without a GPU, the same code runs with the CPU as
the device (torchvision.io.decode_jpeg decodes there too); benchmarks/gpu_check.py runs it on CUDA."""

import warnings

import numpy as np
import pytest
import torch
import torchvision.io
from PIL import Image, ImageOps
from torch import nn

from tl_studio.core import loops
from tl_studio.core.dataset import ImageDataset, collate_skipping_failures
from tl_studio.core.gpu_decoding import (EXIF_ORIENTATION, EncodedBatch, EncodedJpeg, GpuDecoder, chunks_within,
                                         read_for_device, upright)
from tl_studio.core.images import load_rgb
from tl_studio.core.preprocess import PreprocessSpec
from tl_studio.core.transforms import Normalise, pixel_augmentation

SPEC = PreprocessSpec(crop_size=32, resize_size=36)
CPU = torch.device("cpu")


def _pixels(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Smooth, lopsided content (a JPEG keeps it closely): a gradient and a bright block in one corner."""
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    image = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, rng.integers(0, 256))], -1)
    image[: height // 3, : width // 4] = (250, 250, 20)
    return image.astype(np.uint8)


def _jpeg(path, width=40, height=30, orientation=None, mode="RGB", seed=0):
    image = Image.fromarray(_pixels(width, height, seed)).convert(mode)
    exif = Image.Exif()
    if orientation is not None:
        exif[EXIF_ORIENTATION] = orientation
    image.save(path, "JPEG", quality=95, exif=exif)
    return path


def _chw(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_upright_turns_pixels_as_pillows_exif_transpose_does(tmp_path, orientation):
    path = _jpeg(tmp_path / "photo.jpg", orientation=orientation)
    with Image.open(path) as stored:
        stored.load()
        expected = _chw(ImageOps.exif_transpose(stored))
        got = upright(_chw(stored), orientation)
    assert torch.equal(got, expected)


def test_the_loaders_read_jpegs_for_the_gpu_and_leave_other_files_to_the_cpu(tmp_path):
    turned = read_for_device(str(_jpeg(tmp_path / "turned.jpg", 40, 30, orientation=6)))
    assert (turned.orientation, turned.width, turned.height) == (6, 40, 30)
    assert turned.data == (tmp_path / "turned.jpg").read_bytes()
    assert read_for_device(str(_jpeg(tmp_path / "grey.jpg", mode="L"))).orientation == 1
    assert read_for_device(str(_jpeg(tmp_path / "cmyk.jpg", mode="CMYK"))) is None  # nvJPEG's RGB is not Pillow's
    plain = (tmp_path / "turned.jpg").read_bytes()
    adobe_rgb = b"\xff\xee" + (14).to_bytes(2, "big") + b"Adobe\x00\x64\x00\x00\x00\x00\x00"  # APP14, transform 0
    (tmp_path / "adobe.jpg").write_bytes(plain[:2] + adobe_rgb + plain[2:])
    assert read_for_device(str(tmp_path / "adobe.jpg")) is None  # its channels are RGB, not YCbCr
    Image.fromarray(_pixels(40, 30)).save(tmp_path / "drawing.png")
    assert read_for_device(str(tmp_path / "drawing.png")) is None
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 50)
    assert read_for_device(str(tmp_path / "bad.jpg")) is None  # the CPU's decoder says what is wrong with it


def test_decoded_images_are_the_cpu_paths_images(tmp_path):
    """Upright, RGB, the same pixels up to the two JPEG libraries' rounding."""
    paths = [_jpeg(tmp_path / "a.jpg", 40, 30, orientation=6, seed=1), _jpeg(tmp_path / "b.jpg", 30, 40, seed=2),
             _jpeg(tmp_path / "c.jpg", 40, 30, orientation=8, mode="L", seed=3)]
    encoded = EncodedBatch.of([read_for_device(str(p)) for p in paths])
    decoded = GpuDecoder(lambda pixels: pixels, CPU)(encoded)
    assert decoded.kept == [0, 1, 2] and not decoded.failed
    for got, path in zip(decoded.images, paths):
        expected = _chw(load_rgb(path))
        assert got.shape == expected.shape == (3, 40, 30)
        assert (got.int() - expected.int()).abs().max() <= 3


@pytest.mark.parametrize("preset", ["light", "standard"])
def test_with_the_same_random_draws_the_augmented_pixels_are_the_loaders(tmp_path, preset):
    """The same crops and flips as the loaders' transform on a Pillow image, and the same pixels but for
    resampling's rounding: a run decoding on the GPU trains on what a run decoding on the loaders would."""
    from tl_studio.core.transforms import train_transform

    spec = PreprocessSpec(crop_size=48, resize_size=54)
    loaders = train_transform(preset, spec, normalise_in_loader=False)
    decoder = GpuDecoder(pixel_augmentation(preset, spec), CPU)
    for seed in range(6):
        path = _jpeg(tmp_path / f"{seed}.jpg", 160, 120, orientation=(1, 6)[seed % 2], seed=seed)
        torch.manual_seed(seed)
        expected = loaders(load_rgb(path, min_side=loaders.decode_side))
        torch.manual_seed(seed)
        got = decoder(EncodedBatch.of([read_for_device(str(path))])).images[0]
        assert got.shape == expected.shape == (3, 48, 48)
        assert (got.float() - expected.float()).abs().mean() < 1.0


def test_a_batch_is_decoded_in_chunks_within_the_memory_budget(tmp_path, monkeypatch):
    sizes = torch.tensor([(100, 100), (100, 100), (300, 300), (100, 100)])
    assert chunks_within(sizes, 60_000) == [range(0, 2), range(2, 3), range(3, 4)]  # 30 kB an image of 100 x 100
    assert chunks_within(sizes, 10**9) == [range(0, 4)]
    paths = [_jpeg(tmp_path / f"{i}.jpg", seed=i) for i in range(5)]
    encoded = EncodedBatch.of([read_for_device(str(p)) for p in paths])
    calls = []
    real = torchvision.io.decode_jpeg
    monkeypatch.setattr(torchvision.io, "decode_jpeg", lambda files, **kw: calls.append(len(files)) or real(files, **kw))
    whole = GpuDecoder(lambda pixels: pixels, CPU)(encoded).images
    chunked = GpuDecoder(lambda pixels: pixels, CPU, chunk_bytes=2 * 40 * 30 * 3)(encoded).images
    assert calls == [5, 2, 2, 1]
    assert torch.equal(whole, chunked)


def test_a_file_the_gpu_refuses_is_decoded_on_the_cpu_and_one_nothing_decodes_is_reported(tmp_path, monkeypatch):
    good, refused = _jpeg(tmp_path / "good.jpg", seed=1), _jpeg(tmp_path / "refused.jpg", orientation=3, seed=2)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(good.read_bytes()[:400] + b"\x00" * 400)  # a readable header, then no image data
    files = [read_for_device(str(good)), read_for_device(str(refused)), EncodedJpeg(broken.read_bytes(), 1, 40, 30)]
    refused_bytes = refused.read_bytes()
    real = torchvision.io.decode_jpeg

    def nvjpeg_like(data, **kw):  # refuses the batch, then one of its files
        if isinstance(data, list) or data.numpy().tobytes() == refused_bytes:
            raise RuntimeError("nvjpegDecode failed")
        return real(data, **kw)

    monkeypatch.setattr(torchvision.io, "decode_jpeg", nvjpeg_like)
    decoded = GpuDecoder(lambda pixels: pixels, CPU)(EncodedBatch.of(files))
    assert decoded.kept == [0, 1]
    assert (decoded.images[1].int() - _chw(load_rgb(refused)).int()).abs().max() <= 3  # upright: orientation 3
    [(position, reason)] = decoded.failed
    assert position == 2 and reason.startswith("Corrupt image: the JPEG data cannot be decoded")


def test_running_out_of_gpu_memory_while_decoding_is_left_to_the_engines_recovery(tmp_path, monkeypatch):
    """Not taken for a file nvJPEG refuses (an OutOfMemoryError is a RuntimeError): oom_retry halves the batch."""
    encoded = EncodedBatch.of([read_for_device(str(_jpeg(tmp_path / "a.jpg")))])

    def out_of_memory(data, **kw):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(torchvision.io, "decode_jpeg", out_of_memory)
    with pytest.raises(torch.OutOfMemoryError):
        GpuDecoder(lambda pixels: pixels, CPU)(encoded)


def _step_context(model: nn.Module, decoder, failures: list) -> loops.StepContext:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return loops.StepContext(
        optimizer=optimizer, scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0),
        criterion=nn.CrossEntropyLoss(), device=CPU, amp_dtype=None, scaler=None, channels_last=True,
        between_batches=lambda: None, on_batch=lambda *args: None, on_failures=failures.extend,
        normalise=Normalise(SPEC), decode=decoder)


@pytest.mark.parametrize("workers", [0, 1])
def test_a_batch_of_jpegs_other_images_and_a_broken_file_trains_with_each_label_in_step(tmp_path, workers):
    """The loaders hand over the JPEGs' bytes and the PNG's and the CMYK JPEG's pixels (from a loader
    process: all of it through shared memory); the broken file is reported by its index and left out,
    and every image keeps its own label (each class is one colour: a label out of step would be seen in
    what the images are)."""
    from tl_studio.core.dataset import make_loader
    from tl_studio.core.transforms import train_transform

    paths, labels = [], []
    for label, colour in enumerate(((230, 30, 30), (30, 230, 30))):
        for i, fmt in enumerate(("jpg", "jpg", "png", "cmyk")):
            path = tmp_path / f"{label}_{i}.{'png' if fmt == 'png' else 'jpg'}"
            image = Image.new("RGB", (48, 36), colour)
            (image.convert("CMYK") if fmt == "cmyk" else image).save(path)
            paths.append(path)
            labels.append(label)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(paths[0].read_bytes()[:300] + b"\x00" * 300)
    paths.append(broken)
    labels.append(1)
    records = [type("Record", (), {"path": p, "label": y})() for p, y in zip(paths, labels)]
    dataset = ImageDataset(records, train_transform("standard", SPEC, normalise_in_loader=False),
                           for_gpu_decoding=True)
    loader = make_loader(dataset, batch_size=len(records), shuffle=True, workers=workers, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = next(iter(loader))
    assert len(batch.encoded) == 5 and batch.images.shape == (4, 3, 32, 32)  # 4 JPEGs + the broken one; PNG, CMYK
    decoder = GpuDecoder(pixel_augmentation("standard", SPEC), CPU)
    failures = []
    pixels, in_step = loops._training_pixels(batch, _step_context(nn.Linear(1, 1), decoder, failures))
    assert [f.index for f in failures] == [len(records) - 1]
    assert pixels.shape == (8, 3, 32, 32) and pixels.dtype == torch.uint8
    red_rows = pixels[:, 0].float().mean((1, 2)) > pixels[:, 1].float().mean((1, 2))
    assert torch.equal(red_rows, in_step == 0)


def test_training_on_a_batch_decoded_there(tmp_path):
    paths = [_jpeg(tmp_path / f"{i}.jpg", 60, 45, orientation=1 + i % 8, seed=i) for i in range(6)]
    records = [type("Record", (), {"path": p, "label": i % 2})() for i, p in enumerate(paths)]
    batch = collate_skipping_failures([ImageDataset(records, None, for_gpu_decoding=True)[i] for i in range(6)])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    totals = loops.train_on_images(model, [batch], _step_context(model, GpuDecoder(
        pixel_augmentation("strong", SPEC), CPU), []))
    assert totals.seen == 6 and np.isfinite(totals.loss)


def test_a_run_decodes_on_the_gpu_only_when_asked_on_cuda(tiny_dataset):
    from tl_studio.core.config import TrainConfig
    from tl_studio.core.data import scan_for
    from tl_studio.core.device import DeviceInfo, resolve_device
    from tl_studio.core.run_data import RunData

    config = TrainConfig(data_dir=str(tiny_dataset), img_size=32, workers=0, batch_size=4)
    gpu = DeviceInfo(torch.device("cuda"), "a GPU", torch.bfloat16, pin_memory=False)  # needs no GPU to decide
    scan = scan_for(config)

    def data(device, **changes):
        return RunData(scan, config.replace(**changes), SPEC, device)

    asked = data(gpu, decode="gpu")
    assert asked.decodes_on_gpu and not any("decod" in note for note in asked.notes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = next(iter(asked.train_loader()))
    assert len(batch.encoded) == 4 and batch.images.numel() == 0
    assert not data(gpu).decodes_on_gpu and not data(gpu, decode="cpu").decodes_on_gpu  # auto: the loaders
    on_cpu = data(resolve_device("cpu"), decode="gpu")
    assert not on_cpu.decodes_on_gpu and any("needs an NVIDIA GPU" in note for note in on_cpu.notes)
    plain = data(gpu, decode="gpu", augment="none")
    assert not plain.decodes_on_gpu and any("preset none" in note for note in plain.notes)


def test_a_whole_run_trains_on_images_decoded_where_it_runs(tiny_dataset, tmp_path, monkeypatch):
    """The engine's path end to end, with the CPU standing in for the GPU (the decision forced): loader
    processes reading bytes, the step decoding them; the run completes and writes its model file."""
    from tl_studio.core import run_data
    from tl_studio.core.config import TrainConfig
    from tl_studio.core.engine import Trainer

    decoded = []
    real_call = GpuDecoder.__call__
    monkeypatch.setattr(run_data, "decodes_on_gpu", lambda device, decode, augment: decode == "gpu")
    monkeypatch.setattr(GpuDecoder, "__call__", lambda self, encoded: decoded.append(len(encoded)) or
                        real_call(self, encoded))
    config = TrainConfig(data_dir=str(tiny_dataset), model="efficientnet_lite0", freeze="all", feature_cache=False,
                         epochs=1, batch_size=8, workers=1, img_size=64, decode="gpu")
    finished = Trainer(config, tmp_path / "run", []).fit()
    assert finished.status == "completed" and finished.model_file
    assert sum(decoded) == 28  # the training split of the 36 images, every one decoded by the step


def test_jpegs_that_shared_memory_cannot_hold_travel_through_the_pipe(tiny_dataset, monkeypatch):
    """As a batch of pixels does (dataset.py): a container's small /dev/shm must not lose a batch of bytes."""
    from tl_studio.core import dataset
    from tl_studio.core.data import scan_dataset
    from tl_studio.core.dataset import make_loader

    records = scan_dataset(tiny_dataset).records[:8]
    images = ImageDataset(records, None, for_gpu_decoding=True)

    def batches(workers):
        loader = make_loader(images, batch_size=4, shuffle=False, workers=workers, seed=0)
        got = list(loader)
        del loader
        return got

    expected = batches(0)

    def full(self):  # what torch raises in the loader process when /dev/shm has no room left
        raise RuntimeError("unable to allocate shared memory(shm): No space left on device (28)")

    monkeypatch.setattr(EncodedBatch, "share_memory_", full)  # the forked loader processes inherit it
    before = dataset.batches_through_pipe()
    got = batches(1)
    assert dataset.batches_through_pipe() - before == 2
    for batch, reference in zip(got, expected):
        assert batch.through_pipe and len(batch.encoded) == 4
        assert all(torch.equal(a, b) for a, b in zip(batch.encoded.tensors(), reference.encoded.tensors()))
        assert torch.equal(batch.labels, reference.labels) and torch.equal(batch.indices, reference.indices)
