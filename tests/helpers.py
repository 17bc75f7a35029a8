"""Small generated datasets for tests: real image files made with PIL, a few KB each."""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = {
    "red": (200, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 60, 200),
    "yellow": (220, 200, 40),
    "purple": (140, 50, 160),
}


def make_image(path: Path, colour, size: int = 64, seed: int = 0, fmt: str | None = None) -> Path:
    """A noisy image dominated by one colour, with a random shape so images differ."""
    rng = random.Random(seed)
    image = Image.new("RGB", (size, size), tuple(max(0, min(255, c + rng.randint(-30, 30))) for c in colour))
    draw = ImageDraw.Draw(image)
    x, y = rng.randint(0, size // 2), rng.randint(0, size // 2)
    shade = tuple(rng.randint(0, 255) for _ in range(3))
    draw.ellipse((x, y, x + size // 3, y + size // 3), fill=shade)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt or ("PNG" if path.suffix.lower() == ".png" else "JPEG"), quality=90)
    return path


def make_image_folder(root: Path, classes=("red", "green", "blue"), per_class: int = 12, size: int = 64,
                      splits: tuple[str, ...] | None = None, seed: int = 0) -> Path:
    """One sub-folder per class (or per split, then per class) of generated JPEGs."""
    counter = seed * 100_000
    for split in splits or (None,):
        for name in classes:
            colour = COLOURS.get(name, (128, 128, 128))
            folder = root / split / name if split else root / name
            for i in range(per_class):
                counter += 1
                make_image(folder / f"{name}_{i:03d}.jpg", colour, size=size, seed=counter)
    return root
