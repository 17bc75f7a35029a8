"""Model names in the order people count them: resnet18, resnet34, resnet50, resnet101, not the text
order resnet101, resnet152, resnet18. Shared by the window's model table and ``tl-studio models``
(core, so that neither view imports the other, and the CLI never imports Qt)."""

from __future__ import annotations

import re

_NUMBERS = re.compile(r"(\d+)")
# RegNet's sizes are its compute, 400mf to 32gf with "1_6gf" for 1.6 GFLOPs: read as one number of MFLOPs,
# or 400mf and 800mf, the smallest, came after 32gf
_FLOPS = re.compile(r"(\d+)(?:_(\d+))?([mg])f$")


def natural_key(name: str) -> tuple:
    """A sort key reading each run of digits as a number: vit_b_16 before vit_b_32, efficientnet_b7
    before efficientnet_v2_s. re.split with a group puts text at even positions and digits at odd
    ones, so two keys compare text with text and numbers with numbers; the name itself breaks ties
    (b01 and b1)."""
    text = name.casefold()
    if flops := _FLOPS.search(text):
        whole, fraction, unit = flops.groups()
        mflops = float(f"{whole}.{fraction or 0}") * (1000 if unit == "g" else 1)
        return (*natural_key(text[:flops.start()])[0], mflops), name
    parts = _NUMBERS.split(text)
    return tuple(int(part) if index % 2 else part for index, part in enumerate(parts)), name
