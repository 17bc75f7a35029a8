"""PyTorch datasets and loaders over a scanned folder.

An image that fails to load mid-run (deleted, corrupted since the scan) is skipped: the dataset returns
a failure marker, the collate function drops it and hands its index and reason to the engine, which
counts and reports it. A run never ends because of one bad file.

Loader processes hand their batches over in shared memory (``/dev/shm`` on Linux), which can be far
smaller than a batch in flight: 64 MB in a Docker container unless it is started with ``--shm-size``,
while two workers at batch 32 keep about 150 MB in flight. Handed over as PyTorch does by default, a
batch that did not fit was lost in the worker's queue thread (a traceback on the terminal) and the run
waited for it forever. So a worker's batch is put into shared memory while it is collated, where a
failure can be caught, and a batch that does not fit travels by value through the worker's pipe
instead: slower (a copy more), never lost. ``batches_through_pipe()`` counts those in this process, for
the notice that says how to give the loaders more room (``SHARED_MEMORY_ADVICE``).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from tl_studio.core import read_ahead
from tl_studio.core.gpu_decoding import EncodedBatch, read_for_device
from tl_studio.core.images import ImageLoadError, load_rgb


# The most loader processes a decoded-image cache is kept with. Batches go to the processes in turn and
# each epoch shuffles them anew, so a process sees about 1/workers of its cached images again: with two,
# half (training's later epochs here: 630-670 -> 700-1000 images/s from the loaders); with eight, one in
# eight, while keeping every image costs the first epoch about 12 % (fresh memory for each one instead
# of the last one's: 732 -> 643 images/s from two loaders handing over 8-bit pixels).
MAX_CACHING_WORKERS = 2


def image_cache_bytes(budget_mb: int, workers: int) -> int:
    """Each loader process's share of a training process's decoded-image budget (``image_cache_mb``);
    none with more than MAX_CACHING_WORKERS loader processes."""
    if workers > MAX_CACHING_WORKERS:
        return 0
    return (budget_mb << 20) // max(workers, 1)


class DecodedImageCache:
    """Decoded images kept in memory up to a byte budget (least recently used goes first).

    Each loader process has its own cache, with its share of its training process's budget
    (``image_cache_bytes``). Decoding a JPEG costs more than augmenting it, so repeated epochs over a
    small dataset get noticeably faster.
    """

    def __init__(self, budget_bytes: int):
        self.budget = budget_bytes
        self.used = 0
        self._images: OrderedDict[str, object] = OrderedDict()

    def get(self, path: str):
        image = self._images.get(path)
        if image is not None:
            self._images.move_to_end(path)
        return image

    def put(self, path: str, image) -> None:
        size = image.width * image.height * 3
        if size > self.budget:
            return
        while self.used + size > self.budget and self._images:
            _, old = self._images.popitem(last=False)
            self.used -= old.width * old.height * 3
        self._images[path] = image
        self.used += size


@dataclass(frozen=True)
class LoadFailure:
    index: int
    reason: str


class ImageDataset(Dataset):
    """Items are (tensor, label, index); a file that fails to load yields a LoadFailure instead.
    ``for_gpu_decoding``: a JPEG the GPU can decode is (gpu_decoding.EncodedJpeg, label, index), its
    bytes unread by any decoder here; other files go through ``transform`` as usual."""

    def __init__(self, records: Sequence, transform: Callable, cache_bytes: int = 0, for_gpu_decoding: bool = False):
        self.paths = [str(r.path) for r in records]
        self.labels = [int(r.label) for r in records]
        self.transform = transform
        self.for_gpu_decoding = for_gpu_decoding
        # The shorter side the transform needs (see transforms.py): larger JPEGs decode reduced.
        self.decode_side = getattr(transform, "decode_side", None)
        self.cache = DecodedImageCache(cache_bytes) if cache_bytes > 0 else None

    def __len__(self) -> int:
        return len(self.paths)

    def _load(self, path: str):
        image = self.cache.get(path) if self.cache else None
        if image is None:
            image = read_ahead.take(path, self.decode_side)  # decoded while the process imported torch
            if image is None:
                image = load_rgb(path, min_side=self.decode_side)
            if self.cache:
                self.cache.put(path, image)
        return image

    def __getitem__(self, item: int | tuple[int, int]):
        """``item``: an index, or (index, seed) from a training loader (SeededIndices)."""
        index, seed = item if isinstance(item, tuple) else (item, None)
        try:
            if self.for_gpu_decoding:
                encoded = read_for_device(self.paths[index])
                if encoded is not None:
                    return encoded, self.labels[index], index
            image = self._load(self.paths[index])
            return self._transformed(image, seed), self.labels[index], index
        except ImageLoadError as error:
            return LoadFailure(index, error.reason)
        except Exception as error:  # noqa: BLE001 - one image, whatever went wrong with it, never ends a run
            return LoadFailure(index, _unexpected_failure_reason(error))


    def _transformed(self, image, seed: int | None):
        if seed is None:
            return self.transform(image)
        # the process's own random stream is left as it was: with no loader processes it is the training's.
        # (The CPU generator itself: torch.manual_seed and fork_rng took 90-130 us an image, this 3 us.)
        generator = torch.default_generator
        state = generator.get_state()
        generator.manual_seed(seed)
        try:
            return self.transform(image)
        finally:
            generator.set_state(state)


class SeededIndices:
    """A training loader's indices (a sampler's, or a batch sampler's lists), each with the seed its image's
    random crop, flip and colour change draw from: a function of the epoch's seed and the image alone.

    Loader processes live across epochs, and each drew its augmentation from its own random stream, which a
    resumed run (its processes new) could not continue: from the epoch after a stop, a resumed run trained
    on other crops than the run that was never stopped (val accuracy 0.804 against 0.797 at epoch 3). With
    the seed travelling with the index, a resumed epoch sees the crops it would have seen, whatever the
    number of loader processes."""

    def __init__(self, indices, order: torch.Generator | None = None):
        """``order``: the generator ``indices`` shuffle with, seeded with each epoch's seed. (The loader's own
        generator also gives a loader its processes' seeds, a draw taken before the shuffle only when the
        loader starts them: a run whose processes lived on from epoch 1 shuffled epoch 2 unlike a run resumed
        there, or one with no loader processes.)"""
        self.indices = indices
        self.order = order
        self.epoch_seed = 0

    def set_epoch_seed(self, seed: int) -> None:
        self.epoch_seed = seed
        if self.order is not None:
            self.order.manual_seed(seed)

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self):
        for item in self.indices:
            if isinstance(item, list):
                yield [(int(index), self.seed_of(index)) for index in item]
            else:
                yield int(item), self.seed_of(item)

    def seed_of(self, index) -> int:
        return (self.epoch_seed * 1_000_003 + int(index)) % 2**63


def _unexpected_failure_reason(error: Exception) -> str:
    detail = str(error).strip().splitlines()[0][:120] if str(error).strip() else type(error).__name__
    return f"Could not be prepared for the model ({detail})"


@dataclass
class Batch:
    """``encoded``: JPEGs for the GPU to decode (gpu_decoding.py), the batch's first images; ``images``
    then holds the pixels of the others, which follow them (``labels`` and ``indices`` cover both)."""
    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    failures: list  # LoadFailure items dropped from this batch
    through_pipe: bool = False  # shared memory could not hold it: it travels by value (see the module doc)
    encoded: EncodedBatch | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __reduce_ex__(self, protocol):
        if not self.through_pipe:
            return super().__reduce_ex__(protocol)
        # numpy arrays pickle their bytes; tensors would ask for shared memory again
        encoded = None if self.encoded is None else [t.numpy() for t in self.encoded.tensors()]
        return _batch_by_value, (self.images.numpy(), self.labels.numpy(), self.indices.numpy(), self.failures,
                                 encoded)

    def pin_memory(self) -> "Batch":
        # DataLoader(pin_memory=True) calls this on custom batch types.
        self.images = self.images.pin_memory()
        self.labels = self.labels.pin_memory()
        return self


SHARED_MEMORY_ADVICE = ("Shared memory (/dev/shm) was too small for the loader processes' batches, so some "
                        "travelled through a pipe instead, which is slower. For full speed, give it more room "
                        "(Docker: --shm-size=2g) or set fewer loader workers.")
_through_pipe = {"batches": 0}  # received in this process


def batches_through_pipe() -> int:
    """How many batches this process has received by value because shared memory was full."""
    return _through_pipe["batches"]


def _batch_by_value(images, labels, indices, failures, encoded=None) -> Batch:
    _through_pipe["batches"] += 1
    if encoded is not None:
        encoded = EncodedBatch(*(torch.from_numpy(array) for array in encoded))
    return Batch(torch.from_numpy(images), torch.from_numpy(labels), torch.from_numpy(indices), failures,
                 through_pipe=True, encoded=encoded)


def collate_skipping_failures(items: list) -> Batch:
    failures = [item for item in items if isinstance(item, LoadFailure)]
    good = [item for item in items if not isinstance(item, LoadFailure)]
    # JPEGs for the GPU first (a batch of bytes), then the images decoded here
    encoded = [item for item in good if not isinstance(item[0], torch.Tensor)]
    good = encoded + [item for item in good if isinstance(item[0], torch.Tensor)]
    if not good:
        empty = torch.empty(0)
        return Batch(empty, torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long), failures)
    images = [item[0] for item in good[len(encoded):]]
    labels = torch.tensor([item[1] for item in good], dtype=torch.long)
    indices = torch.tensor([item[2] for item in good], dtype=torch.long)
    files = None
    if encoded:
        files = EncodedBatch.of([item[0] for item in encoded])
    if torch.utils.data.get_worker_info() is None:  # collated where it is used: nothing to hand over
        return Batch(_stacked(images, torch.stack), labels, indices, failures, encoded=files)
    try:
        # in a loader process, default_collate stacks straight into shared memory
        return Batch(_stacked(images, torch.utils.data.default_collate), labels.share_memory_(),
                     indices.share_memory_(), failures, encoded=None if files is None else files.share_memory_())
    except RuntimeError:  # shared memory full (or another fault of stacking, which the next line raises again)
        return Batch(_stacked(images, torch.stack), labels, indices, failures, through_pipe=True, encoded=files)


def _stacked(images: list, stack) -> torch.Tensor:
    return stack(images) if images else torch.empty(0, dtype=torch.uint8)


def _seed_worker(worker_id: int) -> None:
    # Each worker's Python and NumPy RNGs derive from torch's per-worker seed, so augmentation is
    # repeatable for a given run seed.
    import random

    import numpy as np

    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def make_loader(dataset: Dataset, *, batch_size: int, shuffle: bool, workers: int, seed: int,
                pin_memory: bool = False, drop_last: bool = False, mp_context=None, sampler=None,
                batch_sampler=None) -> DataLoader:
    """``mp_context``: how worker processes start (None: the platform default; the GUI passes a fork
    server context, see gui/training.py). ``sampler``: the indices to load (a process's share of an
    inference pass) instead of all of them; ``batch_sampler``: the batches themselves (a process's
    training shard, see core/strategy.py), in place of batch size, shuffle and drop_last."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    seeds = None  # training: each image's augmentation seed travels with its index (SeededIndices)
    if batch_sampler is not None:
        batch_size, shuffle, drop_last = 1, False, False
        batch_sampler = seeds = SeededIndices(batch_sampler)
    elif shuffle and sampler is None:
        order = torch.Generator().manual_seed(seed)
        sampler = seeds = SeededIndices(RandomSampler(dataset, generator=order), order)
        shuffle = False
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle and sampler is None,
        sampler=sampler, batch_sampler=batch_sampler, num_workers=workers,
        collate_fn=collate_skipping_failures, pin_memory=pin_memory, drop_last=drop_last,
        worker_init_fn=_seed_worker, generator=generator,
        persistent_workers=workers > 0, multiprocessing_context=mp_context if workers > 0 else None,
        prefetch_factor=4 if workers > 0 else None,
    )
    loader.augmentation_seeds = seeds
    return loader
