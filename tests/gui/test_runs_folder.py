"""The runs folder is one folder for the app and the CLI: the Documents folder as Qt finds it, also
where xdg-user-dirs has moved it."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("documents", [None, "Dokumente"])
def test_the_app_and_the_cli_share_the_runs_folder_in_the_users_documents_folder(tmp_path, monkeypatch, documents):
    from PySide6.QtCore import QStandardPaths

    from tl_studio.core.run_history import default_runs_root
    from tl_studio.gui.runs_folder import runs_folder

    home = tmp_path / "home"
    (home / ".config").mkdir(parents=True)
    if documents:
        (home / ".config" / "user-dirs.dirs").write_text(f'XDG_DOCUMENTS_DIR="$HOME/{documents}"\n')
        (home / documents).mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("XDG_DOCUMENTS_DIR", raising=False)
    monkeypatch.delenv("TL_STUDIO_RUNS_DIR")
    qt_documents = QStandardPaths.writableLocation(QStandardPaths.DocumentsLocation)
    assert qt_documents == str(home / (documents or "Documents"))
    assert runs_folder() == default_runs_root() == home / (documents or "Documents") / "TL Studio" / "runs"
    monkeypatch.setenv("TL_STUDIO_RUNS_DIR", str(tmp_path / "elsewhere"))
    assert runs_folder() == default_runs_root() == tmp_path / "elsewhere"
