"""Datasets: scanning a folder of labelled images into classes, records and a train/val/test split.

A dataset is a folder with one sub-folder per class (images may sit in nested folders inside a class
folder), or a folder already split into ``train/``, ``val/`` (``valid/``, ``validation/``) and optionally
``test/``, each holding the class folders. The scan never fails on a bad file: every file it cannot use,
and everything else a user should know (empty or tiny classes, duplicates across splits...), becomes a
:class:`Problem` with a one-sentence reason. It only raises :class:`DatasetError` when there is no
usable dataset at all.

The scan is a header-level check (see ``images.check_image``) so that it takes seconds on tens of
thousands of files; :func:`verify_images` does the full decode later, in the background.
This module imports neither torch nor numpy: ``tl-studio scan`` must start fast.
"""

from __future__ import annotations

import errno
import hashlib
import math
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from tl_studio.core.errors import Cancelled, DatasetError, UserError
from tl_studio.core.images import (
    DEFAULT_MAX_PIXELS,
    ImageInfo,
    ImageLoadError,
    check_image,
    file_digest,
    load_rgb,
    sniff_format,
)
from tl_studio.core.wording import counted

SPLITS = ("train", "val", "test")
_SPLIT_WORDS = {"val": "validation", "test": "test"}
# Folder names (compared case-insensitively) that mark a pre-split dataset, and the split each means.
# A side shorter than this (CIFAR's 32 px is not) is blown up to the model's input, 224 px or more: a
# thumbnail or an icon that slipped into the folder. Said, and kept.
TINY_IMAGE_SIDE = 32
SPLIT_FOLDER_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
# Files and folders that operating systems and tools leave behind; never data, never worth a word.
IGNORED_NAMES = frozenset(("thumbs.db", "ehthumbs.db", "desktop.ini", "__macosx", "icon\r", "@eadir",
                           "$recycle.bin", "system volume information"))

# Where the Evaluate step moves images the user excludes (never deleted); not a class.
EXCLUDED_FOLDER = "_excluded"
HOLD_POLL_SECONDS = 0.05  # how often a held full decode check looks whether it may go on

ProgressCallback = Callable[[int, "int | None"], None]
CancelCallback = Callable[[], bool]


@dataclass(frozen=True)
class ImageRecord:
    path: Path  # absolute
    label: int  # index into DatasetScan.classes
    split: str  # one of SPLITS


@dataclass(frozen=True)
class Problem:
    path: str  # relative to the dataset folder, posix style; "." for the folder itself
    reason: str  # one sentence a user understands
    kind: str = "other"  # short code for grouping: not_image, truncated, duplicate, small_class...


@dataclass(frozen=True)
class DatasetScan:
    root: Path
    classes: tuple[str, ...]  # sorted; only classes with usable images
    records: tuple[ImageRecord, ...]
    problems: tuple[Problem, ...]
    presplit: bool
    val_fraction: float
    test_fraction: float
    seed: int
    max_pixels: int | None = DEFAULT_MAX_PIXELS

    def split(self, name: str) -> tuple[ImageRecord, ...]:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")
        return tuple(record for record in self.records if record.split == name)

    def counts(self) -> dict[str, dict[str, int]]:
        """split -> class -> number of images, every split and class present (zeros included)."""
        counts = {split: dict.fromkeys(self.classes, 0) for split in SPLITS}
        for record in self.records:
            counts[record.split][self.classes[record.label]] += 1
        return counts

    def class_counts(self) -> dict[str, int]:
        totals = dict.fromkeys(self.classes, 0)
        for record in self.records:
            totals[self.classes[record.label]] += 1
        return totals

    def imbalance_ratio(self) -> float:
        """Largest over smallest class in the train split (inf when a class has no training image)."""
        train_counts = self.counts()["train"].values()
        smallest, largest = min(train_counts, default=0), max(train_counts, default=0)
        return largest / smallest if smallest else math.inf

    def uneven_split(self) -> str | None:
        """One sentence when the split made here gave a class a validation or test share far from the one
        asked, else None. Each image's split comes from its own file (so fixing one label moves no other
        image), which leaves a small class within about the square root of its size of its share: 20
        images at 30 % can give 4 or 10. Far: off by at least half the share and by 3 images or more.
        Another seed draws another split."""
        if self.presplit:
            return None
        counts = self.counts()
        for split, fraction in (("val", self.val_fraction), ("test", self.test_fraction)):
            for name in self.classes:
                size = sum(counts[s][name] for s in SPLITS)
                wanted, got = size * fraction, counts[split][name]
                if abs(got - wanted) >= max(3.0, wanted / 2):
                    return (f"The split gave {name} {got} of its {size} images for {_SPLIT_WORDS[split]} where "
                            f"{fraction:.0%} is about {wanted:.0f}: each image's split comes from its file, so a "
                            f"small class can land far from the share. Another seed gives another split.")
        return None

    def relative(self, path: Path | str) -> str:
        """A path as problems name it: relative to the dataset folder, posix style."""
        try:
            return Path(path).relative_to(self.root).as_posix() or "."
        except ValueError:
            return Path(path).as_posix()

    def with_problems(self, problems: Iterable[Problem]) -> DatasetScan:
        """A copy with these problems added and their files left out of the records (for instance the
        result of verify_images). Classes and labels stay as they are."""
        problems = tuple(problems)
        broken = {problem.path for problem in problems}
        records = tuple(record for record in self.records if self.relative(record.path) not in broken)
        return replace(self, records=records, problems=self.problems + problems)

    def to_dict(self) -> dict:
        """The JSON object of ``tl-studio scan --json``."""
        counts, totals = self.counts(), self.class_counts()
        ratio = self.imbalance_ratio()
        return {
            "root": str(self.root),
            "presplit": self.presplit,
            "num_images": len(self.records),
            "classes": [{"name": name, "label": label, "count": totals[name]}
                        for label, name in enumerate(self.classes)],
            "splits": counts,
            "imbalance_ratio": None if math.isinf(ratio) else round(ratio, 3),
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
            "seed": self.seed,
            "max_pixels": self.max_pixels,
            "problems": [{"path": p.path, "reason": p.reason, "kind": p.kind} for p in self.problems],
        }


def scan_dataset(root: Path | str, *, val_fraction: float = 0.2, test_fraction: float = 0.0, seed: int = 0,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, progress: ProgressCallback | None = None,
                 cancel: CancelCallback | None = None, min_classes: int = 2) -> DatasetScan:
    """Scan a dataset folder: find its classes and images, check every file at header level, find
    duplicates, and split it (respecting an existing train/val/test split).

    ``progress(done, total)`` is called now and then (total is None while files are being listed);
    ``cancel()`` returning True stops the scan with Cancelled. Raises DatasetError when the folder is
    missing or has fewer than ``min_classes`` usable classes (two to train on; one to evaluate a model
    on new images of one class), UserError for invalid fractions."""
    _check_options(val_fraction, test_fraction, max_pixels)
    root_path = dataset_root(root)
    scanner = _Scanner(root_path, max_pixels, _Ticker(progress, cancel))
    layout = scanner.find_layout()
    candidates = scanner.list_candidates(layout)
    checked = scanner.check_all(candidates)
    duplicates = _duplicate_groups(checked, scanner.ticker)
    classes = sorted({item.class_name for item in checked})
    scanner.report_classes(layout, candidates, checked)
    if len(classes) < min_classes:
        raise _too_few_classes(root_path, classes, layout, min_classes, scanner.problems)
    # A pre-split dataset keeps its folders' split; only a missing val folder is drawn from train.
    splitter = _Splitter(val_fraction, 0.0 if layout.presplit else test_fraction, seed)
    val_from_train = layout.presplit and "val" not in layout.present_splits
    splits = splitter.assign(checked, duplicates, val_from_train=val_from_train)
    scanner.report_duplicates(duplicates, splits)
    return DatasetScan(root=root_path, classes=tuple(classes), records=_records(checked, splits, classes),
                       problems=_sorted_by_path(scanner.problems), presplit=layout.presplit,
                       val_fraction=val_fraction, test_fraction=test_fraction, seed=seed, max_pixels=max_pixels)


def scan_for(config) -> DatasetScan:
    """The scan of a TrainConfig's folder with its split settings: what a run, the advisor, the LR finder
    and the read-ahead of ``train`` (read_ahead.py) all scan."""
    if not config.data_dir:
        raise UserError("No dataset folder given; choose a folder with one sub-folder per class.")
    return scan_dataset(config.data_dir, val_fraction=config.val_fraction, test_fraction=config.test_fraction,
                        seed=config.seed)


def _sorted_by_path(problems: list[Problem]) -> tuple[Problem, ...]:
    return tuple(sorted(problems, key=lambda problem: problem.path))  # stable: a file's own order kept


def verify_images(scan: DatasetScan, progress: ProgressCallback | None = None,
                  cancel: CancelCallback | None = None, workers: int | None = None,
                  hold: threading.Event | None = None) -> list[Problem]:
    """Decode every image of a scan fully (as training will) and return the problems the header-level
    scan could not see. Decoding runs in a few threads (Pillow releases the GIL while decoding).

    While ``hold`` is set the decoding threads wait between images: the check is a background nicety
    and must not compete with training for the CPU and the GIL (on two cores it stalled the window).
    """
    ticker = _Ticker(progress, cancel)
    records, total = scan.records, len(scan.records)
    problems = []

    def check(record: ImageRecord) -> ImageLoadError | None:
        while hold is not None and hold.is_set():
            if cancel is not None and cancel():
                return None  # the loop below raises Cancelled at its next step
            time.sleep(HOLD_POLL_SECONDS)
        return _decode_failure(record.path, scan.max_pixels)

    executor = ThreadPoolExecutor(max_workers=workers or min(4, os.cpu_count() or 1))
    try:
        failures = executor.map(check, records)
        for done, (record, failure) in enumerate(zip(records, failures, strict=True), start=1):
            if failure is not None:
                problems.append(Problem(scan.relative(record.path), failure.reason, failure.kind))
            ticker.step(done, total)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
    ticker.finish(total, total)
    return problems


def _decode_failure(path: Path, max_pixels: int | None) -> ImageLoadError | None:
    try:
        load_rgb(path, max_pixels)
    except ImageLoadError as error:
        return error
    return None


# ---------------------------------------------------------------- options and root

def _check_options(val_fraction: float, test_fraction: float, max_pixels: int | None) -> None:
    if not 0 < val_fraction < 1:
        raise UserError(f"The validation fraction must be above 0 and below 1 (e.g. 0.2), not {val_fraction}.")
    if not 0 <= test_fraction < 1:
        raise UserError(f"The test fraction must be at least 0 and below 1, not {test_fraction}.")
    if val_fraction + test_fraction >= 1:
        raise UserError(f"The validation and test fractions add up to {val_fraction + test_fraction:g}; "
                        "they must leave some images for training (a sum below 1).")
    if max_pixels is not None and max_pixels <= 0:
        raise UserError(f"The pixel limit must be a positive number of pixels, not {max_pixels}.")


def dataset_root(root: Path | str) -> Path:
    """``root`` as an absolute path, once it is known to be a folder (else one sentence on what it is)."""
    path = Path(os.path.abspath(os.path.expanduser(os.fspath(root))))
    if not path.exists():
        raise DatasetError(f"{path} does not exist; give the folder that holds one sub-folder per class.")
    if not path.is_dir():
        raise DatasetError(f"{path} is a file, not a folder; give the folder that holds one sub-folder "
                           "per class.")
    try:
        with os.scandir(path):
            pass
    except OSError as error:  # without this, "no usable class: put each class in its own sub-folder"
        reason = "permission denied" if isinstance(error, PermissionError) else error.strerror or error
        raise DatasetError(f"{path} cannot be read ({reason}); give yourself permission to read it, or "
                           "choose a copy of it.") from None
    return path


def _too_few_classes(root: Path, classes: list[str], layout: _Layout, needed: int = 2,
                     problems: list[Problem] = ()) -> DatasetError:
    found = f"only one usable class ({classes[0]})" if classes else "no usable class"
    hint = "put the images of each class in their own sub-folder, e.g. cats/ and dogs/"
    refused = [problem for problem in problems if (root / problem.path).is_file()]
    if refused and not classes and all(problem.kind == "outside_class" for problem in refused):
        # images and no class folder: the folder of one class given for the dataset ("none of the 124 files in
        # its class folders could be used (…: Not inside a class folder …)" said two contrary things)
        lie = "lies" if len(refused) == 1 else "lie"
        hint = (f"its {counted(len(refused), 'image')} {lie} in it, not in class folders; if it is one class's "
                f"folder, give the folder above it ({root.parent}), else put each class in a sub-folder of its own")
    elif refused and not classes:
        # the class folders are there but every file was refused (all over --max-pixels, say): the
        # reason, not advice on folders that are already right
        first = refused[0]
        reason = first.reason.rstrip(".")
        # files beside the class folders count for nothing here: "its only file" stood for a folder of two
        hint = (f"the one file in its class folders, {first.path}, could not be used ({reason})" if len(refused) == 1
                else f"none of the {len(refused)} files in its class folders could be used (the first, {first.path}: "
                     f"{reason})")
    elif classes and (others := [problem for problem in refused if classes[0] not in Path(problem.path).parts]):
        # the other class folders are there, their files refused (over --max-pixels, say): that is why
        first = others[0]
        hint = (f"the files of the other class folders could not be used ({counted(len(others), 'file')}; the "
                f"first, {first.path}: {first.reason.rstrip('.')})")
    elif classes and len(layout.subfolder_names) == 1 and not layout.presplit:
        only = layout.subfolder_names[0]
        hint = f"if the class folders are inside {only}/, give {root / only} instead"
    if needed == 1:
        return DatasetError(f"{root} has {found}: {hint}.")
    return DatasetError(f"{root} has {found}, and a dataset needs at least two: {hint}.")


# ---------------------------------------------------------------- progress and cancel

class _Ticker:
    """Checks ``cancel`` at every step and calls ``progress`` at most every ``interval`` seconds, so that
    a GUI listening to it is never flooded."""

    def __init__(self, progress: ProgressCallback | None, cancel: CancelCallback | None,
                 interval: float = 0.1):
        self._progress, self._cancel, self._interval = progress, cancel, interval
        self._last_report = -math.inf

    def check_cancel(self) -> None:
        if self._cancel is not None and self._cancel():
            raise Cancelled("The scan was cancelled.")

    def step(self, done: int, total: int | None) -> None:
        self.check_cancel()
        if self._progress is not None:
            now = time.monotonic()
            if now - self._last_report >= self._interval:
                self._last_report = now
                self._progress(done, total)

    def finish(self, done: int, total: int | None) -> None:
        if self._progress is not None:
            self._progress(done, total)


# ---------------------------------------------------------------- finding and checking files

@dataclass(frozen=True)
class _ClassFolder:
    path: str  # absolute
    class_name: str
    split: str | None  # the split of the folder it is in, for pre-split datasets


@dataclass
class _Layout:
    presplit: bool
    class_folders: list[_ClassFolder]
    subfolder_names: list[str]  # the visible sub-folders of the root, for error messages
    present_splits: set[str] = field(default_factory=set)
    split_folders: dict[str, str] = field(default_factory=dict)  # split -> its folder (pre-split only)


@dataclass(slots=True)
class _Candidate:
    """A file inside a class folder, before it is checked."""
    path: str  # absolute
    relative: str  # posix, relative to the root
    class_name: str
    split: str | None


@dataclass(slots=True)
class _Checked:
    """A usable image: a candidate that passed the header-level check."""
    path: str
    relative: str
    class_name: str
    split: str | None
    info: ImageInfo


def is_ignored_name(name: str) -> bool:
    """Hidden and system files and folders, which the scan skips without a word."""
    return name.startswith(".") or name.casefold() in IGNORED_NAMES


def _is_dots_only(name: str) -> bool:
    return bool(name) and set(name) == {"."}


def class_name_problem(name: str) -> str | None:
    """Why a folder name cannot be a class name (one sentence), or None when it can. Such a folder is
    reported by the scan rather than skipped without a word: its name would mean another folder
    ("...", which some systems read as two levels up), vanish on Windows (trailing dots and spaces)
    or garble the terminal and every file the app writes (control characters)."""
    if _is_dots_only(name) or not name.strip():
        return (f"Folder '{name}' cannot be a class: its name is only dots or spaces, so its images were "
                "skipped; rename it to the name of the class")
    if any(ord(character) < 32 or ord(character) == 127 for character in name):
        return ("Folder name holds control characters, so it cannot be a class and its images were "
                "skipped; rename it to the name of the class")
    if name[-1] in ". ":
        return (f"Folder '{name}' cannot be a class: Windows drops the dot or space at the end of a "
                "folder name, so the class would not survive a copy; rename it")
    return None


class _Scanner:
    """One scan's state: the root, the problems found so far and the progress ticker."""

    def __init__(self, root: Path, max_pixels: int | None, ticker: _Ticker):
        self.root, self.max_pixels, self.ticker = root, max_pixels, ticker
        self._prefix_length = len(os.path.join(str(root), ""))
        self.problems: list[Problem] = []
        self._visited_folders: set[tuple[int, int]] = set()

    def relative(self, path: str) -> str:
        relative = path[self._prefix_length:]
        return (relative.replace(os.sep, "/") if os.sep != "/" else relative) or "."

    def report(self, path: str, reason: str, kind: str) -> None:
        self.problems.append(Problem(self.relative(path), reason, kind))

    def find_layout(self) -> _Layout:
        """Decide between one folder per class and a pre-split train/val/test layout."""
        self._first_visit(str(self.root))
        subfolders = self._subfolders(str(self.root))
        by_split = {name: SPLIT_FOLDER_NAMES.get(name.casefold()) for name in subfolders}
        present = {split for split in by_split.values() if split}
        split_folders = {split: subfolders[name] for name, split in by_split.items() if split}
        # classes named "train" and "test" (vehicles: train, plane, ...) hold images, not class folders
        if "train" in present and self._holds_files_only(split_folders["train"]):
            present = set()
        if "train" not in present or not present & {"val", "test"}:
            folders = [_ClassFolder(path, name, None) for name, path in subfolders.items()]
            return _Layout(False, folders, sorted(subfolders))
        class_folders = []
        for name, path in subfolders.items():
            if by_split[name] is None:
                self.report(path, "Not a split folder (train, val or test) in a pre-split dataset, so it "
                            "was ignored", "ignored_folder")
                continue
            class_folders += [_ClassFolder(class_path, class_name, by_split[name])
                              for class_name, class_path in self._subfolders(path).items()]
        return _Layout(True, class_folders, sorted(subfolders), present, split_folders)

    @staticmethod
    def _holds_files_only(folder: str) -> bool:
        """Files and no folder (an empty train/ is still a split folder, reported as such)."""
        try:
            with os.scandir(folder) as entries:
                kinds = {entry.is_dir() for entry in entries if not is_ignored_name(entry.name)}
        except OSError:
            return False  # said when the folder is read as a split folder
        return kinds == {False}

    def _subfolders(self, folder: str) -> dict[str, str]:
        """Visible sub-folders by name; images lying directly in ``folder`` are reported as unlabelled,
        and folders whose name cannot be a class name are reported and left out."""
        subfolders = {}
        for entry in self._visible_entries(folder, keep=_is_dots_only):
            kind = self._kind(entry)
            if kind == "dir" and entry.name == EXCLUDED_FOLDER:
                continue  # images the user set aside from the Evaluate step: not a class
            if kind == "dir" and (reason := class_name_problem(entry.name)):
                self.report(entry.path, reason, "bad_class_name")
            elif kind == "dir" and self._first_visit(entry.path):
                subfolders[entry.name] = entry.path
            elif kind == "file" and (_starts_like_an_image(entry.path) or _named_like_an_image(entry.path)):
                self.report(entry.path, "Not inside a class folder, so it has no label and was ignored "
                            "(move it into the folder of its class)", "outside_class")
        return dict(sorted(subfolders.items()))

    def _kind(self, entry: os.DirEntry) -> str:
        """"file", "dir", or "other" for an entry; a link that leads nowhere (broken, or a loop of
        links) is reported as a problem and is "other"."""
        try:
            if entry.is_file():
                return "file"
            if entry.is_dir():
                return "dir"
        except OSError as error:  # ELOOP: x1.jpg -> x2.jpg -> x1.jpg; is_file() only hides ENOENT
            if error.errno == errno.ELOOP:
                reason = ("Link loop: this link leads back to itself through other links and never to a "
                          "file, so it was skipped; remove it or point it at a real file")
            else:
                reason = f"Cannot be read ({error.strerror or error}), so it was skipped"
            self.report(entry.path, reason, "unreadable")
            return "other"
        if entry.is_symlink():
            self.report(entry.path, "Broken link: it points to a file that does not exist", "unreadable")
        return "other"

    def _visible_entries(self, folder: str, keep: Callable[[str], bool] = lambda name: False) -> list[os.DirEntry]:
        """The entries of ``folder`` less hidden and system ones (unless ``keep`` says otherwise)."""
        try:
            with os.scandir(folder) as entries:
                return [entry for entry in entries if keep(entry.name) or not is_ignored_name(entry.name)]
        except OSError as error:
            reason = "permission denied" if isinstance(error, PermissionError) else error.strerror or error
            self.report(folder, f"Folder cannot be read ({reason}), so its images were skipped", "unreadable")
            return []

    def _first_visit(self, folder: str) -> bool:
        """True the first time a real folder is reached, however many links lead to it: symbolic
        links that loop back to a parent must not make the scan go round for ever."""
        try:
            status = os.stat(folder)
        except OSError:
            return False
        identity = (status.st_dev, status.st_ino)
        if identity in self._visited_folders:
            return False
        self._visited_folders.add(identity)
        return True

    def list_candidates(self, layout: _Layout) -> list[_Candidate]:
        candidates: list[_Candidate] = []
        for folder in layout.class_folders:
            for path in self._files_under(folder.path):
                candidates.append(_Candidate(path, self.relative(path), folder.class_name, folder.split))
                self.ticker.step(len(candidates), None)
        return candidates

    def _files_under(self, folder: str) -> Iterator[str]:
        """Every visible file under ``folder`` at any depth, following links to files and to folders
        not seen before."""
        pending = [folder]
        while pending:
            for entry in self._visible_entries(pending.pop()):
                kind = self._kind(entry)
                if kind == "file":
                    yield entry.path
                elif kind == "dir" and self._first_visit(entry.path):
                    pending.append(entry.path)

    def check_all(self, candidates: list[_Candidate]) -> list[_Checked]:
        checked = []
        total = len(candidates)
        for done, candidate in enumerate(candidates, start=1):
            try:
                info = check_image(candidate.path, self.max_pixels)
            except ImageLoadError as error:
                self.report(candidate.path, error.reason, error.kind)
            else:
                checked.append(_Checked(candidate.path, candidate.relative, candidate.class_name,
                                        candidate.split, info))
                if min(info.width, info.height) < TINY_IMAGE_SIDE:  # used, but worth a look
                    self.report(candidate.path, f"Very small image ({info.width} x {info.height} px): it is enlarged "
                                "many times to the model's input size, so it shows the model little; it was kept",
                                "tiny_image")
            self.ticker.step(done, total)
        self.ticker.finish(total, total)
        return checked

    def report_classes(self, layout: _Layout, candidates: list[_Candidate], checked: list[_Checked]) -> None:
        """Problems of whole classes: empty folders, classes with no usable or only one image, and
        classes missing from the train or val folder of a pre-split dataset."""
        files_in = _count_by(candidates, lambda c: (c.class_name, c.split))
        files = _count_by(candidates, lambda c: c.class_name)
        usable = _count_by(checked, lambda c: c.class_name)
        usable_in = _count_by(checked, lambda c: (c.class_name, c.split))
        unreadable = {problem.path for problem in self.problems if problem.kind == "unreadable"}
        for folder in layout.class_folders:
            # a folder that could not be read has said so: "it holds no files" would contradict it
            if not files_in[(folder.class_name, folder.split)] and self.relative(folder.path) not in unreadable:
                self.report(folder.path, "Empty class folder: it holds no files", "empty_class")
        for name, path in _first_folder_of_each_class(layout).items():
            if usable[name] == 0 and files[name]:  # each file has its own problem; say what it means
                self.report(path, f"Class '{name}' has no usable images, so it was left out", "empty_class")
            elif usable[name]:
                self._report_class(name, path, usable[name], layout, usable_in)

    def _report_class(self, name: str, path: str, usable: int, layout: _Layout,
                      usable_in: dict[tuple[str, str | None], int]) -> None:
        if usable == 1:
            # a run still trains on it (the Train step and `train` say so): what this costs, and the remedy
            self.report(path, f"Class '{name}' has only 1 usable image: the model learns it from that one photo "
                        "and no image checks it; add more of it (at least one more to validate with)", "small_class")
        # named by the folder that lacks it (val/birds), where the user would put its images
        if layout.presplit and not usable_in[(name, "train")]:
            self.report(os.path.join(layout.split_folders["train"], name), f"Class '{name}' has no images in "
                        "the train folder, so the model cannot learn it", "missing_split")
        if layout.presplit and "val" in layout.present_splits and not usable_in[(name, "val")]:
            self.report(os.path.join(layout.split_folders["val"], name), f"Class '{name}' has no images in the "
                        "validation folder, so its accuracy cannot be measured", "missing_split")

    def report_duplicates(self, groups: list[list[_Checked]], splits: dict[str, str]) -> None:
        """Identical files with two labels, or in two splits (which flatters validation results)."""
        for group in groups:
            first = group[0]
            for other in group[1:]:
                if other.class_name != first.class_name:
                    self.report(other.path, f"Identical to {first.relative} (class '{first.class_name}'): "
                                "the same image has two labels", "duplicate")
                elif splits[other.relative] != splits[first.relative]:
                    self.report(other.path, _cross_split_reason(first.relative, splits[first.relative],
                                                                splits[other.relative]), "duplicate")


def _cross_split_reason(original: str, original_split: str, split: str) -> str:
    held_out = split if split != "train" else original_split
    return (f"Identical to {original}, which is in {original_split}: the same image in two splits makes "
            f"the {held_out} results look better than they are")


def _starts_like_an_image(path: str) -> bool:
    try:
        with open(path, "rb") as file:
            return sniff_format(file.read(32)) is not None
    except OSError:
        return False


def _named_like_an_image(path: str) -> bool:
    """A name Pillow would open as an image (photo.jpg): an empty or damaged one beside the class folders
    was not listed at all, while its readable neighbours were."""
    from PIL import Image

    Image.init()
    suffix = os.path.splitext(path)[1].lower()
    return Image.registered_extensions().get(suffix) in Image.OPEN


def _count_by(items: Iterable, key: Callable) -> defaultdict:
    counts: defaultdict = defaultdict(int)
    for item in items:
        counts[key(item)] += 1
    return counts


def _first_folder_of_each_class(layout: _Layout) -> dict[str, str]:
    """Where to point a problem about a whole class: its folder (its train folder when pre-split)."""
    order = {"train": 0, "val": 1, "test": 2, None: 0}
    folders: dict[str, str] = {}
    for folder in sorted(layout.class_folders, key=lambda f: order[f.split]):
        folders.setdefault(folder.class_name, folder.path)
    return folders


# ---------------------------------------------------------------- duplicates

def _duplicate_groups(checked: list[_Checked], ticker: _Ticker) -> list[list[_Checked]]:
    """Groups of byte-identical files, each sorted by path. Files are grouped by size and by the digest
    the check made while reading them (the whole file if small, a sample if not); only large files
    that still match are read again and hashed whole."""
    candidates: defaultdict[tuple[int, bytes], list[_Checked]] = defaultdict(list)
    for item in checked:
        candidates[(item.info.size_bytes, item.info.digest)].append(item)
    groups = []
    for same_sample in candidates.values():
        if len(same_sample) < 2:
            continue
        if same_sample[0].info.digest_is_whole:
            groups.append(same_sample)
        else:
            groups += _confirmed_duplicates(same_sample, ticker)
    return sorted((sorted(group, key=lambda item: item.relative) for group in groups), key=lambda g: g[0].relative)


def _confirmed_duplicates(same_sample: list[_Checked], ticker: _Ticker) -> list[list[_Checked]]:
    by_digest: defaultdict[bytes | str, list[_Checked]] = defaultdict(list)
    for item in same_sample:
        ticker.check_cancel()  # large files: reading them whole can take a while
        by_digest[_digest_or_path(item.path)].append(item)
    return [group for group in by_digest.values() if len(group) > 1]


def _digest_or_path(path: str) -> bytes | str:
    try:
        return file_digest(path)
    except OSError:
        return path  # unreadable now: a key of its own, so it matches nothing


# ---------------------------------------------------------------- splitting

class _Splitter:
    """The seeded, stratified split, stable per file: the same folder and seed give the same split on
    any machine, and each image's split depends only on its own path (relative to the dataset
    folder), the seed and the fractions. Moving, adding or removing one image therefore leaves every
    other image in the split it was in (a split keyed by position would shift its neighbours).

    Each file's path and the seed hash to a number in [0, 1); the file goes to val below
    ``val_fraction``, to test below ``val_fraction + test_fraction``, else to train. Every class is
    split on its own by the same rule, so each class gets close to the requested share (the shares
    are exact on average; a class of n images is within about sqrt(n) images of them). Two
    guarantees bend the rule for tiny classes only: a class of two or more images has at least one
    val image (and one test image from three on, if a test split is asked for), every class keeps
    at least one training image, and no held-out split of a class gets more than twice its share
    (so that 4 of a class's 5 images never go to validation by chance). Identical files of a class move together, keyed by the first
    of them, so that a duplicate never ends up in both train and val."""

    def __init__(self, val_fraction: float, test_fraction: float, seed: int):
        self.val_fraction, self.test_fraction, self.seed = val_fraction, test_fraction, seed

    def assign(self, checked: list[_Checked], duplicates: list[list[_Checked]],
               val_from_train: bool = False) -> dict[str, str]:
        """relative path -> split for every usable image. Images from a split folder keep its split;
        the others are split here. ``val_from_train``: draw the val images from the train folder (a
        pre-split dataset with train and test folders but no val folder)."""
        splits = {item.relative: item.split for item in checked if item.split is not None}
        to_split = [item for item in checked if item.split is None or (val_from_train and item.split == "train")]
        for units in _units_by_class(to_split, duplicates).values():
            splits.update(self._split_class(units))
        return splits

    def position(self, relative: str) -> float:
        """A file's fixed place in [0, 1), from its path and the seed alone."""
        digest = hashlib.blake2b(f"{self.seed}\0{relative}".encode("utf-8", "surrogateescape"),
                                 digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64

    def _split_class(self, units: list[list[str]]) -> dict[str, str]:
        ranked = sorted(units, key=lambda unit: (self.position(unit[0]), unit[0]))
        positions = [self.position(unit[0]) for unit in ranked]
        test_end = self.val_fraction + self.test_fraction
        split_of = ["val" if p < self.val_fraction else "test" if p < test_end else "train" for p in positions]
        self._keep_the_minimum_of_each_split(split_of)
        splits = {}
        for unit, split in zip(ranked, split_of, strict=True):
            splits.update(dict.fromkeys(unit, split))
        return splits

    def _keep_the_minimum_of_each_split(self, split_of: list[str]) -> None:
        """``split_of`` lists the class's units in order of position (val's region first, then
        test's, then train's); when a split would be empty, the unit nearest its region moves in,
        taken only from a split that has more than one (tiny classes only)."""
        n = len(split_of)
        if n and "train" not in split_of:
            split_of[-1] = "train"
        if n >= 2 and "val" not in split_of:
            spare = [i for i, split in enumerate(split_of) if split == "test" or split_of.count(split) > 1]
            split_of[spare[0]] = "val"
        if self.test_fraction > 0 and n >= 3 and "test" not in split_of:
            trains = [i for i, split in enumerate(split_of) if split == "train"]
            vals = [i for i, split in enumerate(split_of) if split == "val"]
            split_of[trains[0] if len(trains) > 1 else vals[-1]] = "test"
        for split, fraction in (("test", self.test_fraction), ("val", self.val_fraction)):
            self._cap(split_of, split, max(1, 2 * round(n * fraction)))

    @staticmethod
    def _cap(split_of: list[str], split: str, most: int) -> None:
        """No held-out split gets more than ``most`` units (twice its share): the excess, furthest in
        position from the split's region start, trains. Only small classes ever reach the cap."""
        members = [i for i, name in enumerate(split_of) if name == split]
        for index in members[most:]:
            split_of[index] = "train"


def _units_by_class(items: list[_Checked], duplicates: list[list[_Checked]]) -> dict[str, list[list[str]]]:
    """Each class's images as units to split: a single file, or the identical files of that class."""
    to_split = {item.relative for item in items}
    unit_of: dict[str, list[str]] = {}
    for group in duplicates:
        for class_name in {item.class_name for item in group}:
            unit = [item.relative for item in group if item.class_name == class_name and item.relative in to_split]
            unit_of.update(dict.fromkeys(unit, unit))
    units: defaultdict[str, list[list[str]]] = defaultdict(list)
    for item in items:
        unit = unit_of.get(item.relative, [item.relative])
        if unit[0] == item.relative:  # each unit once, through its first file
            units[item.class_name].append(unit)
    return units


def _records(checked: list[_Checked], splits: dict[str, str], classes: list[str]) -> tuple[ImageRecord, ...]:
    label_of = {name: label for label, name in enumerate(classes)}
    split_order = {name: index for index, name in enumerate(SPLITS)}
    ordered = sorted(checked, key=lambda item: (split_order[splits[item.relative]], label_of[item.class_name],
                                                item.relative))
    return tuple(ImageRecord(Path(item.path), label_of[item.class_name], splits[item.relative])
                 for item in ordered)
