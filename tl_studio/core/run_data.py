"""The data side of a training run: splits, loaders (made lazily), class weights, the sample set and
the images the export check runs on."""

from __future__ import annotations

import torch

from tl_studio.core.config import INFERENCE_BATCH, TrainConfig
from tl_studio.core.dataset import ImageDataset, image_cache_bytes, make_loader
from tl_studio.core.device import decodes_on_gpu, normalises_on_device
from tl_studio.core.errors import DatasetError
from tl_studio.core.optim import class_weights
from tl_studio.core.problem_summary import problems_sentence
from tl_studio.core.samples import make_thumbnail, pick_samples, sample_predictions
from tl_studio.core.transforms import eval_transform, train_transform

EXPORT_CHECK_IMAGES = 8


class RunData:
    def __init__(self, scan, config: TrainConfig, spec, device, mp_context=None, strategy=None):
        from tl_studio.core.strategy import SingleProcess

        self.scan = scan
        self.strategy = strategy or SingleProcess()
        self.config = config
        self.spec = spec
        self.device = device
        self.mp_context = mp_context
        self.classes = tuple(scan.classes)
        self.train_records = list(scan.split("train"))
        self.val_records = list(scan.split("val"))
        self._check_splits()
        self.batch_size = config.batch_size
        # feature extraction and validation (config.INFERENCE_BATCH; halved after running out of memory)
        self.inference_batch_size = max(config.batch_size, INFERENCE_BATCH)
        counts = [sum(1 for r in self.train_records if r.label == i) for i in range(len(self.classes))]
        self.class_weights = class_weights(counts, config.class_weighting)
        self.decodes_on_gpu = decodes_on_gpu(device, config.decode, config.augment)
        self.notes = self._notes(counts)
        self.sample_indices = pick_samples(self.val_records, len(self.classes), seed=config.seed)
        self.thumbnails = [make_thumbnail(str(self.val_records[i].path)) for i in self.sample_indices]
        self._loaders: dict = {}

    def _check_splits(self) -> None:
        if len(self.classes) < 2:
            raise DatasetError("Training needs at least two classes with images; add another class folder.")
        if not self.train_records and self.scan.presplit:  # no validation fraction to lower: its folders split it
            raise DatasetError("The training folder holds no images; add each class's images to a folder of the "
                               "class's name inside it, as in the validation folder.")
        if not self.train_records:
            raise DatasetError("The training split is empty; add images or lower the validation fraction.")
        if not self.val_records:
            raise DatasetError("The validation split is empty; add images or raise the validation fraction.")
        missing = [name for i, name in enumerate(self.classes) if not any(r.label == i for r in self.train_records)]
        if missing and self.scan.presplit:
            # the class is only in val or test folders (only test/fish): say which, and what to do there
            where = {name: ", ".join(sorted({"/".join(self.scan.relative(r.path).split("/")[:2])
                                             for r in self.scan.records if self.classes[r.label] == name}))
                     for name in missing}
            raise DatasetError("; ".join(f"No training images for class {name} (only in {where[name]}): add a {name} "
                                         f"folder of images to the training folder, or remove {where[name]}"
                                         for name in missing) + ".")
        if missing:
            raise DatasetError(f"No training images for class {', '.join(missing)}; add some or remove the folder.")

    def _notes(self, counts: list[int]) -> list[str]:
        problems = problems_sentence(self.scan.problems)
        return ([problems] if problems else []) + self._weighting_notes(counts) + self._decoding_notes()

    def _decoding_notes(self) -> list[str]:
        if self.config.decode != "gpu" or self.decodes_on_gpu:
            return []
        if not self.device.is_cuda:
            return ["Decoding on the GPU needs an NVIDIA GPU (CUDA); this run's images are decoded by its loader "
                    "processes."]
        return ["The augmentation preset none is applied by the loader processes, so they decode its images; "
                "pick another preset to decode on the GPU."]

    def _weighting_notes(self, counts: list[int]) -> list[str]:
        from tl_studio.core.class_weighting import plan_weighting

        return plan_weighting(counts, self.config.class_weighting).sentences(self.classes)

    def class_weights_on(self, device):
        return None if self.class_weights is None else self.class_weights.to(device)

    def records_of(self, split: str) -> list:
        return self.val_records if split == "val" else self.train_records

    def steps_per_epoch(self) -> int:
        """Batches of one training pass over the images, in this process (its share of them)."""
        n, b = self._train_share(), self.process_batch_size
        if self.strategy.distributed:
            return self.strategy.train_batches(len(self.train_records), b).num_batches
        return max(1, n // b if self._drop_last() else -(-n // b))

    @property
    def process_batch_size(self) -> int:
        """This process's part of the batch (``batch_size`` is the global batch over all processes)."""
        return self.strategy.per_process_batch(self.batch_size)

    @property
    def process_inference_batch_size(self) -> int:
        return self.strategy.per_process_batch(self.inference_batch_size)

    def _train_share(self) -> int:
        world = self.strategy.world_size
        return -(-len(self.train_records) // world)  # the largest share

    def _drop_last(self) -> bool:
        # A last batch of one image breaks BatchNorm in training mode; drop it (it is reshuffled next epoch).
        n = self._train_share()
        return n % self.process_batch_size == 1 and n > 1

    def inference_batches(self, split: str) -> tuple[int, int]:
        """(batches in this process's inference pass over ``split``, batches every process has)."""
        count, b = len(self.records_of(split)), self.process_inference_batch_size
        share = self.strategy.inference_share(count)
        mine = -(-(count if share is None else len(share)) // b)
        return mine, self.strategy.common_batches(count, b)

    # ---- loaders, created on first use and kept (persistent workers) -------------------------------
    def _loader(self, key: str, records: list, transform, shuffle: bool, cache_mb: int = 0,
                batch_size: int | None = None, for_gpu_decoding: bool = False):
        """Training: shuffled (across processes: a shard of each epoch's shuffle); inference passes: this
        process's share of the images, in order. Batch indices are always positions in ``records``."""
        if key not in self._loaders:
            dataset = ImageDataset(records, transform, cache_bytes=image_cache_bytes(cache_mb, self.config.workers),
                                   for_gpu_decoding=for_gpu_decoding)
            batch_size = batch_size or self.process_batch_size
            self._loaders[key] = make_loader(
                dataset, batch_size=batch_size, shuffle=shuffle, workers=self.config.workers,
                seed=self.config.seed, pin_memory=self.device.pin_memory,
                drop_last=shuffle and self._drop_last(), mp_context=self.mp_context,
                sampler=None if shuffle else self.strategy.inference_share(len(records)),
                batch_sampler=(self.strategy.train_batches(len(records), batch_size, self.config.seed * 1000)
                               if shuffle else None))
        return self._loaders[key]

    def train_loader(self):
        """With decoding on the GPU the loaders read the JPEGs' bytes (no decoded-image cache: they decode
        only what the GPU cannot) and hand the other images over as 8-bit pixels, like the decoded ones."""
        gpu = self.decodes_on_gpu
        transform = train_transform(self.config.augment, self.spec,
                                    normalise_in_loader=not (gpu or normalises_on_device(self.device)))
        return self._loader("train", self.train_records, transform, True, 0 if gpu else self.config.image_cache_mb,
                            for_gpu_decoding=gpu)

    def val_loader(self):
        return self._loader("val", self.val_records, eval_transform(self.spec), False,
                            batch_size=self.process_inference_batch_size)

    def feature_loader(self, records: list, batch_size: int):
        """A one-off loader over ``records`` (already this process's share) through the evaluation
        preprocessing: the feature cache's input. Batch indices are positions in ``records``. Close it
        with ``close_loader``."""
        workers = min(self.config.workers, -(-len(records) // batch_size))  # no idle worker start-ups
        return make_loader(ImageDataset(records, eval_transform(self.spec)), batch_size=batch_size, shuffle=False,
                           workers=workers, seed=self.config.seed, pin_memory=self.device.pin_memory,
                           mp_context=self.mp_context)

    @staticmethod
    def close_loader(loader) -> None:
        _shut_down_workers(loader)

    def set_batch_size(self, batch_size: int) -> None:
        self.batch_size = max(1, batch_size)
        self.close()

    def set_inference_batch_size(self, batch_size: int) -> None:
        self.inference_batch_size = max(1, batch_size)
        self.close()

    def close(self) -> None:
        """Ends every loader's worker processes now (not whenever the garbage collector gets to them):
        none may outlive the run, however it ends."""
        for loader in self._loaders.values():
            _shut_down_workers(loader)
        self._loaders.clear()

    # ---- what the user sees ------------------------------------------------------------------------
    def sample_predictions(self, epoch: int, probabilities: dict):
        return sample_predictions(epoch, self.classes, self.val_records, self.sample_indices, self.thumbnails,
                                  probabilities)

    def check_images(self) -> list[torch.Tensor]:
        """A few validation images at their own sizes, for the model file's export check."""
        from tl_studio.core.samples import load_check_images

        return load_check_images([self.val_records[i].path for i in self.sample_indices], EXPORT_CHECK_IMAGES)


def _shut_down_workers(loader) -> None:
    """A DataLoader with persistent workers keeps them in its iterator until that is collected."""
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
