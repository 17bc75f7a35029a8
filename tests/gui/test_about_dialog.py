"""Help > About, Help > Copy Diagnostics and the first-run check, on made-up machines (the report is
injected: no GPU needed), and opening a model file handed to the app."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication, QLabel, QMessageBox, QWidget

from tl_studio.core import system_info
from tl_studio.core.system_info import Accelerators, SystemReport, TorchBuild
from tl_studio.gui.about_dialog import AboutDialog, SystemCheck, attach_system_check, copy_diagnostics, first_run_check

CPU_BESIDE_NVIDIA = SystemReport("0.1.0", "3.11.7", "Linux", False, TorchBuild("2.13.0+cpu", "0.28.0", None),
                                 Accelerators(nvidia_gpus=("NVIDIA GeForce RTX 4090",), driver_cuda="13.0"))
GPU_IN_USE = SystemReport("0.1.0", "3.11.7", "Linux", False, TorchBuild("2.14.1+cu130", "0.29.1", "13.0"),
                          Accelerators(("NVIDIA H200",), "13.0", cuda_devices=("NVIDIA H200",)))


class FakeWindow(QWidget):
    """What first_run_check needs of the main window: a parent and session.say."""

    class _Session:
        def __init__(self):
            self.messages = []

        def say(self, text):
            self.messages.append(text)

    def __init__(self):
        super().__init__()
        self.session = self._Session()


@pytest.fixture
def window(qtbot):
    """Held until the test ends and then closed, so that the system check's thread is stopped
    before the window (its parent) is destroyed, as the main window's close does."""
    window = FakeWindow()
    qtbot.addWidget(window)
    yield window
    window.close()


def checked(qtbot, check: SystemCheck):
    with qtbot.waitSignal(check.ready, timeout=60_000):
        check.request()
    return check


def test_about_shows_the_cpu_build_and_the_command_for_the_unused_gpu(qtbot, window):
    check = attach_system_check(window, collect=lambda: CPU_BESIDE_NVIDIA)
    dialog = AboutDialog(check, window)
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: "2.13.0+cpu" in dialog.facts.text(), timeout=60_000)
    assert "(CPU only)" in dialog.facts.text()
    assert "An NVIDIA GPU is present (NVIDIA GeForce RTX 4090) but PyTorch cannot use it" in dialog.facts.text()
    assert not dialog.advice.isHidden()
    assert "--index-url https://download.pytorch.org/whl/cu130" in dialog.advice.text()


def test_about_with_a_usable_gpu_shows_no_advice(qtbot, window):
    dialog = AboutDialog(attach_system_check(window, collect=lambda: GPU_IN_USE), window)
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: "CUDA 13.0" in dialog.facts.text(), timeout=60_000)
    assert "Training runs on the GPU: NVIDIA H200." in dialog.facts.text()
    assert dialog.advice.isHidden()


def test_copy_diagnostics_puts_versions_devices_and_the_last_error_on_the_clipboard(qtbot, window):
    check = checked(qtbot, attach_system_check(window, collect=lambda: CPU_BESIDE_NVIDIA))
    system_info.remember_error("Could not read /data/cat.jpg: truncated file")
    copy_diagnostics(check, window.session.say)
    text = QApplication.clipboard().text()
    assert "PyTorch 2.13.0+cpu (CPU only), torchvision 0.28.0" in text
    assert "NVIDIA GPUs (driver): NVIDIA GeForce RTX 4090; driver supports CUDA 13.0" in text
    assert "Last error: Could not read /data/cat.jpg: truncated file" in text
    assert window.session.messages[-1].startswith("Diagnostics copied to the clipboard")


def test_copy_diagnostics_before_the_check_finished_copies_once_it_has(qtbot, window):
    QApplication.clipboard().setText("")
    check = attach_system_check(window, collect=lambda: GPU_IN_USE)
    with qtbot.waitSignal(check.ready, timeout=60_000):
        copy_diagnostics(check)
    assert "GPUs PyTorch can use: NVIDIA H200" in QApplication.clipboard().text()


def _advice_boxes():
    return [w for w in QApplication.topLevelWidgets()
            if isinstance(w, QMessageBox) and w.objectName() == "firstRunAdvice" and w.isVisible()]


def test_first_run_shows_the_fix_once_per_version(qtbot, window, tmp_path):
    settings = QSettings(str(tmp_path / "first.ini"), QSettings.IniFormat)
    check = attach_system_check(window, collect=lambda: CPU_BESIDE_NVIDIA)
    first_run_check(window, check, settings)
    qtbot.waitUntil(lambda: bool(_advice_boxes()), timeout=60_000)
    box = _advice_boxes()[0]
    assert "pip install --force-reinstall torch==2.13.0 torchvision==0.28.0" in box.text()
    assert not box.isModal()  # the window stays usable
    assert "PyTorch 2.13.0+cpu (CPU only)" in window.session.messages[-1]
    box.close()
    qtbot.waitUntil(lambda: not _advice_boxes())
    said = len(window.session.messages)
    first_run_check(window, check, settings)  # the second start of the same version: nothing
    assert len(window.session.messages) == said and not _advice_boxes()


def test_first_run_with_a_usable_gpu_only_says_so(qtbot, window, tmp_path):
    settings = QSettings(str(tmp_path / "first.ini"), QSettings.IniFormat)
    check = attach_system_check(window, collect=lambda: GPU_IN_USE)
    with qtbot.waitSignal(check.ready, timeout=60_000):
        first_run_check(window, check, settings)
    assert window.session.messages[-1].endswith("Training runs on the GPU: NVIDIA H200.")
    assert not _advice_boxes()


@pytest.fixture
def main_window(qtbot):
    """The real main window; qtbot closes it after the test, once its start-up tasks (torch, the
    catalogue, the first-run check) are over, whether the test passed or not."""
    from tl_studio.gui.launch import start_up_finished
    from tl_studio.gui.main_window import MainWindow

    window = MainWindow()
    qtbot.addWidget(window, before_close_func=lambda w: qtbot.waitUntil(lambda: start_up_finished(w),
                                                                         timeout=120_000))
    window.show()
    return window


def test_the_main_window_has_the_help_actions_runs_the_first_run_check_and_opens_model_files(
        qtbot, main_window, tmp_path, monkeypatch):
    # One window for all of it: each MainWindow loads torch models in its start-up threads.
    from tl_studio.entry import model_file_argument
    from tl_studio.gui.launch import open_model_in_predict

    window = main_window
    help_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Help")
    texts = [a.text() for a in help_menu.actions()]
    assert "&About TL Studio…" in texts and "&Copy Diagnostics" in texts
    # the real machine's first-run check: this machine's PyTorch, said in the status bar
    qtbot.waitUntil(lambda: QSettings().value("firstRun/checkedVersion") is not None, timeout=120_000)
    import torch

    assert window.statusBar().findChild(QLabel).text().startswith(f"PyTorch {torch.__version__}")

    # a model file handed to the app (a file manager's "Open with") lands in the Predict step, the model
    # of every step; a file that is not a model is refused with the check's sentence
    from PySide6.QtCore import Qt

    from tests.model_file_helpers import tiny_exports
    from tl_studio.gui.steps import STEPS

    exports = tiny_exports(tmp_path / "exports")
    warned = []
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text, *rest: warned.append(text))
    for suffix in (".pt2", ".onnx"):
        model = exports["pt2" if suffix == ".pt2" else "onnx"]
        assert model_file_argument([str(model)]) == str(model)
        assert model_file_argument(["gui", str(model)]) == str(model)
        window.steps.go_to("Data")
        open_model_in_predict(window, str(model))
        assert window.stack.currentWidget() is window.pages["Predict"]
        assert window.pages["Predict"].model_path == model and window.session.model_file == model
        assert all(window.steps.item(STEPS.index(name)).flags() & Qt.ItemIsEnabled for name in ("Evaluate", "Predict"))
        bogus = tmp_path / f"bogus{suffix}"
        bogus.write_bytes(b"not a model file at all")
        open_model_in_predict(window, str(bogus))
        assert warned[-1].startswith(f"bogus{suffix} was not opened") and window.session.model_file == model
    assert model_file_argument(["predict", str(model), "img.jpg"]) is None
    assert model_file_argument([str(tmp_path / "missing.pt2")]) is None


def test_the_about_dialogs_copy_button_says_it_copied(qtbot, window):
    """Copy Diagnostics in the About box filled the clipboard without a sign (the status line is behind)."""
    check = checked(qtbot, attach_system_check(window, collect=lambda: GPU_IN_USE))
    dialog = AboutDialog(check, window, window.session.say)
    qtbot.addWidget(dialog)
    dialog.copy_button.click()
    assert dialog.copy_button.text() == "Copied to the clipboard"
    assert window.session.messages[-1].startswith("Diagnostics copied to the clipboard")
    assert "NVIDIA H200" in QApplication.clipboard().text()
