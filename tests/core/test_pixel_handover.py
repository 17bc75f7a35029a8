"""Training loaders that hand over 8-bit pixels, normalised where the model runs (transforms.Normalise),
and each loader process's share of the decoded-image cache (dataset.image_cache_bytes)."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.transforms import v2

from tl_studio.core import loops
from tl_studio.core.dataset import MAX_CACHING_WORKERS, Batch, image_cache_bytes
from tl_studio.core.preprocess import PreprocessSpec
from tl_studio.core.transforms import Normalise, train_transform

SPEC = PreprocessSpec(crop_size=32, resize_size=36, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))


def _photo(seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))


def _torchvision_normalised(pixels: torch.Tensor) -> torch.Tensor:
    """What the loaders handed over before: torchvision's own scaling and normalisation."""
    return v2.Normalize(list(SPEC.mean), list(SPEC.std))(v2.ToDtype(torch.float32, scale=True)(pixels))


@pytest.mark.parametrize("preset", ["light", "standard", "strong"])
def test_pixels_normalised_later_equal_the_loaders_own_normalisation(preset):
    image = _photo()
    torch.manual_seed(3)
    in_loader = train_transform(preset, SPEC)(image)
    torch.manual_seed(3)
    pixels = train_transform(preset, SPEC, normalise_in_loader=False)(image)
    assert pixels.dtype == torch.uint8 and in_loader.dtype == torch.float32
    assert pixels.shape == in_loader.shape == (3, 32, 32)
    batch = Normalise(SPEC)(torch.stack([pixels, pixels]), channels_last=True)
    assert batch.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(batch[0], in_loader) and torch.equal(batch[1], in_loader)
    assert torch.allclose(in_loader, _torchvision_normalised(pixels), atol=1e-5)


def test_strong_augmentation_erases_to_the_mean_colour():
    """Erasing followed the normalisation with 0, the mean colour; on pixels it writes the mean's bytes."""
    erase = next(t for t in train_transform("strong", SPEC, normalise_in_loader=False).transforms
                 if isinstance(t, v2.RandomErasing))
    erase.p = 1.0
    erased = erase(torch.full((3, 32, 32), 7, dtype=torch.uint8))
    changed = (erased != 7).all(0)
    assert changed.any()
    for channel, mean in enumerate(SPEC.mean):
        assert erased[channel][changed].unique().tolist() == [round(255 * mean)]


def _context(model: nn.Module, normalise=None) -> loops.StepContext:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return loops.StepContext(
        optimizer=optimizer, scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0),
        criterion=nn.CrossEntropyLoss(), device=torch.device("cpu"), amp_dtype=None, scaler=None,
        channels_last=True, between_batches=lambda: None, on_batch=lambda *args: None, normalise=normalise)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))


def _batch(images: torch.Tensor) -> Batch:
    return Batch(images, torch.tensor([0, 1, 1]), torch.arange(3), [])


def test_a_pixel_batch_trains_as_its_normalised_floats_would():
    pixels = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    floats = _torchvision_normalised(pixels)
    from_floats = loops.train_on_images(_model(), [_batch(floats)], _context(_model()))
    model = _model()
    from_pixels = loops.train_on_images(model, [_batch(pixels)], _context(model, Normalise(SPEC)))
    assert from_pixels.loss == pytest.approx(from_floats.loss, abs=1e-5)
    assert from_pixels.seen == 3


def test_a_pixel_batch_without_a_normalisation_is_refused():
    model = _model()
    with pytest.raises(ValueError, match="normalise"):
        loops.train_on_images(model, [_batch(torch.zeros((3, 3, 32, 32), dtype=torch.uint8))], _context(model))


def test_the_image_cache_budget_is_shared_out_and_off_with_many_loader_processes():
    assert image_cache_bytes(512, 0) == 512 << 20  # the main process loads: all of it
    assert image_cache_bytes(512, 1) == 512 << 20
    assert image_cache_bytes(512, 2) == 256 << 20  # the training process's budget, not each loader's
    assert image_cache_bytes(512, MAX_CACHING_WORKERS + 1) == 0  # each would see few of its images again
    assert image_cache_bytes(0, 1) == 0


def test_a_gpu_runs_training_loader_hands_over_pixels_and_a_cpu_runs_floats(tiny_dataset):
    """device.normalises_on_device decides it for every training loader (the run's and the LR finder's)."""
    import warnings

    from tl_studio.core.config import TrainConfig
    from tl_studio.core.data import scan_for
    from tl_studio.core.device import DeviceInfo, normalises_on_device, resolve_device
    from tl_studio.core.run_data import RunData

    config = TrainConfig(data_dir=str(tiny_dataset), img_size=32, workers=0, batch_size=4, device="cpu")
    gpu = DeviceInfo(torch.device("cuda"), "a GPU", torch.bfloat16, pin_memory=False)  # needs no GPU
    for device, dtype in ((resolve_device("cpu"), torch.float32), (gpu, torch.uint8)):
        data = RunData(scan_for(config), config, SPEC, device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            batch = next(iter(data.train_loader()))
        assert normalises_on_device(device) == (dtype == torch.uint8)
        assert batch.images.dtype == dtype and batch.images.shape[1:] == (3, 32, 32)
