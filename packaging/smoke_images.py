"""Writes a small labelled data set for the smoke tests: 3 colour classes x 16 noisy 48 px PNGs.

Standard library only (zlib + struct), so it runs with any python3, beside an app that bundles its own.
Usage: python3 packaging/smoke_images.py OUT_DIR
"""

import random
import struct
import sys
import zlib
from pathlib import Path

CLASSES = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 200)}
PER_CLASS = 16
SIZE = 48


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(rgb: tuple, rng: random.Random, size: int = SIZE, noise: int = 40) -> bytes:
    rows = b"".join(b"\x00" + bytes(max(0, min(255, c + rng.randint(-noise, noise)))
                                     for _ in range(size) for c in rgb) for _ in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows)) + _chunk(b"IEND", b"")


def main(out: str) -> None:
    rng = random.Random(0)
    for name, rgb in CLASSES.items():
        folder = Path(out) / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(PER_CLASS):
            (folder / f"{name}_{i:02d}.png").write_bytes(png(rgb, rng))


if __name__ == "__main__":
    main(sys.argv[1])
