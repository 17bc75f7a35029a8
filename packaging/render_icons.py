"""Renders resources/icons/tl-studio.svg to the PNG sizes desktops ask for (16 to 512 px).

Run after editing the SVG: ``QT_QPA_PLATFORM=offscreen python packaging/render_icons.py``. The PNGs are
committed, so neither the wheel nor ``make install-desktop`` needs Qt's SVG renderer at install time.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ICONS = Path(__file__).resolve().parent.parent / "resources" / "icons"


def render(svg: Path, size: int, out: Path) -> None:
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    QSvgRenderer(str(svg)).render(painter)
    painter.end()
    if not image.save(str(out)):
        raise SystemExit(f"Could not write {out}.")


def main() -> int:
    app = QGuiApplication(sys.argv[:1])  # noqa: F841 (QPainter needs an application)
    svg = ICONS / "tl-studio.svg"
    for size in SIZES:
        render(svg, size, ICONS / f"tl-studio-{size}.png")
    print(f"Wrote {len(SIZES)} PNGs to {ICONS}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
