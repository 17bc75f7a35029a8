"""Fixing a dataset from the Evaluate step: moving an image to another class folder, or out of the
dataset into an ``_excluded`` folder beside the class folders, and undoing those moves.

Nothing is ever deleted or overwritten: a move goes to a free name (``photo (1).jpg`` when ``photo.jpg`` is
taken), and the no-overwrite rule holds even against another program writing at the same moment, because
the file is hard-linked to its new name (which fails if that name exists) before the old name is removed.

Every move is written to a journal (a hidden JSON file in the dataset folder, which the scan skips like
every hidden file), so the moves can be undone one by one, last first, even after the app was closed.

The journal lies inside a folder that may have come from anyone, so it is untrusted input: it is bound
to its dataset (it records the dataset's resolved path, and its paths are relative to it), every path in
it must resolve inside the dataset after symlinks, and each folder a file would move back to must be a
valid class folder name (or a split/excluded folder). A journal that breaks any of this is refused with
one sentence and nothing is moved; Undo can then only undo the moves made since.

In a pre-split dataset (train/, val/, test/ each holding the class folders) an image stays in its split:
``val/ants/x.jpg`` moves to ``val/bees/`` or ``val/_excluded/``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

from tl_studio.core.data import EXCLUDED_FOLDER as EXCLUDED
from tl_studio.core.errors import UserError
from tl_studio.core.fileio import atomic_write_text

JOURNAL_NAME = ".tl_studio_moves.json"
JOURNAL_VERSION = 2
_MAX_NAME_TRIES = 10_000
# Names Windows reserves for devices (also with an extension: "CON.txt"), and characters no platform's
# file system takes in a folder name (separators, the drive colon, wildcards, control characters).
_RESERVED_NAMES = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}
_FORBIDDEN_CHARACTERS = re.compile(r'[\\/:*?"<>|\x00-\x1f\x7f]')


@dataclass(frozen=True)
class Move:
    source: Path  # where the image was
    destination: Path  # where it is now

    def to_dict(self, root: Path) -> dict:
        """Paths relative to the dataset folder, with / on every platform."""
        return {"source": _relative_to(self.source, root).as_posix(),
                "destination": _relative_to(self.destination, root).as_posix()}


def _relative_to(path: Path, root: Path) -> Path:
    try:
        return Path(path).relative_to(root)
    except ValueError:
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(root))


# ---------------------------------------------------------------- rescanning

def rescan(scan, progress=None, cancel=None):
    """The dataset scanned again with the same split settings (the scan skips the excluded folder)."""
    from tl_studio.core.data import scan_dataset

    return scan_dataset(scan.root, val_fraction=scan.val_fraction, test_fraction=scan.test_fraction,
                        seed=scan.seed, max_pixels=scan.max_pixels, progress=progress, cancel=cancel)


# ---------------------------------------------------------------- moving files safely

def free_path(folder: Path, name: str) -> Path:
    """``folder/name``, or ``folder/stem (n).suffix`` with the smallest n that is not taken."""
    candidate = folder / name
    stem, suffix = Path(name).stem, Path(name).suffix
    for number in range(1, _MAX_NAME_TRIES):
        if not os.path.lexists(candidate):
            return candidate
        candidate = folder / f"{stem} ({number}){suffix}"
    raise UserError(f"{folder} has no free name left for {name}; tidy that folder and try again.")


def _move_without_overwrite(source: Path, destination: Path) -> None:
    """Raises FileExistsError when ``destination`` exists: nothing is ever replaced."""
    try:
        os.link(source, destination)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links (FAT, some network drives): check, then rename
        if os.path.lexists(destination):
            raise FileExistsError(destination) from None
        os.rename(source, destination)
        return
    try:
        os.unlink(source)
    except OSError:
        os.unlink(destination)  # undo the link: the file stays where it was
        raise


def move_to_free_name(source: Path, folder: Path, name: str | None = None) -> Path:
    """Moves ``source`` into ``folder`` (created if needed) under its name or a free variant of it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for _ in range(_MAX_NAME_TRIES):
            destination = free_path(folder, name or source.name)
            try:
                _move_without_overwrite(source, destination)
                return destination
            except FileExistsError:
                continue  # taken meanwhile by someone else: pick the next free name
    except OSError as error:
        reason = error.strerror or str(error)
        raise UserError(f"{source.name} could not be moved to {folder} ({reason}); check that the "
                        "folder can be written.") from None
    raise UserError(f"{folder} has no free name left for {source.name}; tidy that folder and try again.")


# ---------------------------------------------------------------- the editor and its journal

class DatasetEditor:
    """Moves images between the class folders of one dataset, with an undo journal."""

    def __init__(self, root: Path, presplit: bool, journal_file: Path | None = None):
        self.root = Path(root)
        self.presplit = presplit
        self.journal_file = journal_file
        self.journal_problem: str | None = None  # why a journal found in the folder was refused
        self.moves: list[Move] = self._read_journal()

    @classmethod
    def for_scan(cls, scan, journal: bool = True) -> DatasetEditor:
        return cls(scan.root, scan.presplit, Path(scan.root) / JOURNAL_NAME if journal else None)

    @property
    def can_undo(self) -> bool:
        return bool(self.moves)

    def class_folder(self, image: Path, class_name: str) -> Path:
        """The folder of ``class_name`` that ``image`` moves to: in its own split when pre-split."""
        _check_class_name(class_name)
        relative = self._relative(image)
        if self.presplit and len(relative.parts) > 2:
            return self.root / relative.parts[0] / class_name
        return self.root / class_name

    def move_to_class(self, image: Path, class_name: str) -> Move:
        image = Path(image)
        if not image.is_file():
            raise UserError(f"{image.name} is no longer at {image.parent}; rescan the dataset.")
        folder = self.class_folder(image, class_name)
        if folder == image.parent:
            raise UserError(f"{image.name} is already in the folder of '{class_name}'.")
        move = Move(image, move_to_free_name(image, folder))
        self.moves.append(move)
        self._write_journal()
        return move

    def exclude(self, image: Path) -> Move:
        """Out of the dataset, into ``_excluded`` beside the class folders (never deleted)."""
        return self.move_to_class(image, EXCLUDED)

    def undo(self) -> Move | None:
        """Moves the last moved image back; returns that move (destination = where it is back to)."""
        if not self.moves:
            if self.journal_problem:
                raise UserError(self.journal_problem)
            return None
        last = self.moves[-1]
        try:  # checked again now: a symlink may have appeared since the journal was read
            self._check_move(last)
        except UserError:
            self.moves.pop()
            self._write_journal()
            raise
        if not last.destination.is_file():
            self.moves.pop()
            self._write_journal()
            raise UserError(f"{last.destination.name} is no longer in {last.destination.parent}, so its move "
                            "cannot be undone; it was removed from the undo list.")
        back = move_to_free_name(last.destination, last.source.parent, last.source.name)
        self.moves.pop()
        self._write_journal()
        if last.destination.parent.name == EXCLUDED:
            try:  # the _excluded folder the exclude made, emptied again: no trace left of the undone change
                last.destination.parent.rmdir()
            except OSError:  # other images are still excluded in it
                pass
        return Move(last.destination, back)

    def _relative(self, image: Path) -> Path:
        try:
            return Path(image).resolve().relative_to(self.root.resolve())
        except ValueError:
            raise UserError(f"{image} is not inside the dataset folder {self.root}.") from None

    def _read_journal(self) -> list[Move]:
        if self.journal_file is None or not self.journal_file.is_file():
            return []
        try:
            data = json.loads(self.journal_file.read_text(encoding="utf-8"))
            if data.get("version") != JOURNAL_VERSION or data.get("dataset") != str(self.root.resolve()):
                raise UserError(f"The undo list in {self.root} ({JOURNAL_NAME}) was written for another "
                                f"dataset folder or by another version, so it is not used; undo the moves "
                                f"by hand if needed.")
            moves = [self._move_from(entry) for entry in data["moves"]]
            for move in moves:
                self._check_move(move)
            return moves
        except UserError as refused:
            self.journal_problem = str(refused)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            self.journal_problem = (f"The undo list in {self.root} ({JOURNAL_NAME}) cannot be read, so the "
                                    f"earlier moves cannot be undone; the images themselves are safe.")
        return []

    def _move_from(self, entry: dict) -> Move:
        return Move(*(self._journal_path(str(entry[key])) for key in ("source", "destination")))

    def _journal_path(self, text: str) -> Path:
        windows = PureWindowsPath(text)  # also catches C:x, C:\\x and \\\\server\\share on every platform
        relative = Path(*windows.parts) if not (windows.drive or windows.root) else Path(text)
        if (windows.drive or windows.root or relative.is_absolute() or ".." in relative.parts
                or not relative.parts):
            raise UserError(f"The undo list in {self.root} ({JOURNAL_NAME}) names {text!r}, a path outside "
                            f"the dataset, so it is not used; nothing was moved.")
        return self.root / relative

    def _check_move(self, move: Move) -> None:
        """Both ends inside the dataset after symlinks, and the folder moved back to a valid name."""
        root = self.root.resolve()
        for path in (move.source, move.destination):
            resolved = path.resolve()
            if resolved == root or not resolved.is_relative_to(root):
                raise UserError(f"The undo list in {self.root} ({JOURNAL_NAME}) would move {path.name} "
                                f"outside the dataset, so it is not used; nothing was moved.")
        for part in _relative_to(move.source.parent, self.root).parts:
            try:
                _check_class_name(part)
            except UserError:
                raise UserError(f"The undo list in {self.root} ({JOURNAL_NAME}) would move {move.source.name} "
                                f"into a folder named {part!r}, so it is not used; nothing was moved.") from None

    def _write_journal(self) -> None:
        if self.journal_file is None:
            return
        text = json.dumps({"version": JOURNAL_VERSION, "dataset": str(self.root.resolve()),
                           "moves": [move.to_dict(self.root) for move in self.moves]}, indent=1)
        try:
            atomic_write_text(self.journal_file, text + "\n")
        except OSError:
            pass  # the move itself succeeded; only undo after a restart is lost


def _check_class_name(name: str) -> None:
    """A folder name every platform accepts: no separator of any platform (/, \\, the drive colon of
    ``C:x``), no wildcard or control character, not ``.``/``..`` or hidden, no trailing dot or space, and
    none of the device names Windows reserves (``CON``, ``NUL``, ``COM1``... also as ``CON.txt``)."""
    stem = name.split(".")[0].strip().upper()
    if (not name or name in (".", "..") or name.startswith(".") or _FORBIDDEN_CHARACTERS.search(name)
            or name[-1] in ". " or stem in _RESERVED_NAMES):
        shown = name.encode("unicode_escape").decode("ascii")
        raise UserError(f"'{shown}' cannot be a class folder name; use letters, digits, spaces, - or _.")
