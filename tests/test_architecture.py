"""The layering rule of ARCHITECTURE.md: the core and the CLI run without Qt; scanning needs no torch."""

import subprocess
import sys

import pytest


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print('\\n'.join(sys.modules))"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.parametrize("package", ["tl_studio.core", "tl_studio.cli", "tl_studio.cli.main"])
def test_core_and_cli_import_without_qt(package):
    modules = _modules_after(f"import {package}")
    assert not {m for m in modules if m.split('.')[0] in ("PySide6", "pyqtgraph", "shiboken6")}


def test_every_core_and_cli_module_imports_without_qt():
    import pkgutil
    import tl_studio.cli
    import tl_studio.core
    names = [f"tl_studio.core.{m.name}" for m in pkgutil.iter_modules(tl_studio.core.__path__)]
    names += [f"tl_studio.cli.{m.name}" for m in pkgutil.iter_modules(tl_studio.cli.__path__)]
    modules = _modules_after("\n".join(f"import {n}" for n in names))
    assert "PySide6" not in modules and "pyqtgraph" not in modules
