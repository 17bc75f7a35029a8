"""Counts in the sentences the app shows: "1 image", "2 images" (a confusion-matrix cell, a single
dropped photo and a one-image folder are everyday cases, not edge ones)."""

from __future__ import annotations


def counted(number: int, noun: str, plural: str | None = None) -> str:
    return f"{number} {noun if number == 1 else plural or noun + 's'}"
