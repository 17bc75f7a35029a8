"""Decoding a run's images on the second core while the process is still importing PyTorch.

A ``tl-studio train`` process spends its first seconds importing torch, torchvision and torch._dynamo
(about 3 s here, one core busy, the other idle); then the first epoch of a frozen-backbone run decodes
every image in its loader workers while the backbone computes the features of the ones before, both
cores busy. A ``ReadAhead`` started before the imports scans the folder as the run will (the same
``scan_dataset`` call, which needs no torch) and decodes the images in the order the run will ask for
them (training split, then validation) on a thread: Pillow decodes with the GIL released, so the
thread runs beside the imports. While it runs the interpreter's switch interval is shortened, so the
thread gets the GIL back quickly between the Python steps of each image (with the default 5 ms,
ants/bees decoded 300 of its 398 images during the imports, with 0.5 ms all of them).

The run then hands the scan to the trainer and its loaders take each decoded image instead of
decoding the file again (``take``, called by ``dataset.ImageDataset``): the same ``images.load_rgb``
call with the same arguments made it, so the pixels are the ones the loader would have made. An image
is only taken if its file still has the size, modification time and inode it had when it was decoded.

Before decoding, the thread reads every file's digest (feature_layout.file_digest, what the feature
store looks images up by) and skips the images whose features the store already holds for this model:
a second run on the same folder reads its features back and never needs their pixels (decoding them
anyway took the idle core from a second run's imports and after them both cores: phone photos' second
run 10.7 -> 7.7 s, docs/training.md). The run's store lookup takes these digests instead of reading
the files again, for each file that still has the size, modification time and inode it had when it was
read; a lookup that starts while the thread is still reading digests (a folder of many gigabytes) stops
it and reads the rest itself, so no file is read twice.

The thread stops before any fork (loader workers are forked: a thread inside Pillow at that moment
would leave the child a lock it cannot take); forked workers inherit the decoded images (copy on write,
the pixel memory is never written). ``end`` drops what is left; the trainer's first epoch is over by
then. Only a single-process run on a platform whose loader workers fork uses it (pickling the images
to spawned workers would cost more than decoding them).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import threading

from tl_studio.core.feature_layout import entry_path, file_digest, key_folders_of
from tl_studio.core.images import ImageLoadError, load_rgb

log = logging.getLogger(__name__)

BUDGET_BYTES = 384 << 20  # about 700 phone photos or ants/bees images at the size their preprocessing needs
SWITCH_INTERVAL = 0.0005  # seconds; see the module's docstring


def _identity(path: str) -> tuple[int, int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_size, status.st_mtime_ns, status.st_ino


class ReadAhead:
    """Scans ``config``'s folder like the run and decodes its images at ``min_side`` on one thread."""

    def __init__(self, config, min_side: int | None, budget_bytes: int = BUDGET_BYTES):
        self.config = config
        self.min_side = min_side
        self.budget_bytes = budget_bytes
        self.decoded: dict[str, tuple[tuple[int, int, int], object]] = {}
        self.digests: dict[str, tuple[tuple[int, int, int], str]] = {}
        self.bytes = 0
        self.scan = None  # the folder's DatasetScan, once the thread has made it (None if it failed)
        self._scanned = threading.Event()
        self._stop = threading.Event()
        self._hashed = threading.Event()  # every file's digest read (or the thread stopped before)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="tl-studio read-ahead", daemon=True)
        self._previous_interval: float | None = None

    def start(self) -> "ReadAhead":
        self._previous_interval = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL)
        self._thread.start()
        return self

    def scanned(self, timeout: float | None = None):
        """The scan the thread made, waiting for it; None when it failed (the run scans again and says why)."""
        self._scanned.wait(timeout)
        return self.scan

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> None:
        """Until every image is decoded (or the budget is spent, or it was stopped)."""
        self._thread.join(timeout)

    def stop(self) -> None:
        """Ends the thread after the image it is decoding (at most a few tens of ms); keeps what it decoded."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        self._restore_interval()

    def take(self, path: str, min_side: int | None):
        """The image decoded from ``path`` at ``min_side`` if there is one and the file has not changed
        since; each image is handed out once."""
        if min_side != self.min_side:
            return None
        with self._lock:
            entry = self.decoded.pop(path, None)
        if entry is None:
            if self.running:  # a loader in this process has caught up with the thread: it decodes the rest
                self.stop()
            return None
        return entry[1] if entry[0] == _identity(path) else None

    def known_digest(self, path: str) -> str | None:
        """The digest of ``path``'s bytes the thread read, if the file has not changed since."""
        with self._lock:
            entry = self.digests.get(path)
        if entry is None:
            if self.running and not self._hashed.is_set():
                self.stop()  # the store's lookup has caught up with the thread: it reads the rest itself
            return None
        return entry[1] if entry[0] == _identity(path) else None

    def close(self) -> None:
        """Stops the thread and drops every image and digest it still holds."""
        self.stop()
        with self._lock:
            self.decoded.clear()
            self.digests.clear()

    def _run(self) -> None:
        from tl_studio.core.data import scan_for  # imported here, in the thread, beside the command's imports

        try:
            self.scan = scan_for(self.config)
        except Exception as error:  # noqa: BLE001 - the run scans again and reports it in its own words
            log.debug("read-ahead scan failed: %s", error)
        finally:
            self._scanned.set()
        try:
            if self.scan is not None:
                records = (*self.scan.split("train"), *self.scan.split("val"))
                self._decode(self._features_not_stored(records))
        finally:
            self._restore_interval()

    def _features_not_stored(self, records) -> list:
        """``records`` less those whose features the store holds for this model, each file's digest
        kept for the run's lookup. Which of the model's key folders the run opens is not known before
        torch is imported: an image found in another one is left to the loader to decode."""
        folders = key_folders_of(self.config.model)
        left = []
        try:
            for record in records:
                if self._stop.is_set():
                    break
                path = str(record.path)
                identity, digest = _identity(path), file_digest(path)
                if identity is None or digest is None:
                    left.append(record)  # unreadable: the loader meets it and records why
                    continue
                with self._lock:
                    self.digests[path] = (identity, digest)
                if not any(entry_path(folder, digest).is_file() for folder in folders):
                    left.append(record)
        finally:
            self._hashed.set()
        return left

    def _decode(self, records) -> None:
        for record in records:
            if self._stop.is_set() or self.bytes >= self.budget_bytes:
                return
            path = str(record.path)
            identity = _identity(path)
            try:
                image = load_rgb(path, min_side=self.min_side)
            except ImageLoadError:
                continue  # the loader meets it again and records the failure with its reason
            with self._lock:
                self.decoded[path] = (identity, image)
            self.bytes += image.width * image.height * len(image.getbands())

    def _restore_interval(self) -> None:
        with self._lock:
            previous, self._previous_interval = self._previous_interval, None
        if previous is not None:
            sys.setswitchinterval(previous)


_active: ReadAhead | None = None


def begin(config) -> ReadAhead | None:
    """Starts reading ahead for a run of ``config`` in this process, or returns None where it would not
    help: a run that does not start by computing a frozen backbone's features (then the images are
    decoded at another size, every epoch) or loader workers that would not inherit the images."""
    global _active
    from tl_studio.core.catalog import cached_model_info, resize_side
    from tl_studio.core.config import plan_phases, uses_feature_cache

    if not (config.data_dir and uses_feature_cache(config, plan_phases(config)[0])):
        return None
    start_method = multiprocessing.get_start_method(allow_none=True) or multiprocessing.get_all_start_methods()[0]
    if (config.workers is None or config.workers > 0) and start_method != "fork":  # None: workers (device.py)
        return None
    info = cached_model_info(config.model)
    # Without the catalogue file (the first run in a cache folder builds it), the ImageNet preset most
    # models share, a 224 crop of a 256 side; a wrong guess costs only the idle core's work: take()
    # hands out nothing decoded at another side.
    side = resize_side(info, config.img_size) if info else round((config.img_size or 224) * 256 / 224)
    end()
    _active = ReadAhead(config, side).start()
    return _active


def take(path: str, min_side: int | None):
    """The image the active read-ahead decoded from ``path`` at ``min_side``, or None."""
    active = _active
    return None if active is None else active.take(path, min_side)


def known_digest(path: str) -> str | None:
    """The digest of ``path``'s bytes the active read-ahead read, if the file has not changed since."""
    active = _active
    return None if active is None else active.known_digest(path)


def end() -> None:
    """Stops the active read-ahead and drops the images it still holds."""
    global _active
    active, _active = _active, None
    if active is not None:
        active.close()


def _stop_before_fork() -> None:
    if _active is not None:
        _active.stop()


os.register_at_fork(before=_stop_before_fork)
