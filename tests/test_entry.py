"""`tl-studio` with no display to open a window on: one sentence and status 2, not Qt's abort."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11 and Wayland displays are Linux's")
@pytest.mark.parametrize("argv", [[], ["gui", "."]])
def test_without_a_display_the_app_says_so_in_one_sentence(argv, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["HOME"] = str(tmp_path)
    result = subprocess.run([sys.executable, "-m", "tl_studio", *argv], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr  # Qt itself aborts the process (SIGABRT)
    assert result.stderr.startswith("tl-studio: No display to open the window on (neither DISPLAY nor WAYLAND_")
    assert result.stderr.count("\n") == 1 and "`tl-studio --help` lists them." in result.stderr


def test_with_a_display_or_a_chosen_qt_platform_nothing_is_said(monkeypatch):
    from tl_studio.gui.display import missing_display

    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.setenv("DISPLAY", ":0")
    assert missing_display() is None
    monkeypatch.delenv("DISPLAY")
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert missing_display() is None
