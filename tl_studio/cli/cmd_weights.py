"""``tl-studio weights``: download a model's pretrained weights, or import a file downloaded elsewhere.

    tl-studio weights download MODEL         progress on stderr; Ctrl-C cancels and leaves nothing behind
    tl-studio weights import MODEL FILE      checks FILE fits MODEL, then copies it into the torch hub cache
"""

from __future__ import annotations

import argparse
import sys
import time

from tl_studio.core.wording import MB, megabytes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    download = actions.add_parser("download", help="download the pretrained weights of MODEL into the hub cache")
    download.add_argument("model", metavar="MODEL", help="a model name from `tl-studio models`")
    imported = actions.add_parser("import", help="copy a downloaded weights FILE for MODEL into the hub cache")
    imported.add_argument("model", metavar="MODEL",
                          help="the model the weights are for (`tl-studio models` lists them)")
    imported.add_argument("file", metavar="FILE", help="a .pth file of its pretrained weights, downloaded elsewhere")
    imported.add_argument("--force", action="store_true",
                          help="replace different weights already cached for MODEL")


def run(args: argparse.Namespace) -> int:
    if args.action == "download":
        return _download(args.model)
    return _import(args.model, args.file, args.force)


def _download(name: str) -> int:
    from tl_studio.core import catalog, weights
    from tl_studio.core.errors import Cancelled

    info = catalog.get_model_info(name)
    cached = weights.cached_weights_path(info)
    if cached is not None:
        print(f"{info.name}: weights already on this machine ({cached}).")
        return 0
    progress = DownloadLine(info.weights_file or info.name)
    try:
        path = weights.ensure_weights(info, progress=progress)
    except (KeyboardInterrupt, Cancelled):  # the partial file is already gone
        progress.finish()
        print("Download cancelled; nothing was saved.", file=sys.stderr)
        return 130
    finally:
        progress.finish()  # end the progress line before any message, success or error
    print(f"{info.name}: weights saved to {path}.")
    return 0


def _import(name: str, file: str, force: bool) -> int:
    from tl_studio.core.weight_import import import_weights, published_hash_note

    result = import_weights(name, file, force=force)
    if result.action == "already cached":
        print(f"{result.path} already holds these weights; nothing to do.")
        return 0
    # "Weights replaced to …" read oddly: the file and what happened to it
    print(f"Weights copied to {result.path}." if result.action == "copied" else
          f"Weights at {result.path} replaced with {file}.")
    if note := published_hash_note(result):
        print(f"Note: {note[0].upper()}{note[1:]}")
    return 0


class DownloadLine:
    """The download's size so far on a terminal's stderr, redrawn in place at most ten times a second
    (drawn by the CLI's one StatusLine)."""

    def __init__(self, label: str, stream=None):
        from tl_studio.cli.reporters import StatusLine

        self.label = label
        self.line = StatusLine(stream or sys.stderr)
        self._last_draw = 0.0

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self._last_draw < 0.1 and done != total:
            return
        self._last_draw = now
        mb = done / MB
        if total:
            self.line.show(f"{self.label}: {mb:.1f} / {megabytes(total)} ({100 * done // total}%)")
        else:
            self.line.show(f"{self.label}: {mb:.1f} MB")

    def finish(self) -> None:
        self.line.finish()
