"""Names from the user's disk (class folders, file names) on their way out: to a terminal, where an
ANSI escape in a folder name would otherwise move the cursor or recolour the screen, and into CSV files,
where a cell that starts with ``=``, ``+``, ``-`` or ``@`` is run as a formula by spreadsheet programs
(OWASP "CSV injection")."""

from __future__ import annotations

import os
import re

# C0 and C1 control characters and DEL (ESC is one of them); tab and newline too, as a name has none.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def for_terminal(text: object) -> str:
    """``text`` with every control character shown as an escape (``\\x1b``), and any undecodable file
    name byte as ``\\xNN``: what it is, not what it would do."""
    text = readable(str(text))
    return _CONTROL.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)


def readable(text: str) -> str:
    """A file name with bytes that are not UTF-8 (kept by Python as lone surrogates) as ``\\xNN``, so
    that it can be printed and written to a UTF-8 file."""
    return os.fsencode(text).decode("utf-8", "backslashreplace") if _has_surrogates(text) else text


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= char <= "\udcff" for char in text)


def csv_cell(value: object) -> object:
    """A text cell that a spreadsheet would read as a formula gets a leading apostrophe; numbers and
    other cells are unchanged. Undecodable file-name bytes become ``\\xNN``."""
    if not isinstance(value, str):
        return value
    value = readable(value)
    return "'" + value if value.startswith(_FORMULA_START) else value


def csv_row(values) -> list:
    return [csv_cell(value) for value in values]
