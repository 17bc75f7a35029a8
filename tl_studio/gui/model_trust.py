"""Before the app opens a model file chosen by the user: the check of core/model_file.py, with its one
sentence in a message box when the file is refused, and for TorchScript (which runs its own code when it
is loaded) a confirmation that says so. A confirmed TorchScript file is remembered in the session, so
the Predict and Evaluate steps may load it."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QMessageBox, QWidget

from tl_studio.gui.literal_text import as_written


def confirm_model_file(parent: QWidget, session, path) -> bool:
    """True when ``path`` may be opened: it passed the check, and a TorchScript file was confirmed."""
    from tl_studio.core.errors import UserError
    from tl_studio.core.model_file import check_model_file, format_of, torchscript_warning

    path = Path(path)
    try:
        fmt = format_of(path)
        # checked first (zipfile and pickletools only, nothing runs): a damaged file or random bytes named
        # .pth is said to be one, not asked about as "a TorchScript file" that carries code
        check_model_file(path, fmt)
        if fmt == "torchscript" and not _user_trusts(parent, path, torchscript_warning(path)):
            return False
    except UserError as error:
        QMessageBox.warning(parent, "Model file not opened", as_written(str(error)))  # it quotes the file
        return False
    if fmt == "torchscript":
        session.trusted_model_files.add(path)
    return True


def open_for_the_app(parent: QWidget, session, path) -> bool:
    """Makes ``path`` the model every step works on, once it passed ``confirm_model_file``; its run
    folder too, when the file sits in one (Export works from the run). True when it was opened."""
    from tl_studio.core import run_folder

    if not confirm_model_file(parent, session, path):
        return False
    path = Path(path)
    session.set_run(path.parent if (path.parent / run_folder.BEST_CHECKPOINT).is_file() else None, path)
    session.say(f"Opened {path.name}.")
    return True


def is_trusted(session, path) -> bool:
    return path is not None and Path(path) in session.trusted_model_files


def _user_trusts(parent: QWidget, path: Path, warning: str) -> bool:
    answer = QMessageBox.warning(
        parent, "Open a TorchScript file?",
        as_written(f"{warning}\n\nA .pt2 or ONNX file cannot run code and is the safer choice. Open {path.name} "
                   "anyway?"),
        QMessageBox.Open | QMessageBox.Cancel, QMessageBox.Cancel)
    return answer == QMessageBox.Open
