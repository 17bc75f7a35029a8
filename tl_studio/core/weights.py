"""Pretrained weights: the torch hub cache, downloads with progress and cancel, and reading weights files
(importing a file downloaded elsewhere: weight_import.py).

The cache is torch.hub's own (``$TORCH_HOME/hub/checkpoints``), so weights downloaded by torchvision elsewhere are
found here and ours are found by torchvision. A download goes to a temporary file in that directory, is checked
against the SHA-256 prefix in its file name (as torch.hub's ``check_hash`` does) and then renamed into place, so a
cancelled or broken download never leaves a half file under the real name. Like torch.hub, a file already in the
cache is trusted without re-hashing it (imported files need not match the published hash).

Every weights file is read with ``torch.load(..., weights_only=True)``: a weights file must never run code.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shlex
import socket
import tempfile
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from tl_studio.core import catalog, lite0
from tl_studio.core.catalog import ModelInfo
from tl_studio.core.errors import Cancelled, UserError, WeightsUnavailableError

if TYPE_CHECKING:
    from torch import Tensor

ProgressCallback = Callable[[int, "int | None"], None]  # (bytes done, total bytes or None)
CancelCallback = Callable[[], bool]  # True = stop now

DOWNLOAD_TIMEOUT_S = 30.0
CHUNK_BYTES = 256 * 1024
# torch.hub.HASH_REGEX: torchvision's file names carry the first hex digits of their SHA-256 ("resnet18-f37072fd.pth").
HASH_REGEX = re.compile(r"-([a-f0-9]*)\.")
IMPORT_HINT = '`tl-studio weights import {model} FILE` or "Import weights…" in the Model step'


class _NetworkFailure(Exception):
    """The download could not reach or finish reading the server; the caller turns it into a UserError."""


# --- the cache ------------------------------------------------------------------------------------------------


def cached_weights_path(info: ModelInfo) -> Path | None:
    """The weights file of ``info`` if it is on this machine (bundled or in the hub cache), else None."""
    if info.bundled:
        return lite0.bundled_weights_path()
    if not info.weights_file:
        return None
    path = catalog.hub_checkpoint_dir() / info.weights_file
    return path if path.is_file() else None


def ensure_weights(info: ModelInfo, *, progress: ProgressCallback | None = None,
                   cancel: CancelCallback | None = None) -> Path:
    """The pretrained weights file of ``info``, downloaded first when it is not on this machine."""
    path = cached_weights_path(info)
    if path is not None:
        return path
    if info.bundled:
        raise UserError(f"The bundled weights of {info.name} are missing: reinstall the {lite0.PACKAGE} package.")
    return download_weights(info, progress=progress, cancel=cancel)


def expected_hash_prefix(filename: str) -> str | None:
    """The SHA-256 prefix a file name promises (torch.hub's rule), or None."""
    match = HASH_REGEX.search(filename)
    return match.group(1) if match else None


# --- download -------------------------------------------------------------------------------------------------


def download_weights(info: ModelInfo, *, progress: ProgressCallback | None = None,
                     cancel: CancelCallback | None = None, timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Download the pretrained weights of ``info`` into the hub cache and return their path.

    Raises WeightsUnavailableError when offline (or the server fails), Cancelled when ``cancel()`` says so, and
    UserError when the file does not match its published hash. In every failure the temporary file is removed.
    """
    if not info.weights_url or not info.weights_file:
        raise UserError(f"{info.name} has no weights to download.")
    destination = catalog.hub_checkpoint_dir() / info.weights_file
    try:
        return _download(info.weights_url, destination, progress, cancel, timeout)
    except _NetworkFailure as failure:
        raise WeightsUnavailableError(offline_message(info, str(failure)),
                                      filename=info.weights_file, url=info.weights_url) from failure


def offline_message(info: ModelInfo, reason: str) -> str:
    """One sentence: what failed, the file, its URL and how to import a copy downloaded elsewhere."""
    return (f"Cannot download {info.weights_file} for {info.name} ({reason}): download {info.weights_url} "
            f"on a machine with internet access, then use {IMPORT_HINT.format(model=info.name)}.")


def _download(url: str, destination: Path, progress: ProgressCallback | None,
              cancel: CancelCallback | None, timeout: float) -> Path:
    directory = writable_dir(destination.parent)
    fd, temp_name = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".partial", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out, _open_url(url, timeout) as response:
            digest = _copy_stream(response, out, _content_length(response), progress, cancel)
        _check_hash(digest, destination.name)
        os.replace(temp_name, destination)
    except BaseException:  # Ctrl-C included: never leave a partial file behind
        Path(temp_name).unlink(missing_ok=True)
        raise
    return destination


def writable_dir(directory: Path) -> Path:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"Cannot create the weights cache {directory}: {error.strerror or error}.") from error
    return directory


def _open_url(url: str, timeout: float):
    try:
        return urllib.request.urlopen(url, timeout=timeout)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        raise _NetworkFailure(_describe_network_error(error)) from error


def _describe_network_error(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"the server answered HTTP {error.code}"
    if isinstance(error, TimeoutError) or isinstance(getattr(error, "reason", None), TimeoutError):
        return "the connection timed out; are you offline?"
    if isinstance(error, urllib.error.URLError):
        reason = error.reason
        if isinstance(reason, socket.gaierror):  # "[Errno -2] Name or service not known": no name lookup
            return "this computer could not find the download server; is it offline?"
        return f"no connection ({getattr(reason, 'strerror', None) or reason}); is this computer offline?"
    return f"the connection failed: {error}"


def _content_length(response) -> int | None:
    value = response.headers.get("Content-Length")
    return int(value) if value and value.isdigit() else None


def _copy_stream(response, out, total: int | None, progress: ProgressCallback | None,
                 cancel: CancelCallback | None) -> str:
    """Copy the body to ``out`` chunk by chunk, reporting progress and checking cancel; returns its SHA-256."""
    digest, done = hashlib.sha256(), 0
    if progress is not None:
        progress(0, total)
    while True:
        if cancel is not None and cancel():
            raise Cancelled("The download was cancelled.")
        chunk = _read_chunk(response)
        if not chunk:
            break
        out.write(chunk)
        digest.update(chunk)
        done += len(chunk)
        if progress is not None:
            progress(done, total)
    if total is not None and done < total:
        raise _NetworkFailure(f"the connection closed after {done} of {total} bytes")
    return digest.hexdigest()


def _read_chunk(response) -> bytes:
    try:
        return response.read(CHUNK_BYTES)
    except (http.client.HTTPException, OSError) as error:
        raise _NetworkFailure(_describe_network_error(error)) from error


def _check_hash(digest: str, filename: str) -> None:
    prefix = expected_hash_prefix(filename)
    if prefix is not None and not digest.startswith(prefix):
        raise UserError(f"The downloaded {filename} is corrupt (its SHA-256 does not start with {prefix}); "
                        "nothing was saved, please try again.")


# --- loading ------------------------------------------------------------------------------------------------------


def load_state_dict_file(path: Path | str) -> dict[str, Tensor]:
    """A state dict read with weights_only=True; a UserError for anything else (a pickled model, a broken file)."""
    import torch

    path = Path(path)
    _refuse_tl_studio_files(path)
    try:
        with warnings.catch_warnings():  # torch's note on an unusual pickle protocol is not the user's business
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError... depending on the damage
        if _holds_more_than_weights(path, error):  # torch's own text advises weights_only=False: never pass that on
            raise UserError(f"{path.name} was not loaded: besides tensors it holds Python objects (a whole pickled "
                            "model, for instance), and loading those can run code. Use a file of weights only, "
                            "saved with torch.save(model.state_dict(), FILE), or the model's official "
                            "weights.") from error
        raise UserError(f"{path.name} cannot be read as a weights file: torch.save did not write it, or it is "
                        "damaged (an incomplete download?); download or copy it again.") from error
    if _is_run_checkpoint(data):
        run = shlex.quote(str(path.parent))
        # the run's own data folder, when its checkpoint names it (a placeholder read as a word to type)
        data_dir = shlex.quote(str((data.get("config") or {}).get("data_dir") or "DATA_DIR"))
        raise UserError(f"{path.name} is a checkpoint of a TL Studio run, not pretrained weights: to go on "
                        f"training that run, resume it (`tl-studio train {data_dir} --out {run} --resume`, "
                        f"or Resume on the Runs step). {_WHAT_WEIGHTS_ARE}")
    if not _is_state_dict(data):
        raise UserError(f"{path.name} holds a {type(data).__name__}, not a state dict (a mapping of parameter names "
                        "to tensors, as saved by torch.save(model.state_dict(), FILE)).")
    return dict(data)


_WHAT_WEIGHTS_ARE = ("Pretrained weights are a state dict (.pth) of the whole architecture with its ImageNet "
                     "head, as torch.save(model.state_dict(), FILE) writes it.")


def _refuse_tl_studio_files(path: Path) -> None:
    """A model file TL Studio exported is the usual wrong pick (it sits beside the checkpoints): it is
    named for what it is, and never handed to torch.load."""
    from tl_studio.core.export_formats import EXPORT_FORMATS

    if path.suffix.lower() in {fmt.suffix for fmt in EXPORT_FORMATS.values()}:
        raise UserError(f"{path.name} is an exported model file, not pretrained weights: it classifies images "
                        f"(`tl-studio predict`, the Predict step) but cannot start a run. {_WHAT_WEIGHTS_ARE}")


def _is_run_checkpoint(data) -> bool:
    """best.ckpt and last.ckpt of a run (core/checkpoint.py): the weights sit under "model", beside the
    run's settings and epoch."""
    return isinstance(data, Mapping) and {"format", "model", "epoch", "config"} <= set(data)


def _holds_more_than_weights(path: Path, error: Exception) -> bool:
    """torch.load(weights_only=True) refused a whole archive that torch.save wrote: its pickle names a
    class or function beyond tensors (a pickled module, say). torch's message cannot tell: every failure,
    a text file's too, starts "Weights only load failed", and its detail changes between releases."""
    import pickle
    import zipfile

    if not isinstance(error, pickle.UnpicklingError) or not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/data.pkl") for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _is_state_dict(data) -> bool:
    import torch

    return isinstance(data, Mapping) and bool(data) and all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in data.items())
