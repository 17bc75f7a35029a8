"""Importing a weights file downloaded elsewhere (machines without internet): the file is loaded into
the architecture with strict=True first (weights_only=True: a weights file never runs code), so a wrong
file is refused before anything is copied, then copied atomically into torch.hub's cache under the name
torchvision looks for."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from tl_studio.core import catalog, weights
from tl_studio.core.errors import UserError
from tl_studio.core.models import build_imagenet_model


@dataclass(frozen=True)
class ImportResult:
    path: Path  # where the weights now are, in the hub cache
    action: str  # "copied" | "replaced" | "already cached"
    matches_published_hash: bool | None  # None where the file name carries no hash


def import_weights(name: str, file: Path | str, *, force: bool = False) -> ImportResult:
    """Copy a downloaded weights file into the hub cache under the name torchvision expects.

    The file is first loaded (weights_only=True) into the architecture with strict=True, so a wrong file is
    refused before it is copied. An existing different file in the cache is valid and stays unless ``force``.
    """
    info = catalog.get_model_info(name)
    if info.bundled:
        raise UserError(f"{info.name} ships with its weights; there is nothing to import.")
    source = Path(file).expanduser()
    if not source.is_file():
        raise UserError(f"{source} is not a file.")
    build_imagenet_model(info, source)  # raises a UserError that says what does not fit
    source_digest = _sha256(source)
    destination = weights.writable_dir(catalog.hub_checkpoint_dir()) / info.weights_file
    action = _import_action(destination, source_digest, force, info.name)
    if action != "already cached":
        _atomic_copy(source, destination)
    prefix = weights.expected_hash_prefix(info.weights_file)
    return ImportResult(destination, action, source_digest.startswith(prefix) if prefix is not None else None)


class OtherWeightsInUse(UserError):
    """The cache holds other valid weights for the model: replaced only when the user says so (--force on
    the command line, a question in the app)."""

    def __init__(self, destination: Path, name: str):
        super().__init__(f"{destination} already holds other weights for {name} and they stay in use; "
                         "import with --force to replace them.")
        self.destination, self.name = destination, name


def _import_action(destination: Path, source_digest: str, force: bool, name: str) -> str:
    if not destination.exists():
        return "copied"
    if _sha256(destination) == source_digest:
        return "already cached"
    if not force:
        raise OtherWeightsInUse(destination, name)
    return "replaced"


def published_hash_note(result: ImportResult) -> str:
    """What an import of a file unlike the published one means, or "" (the command line and the app)."""
    if result.matches_published_hash is not False:
        return ""
    return ("the file differs from the one torchvision publishes (its SHA-256 does not match the name), so it "
            "may not hold the pretrained ImageNet weights; it loads into the model, so it is used.")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _atomic_copy(source: Path, destination: Path) -> None:
    """Through fileio.atomic_path: the copy gets the mode a file the user made would have (mkstemp's own
    copy was 0600, unreadable to the other users of a shared cache)."""
    from tl_studio.core.fileio import atomic_path

    with atomic_path(destination) as temporary:
        shutil.copyfile(source, temporary)
