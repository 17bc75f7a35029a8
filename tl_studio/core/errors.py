"""Errors a user can cause. Each carries one sentence that says what happened and what to do next.

The CLI prints the message (no traceback) and exits 2; the GUI shows it in a dialog or the status bar.
"""


class UserError(Exception):
    """Something the user can fix: a bad folder, an unwritable path, a missing weights file..."""


class DatasetError(UserError):
    """The folder is not a usable dataset (missing, empty, fewer than two classes...)."""


class WeightsUnavailableError(UserError):
    """Pretrained weights are neither cached nor downloadable (offline). The message names the file,
    its URL and how to import a downloaded copy."""

    def __init__(self, message: str, *, filename: str = "", url: str = ""):
        super().__init__(message)
        self.filename = filename
        self.url = url


class Cancelled(Exception):
    """A long operation (scan, download, evaluation) was cancelled by the user."""
