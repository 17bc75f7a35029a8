"""One sentence that tells the user of a run, an evaluation, an analysis or a learning-rate sweep what the
dataset scan found wrong, so that files left out or an image with two labels are never passed over in
silence (the scan itself, and the Data step's Problems tab, give each problem's reason)."""

from __future__ import annotations

from collections.abc import Sequence

from tl_studio.core.safe_text import readable

# What each kind of problem means, with the number of them: (one, several). Every other kind (those of
# a file that is not a usable image, core/images.py, and of an image outside any class folder) means the
# same thing here: the run does not see that file.
_GROUPS = {
    "duplicate": ("duplicate image with another label or in another split",
                  "duplicate images with another label or in another split"),
    "small_class": ("class with only one image", "classes with only one image"),
    "tiny_image": ("very small image, kept", "very small images, kept"),
    "empty_class": ("class folder with no usable image", "class folders with no usable image"),
    "missing_split": ("class missing from a split folder", "classes missing from a split folder"),
    "bad_class_name": ("folder ignored for its name", "folders ignored for their names"),
    "ignored_folder": ("folder ignored (not train, val or test)", "folders ignored (not train, val or test)"),
}
EXAMPLES = 3  # paths named per group; the scan lists them all


def problems_sentence(problems: Sequence, left_out_of: str = "the run",
                      reasons_in: str = "`tl-studio scan` or the Data step's Problems tab") -> str | None:
    """``problems``: the scan's (path, reason, kind) records; ``left_out_of``: what the files are left
    out of; ``reasons_in``: where the user finds each problem's reason (empty: the caller lists them). None
    when there are none. File
    names that are not UTF-8 are shown as ``\\xNN``, so that the sentence can be printed and written to
    the run's event log."""
    if not problems:
        return None
    groups: dict[tuple[str, str], list[str]] = {}
    left_out = (f"file left out of {left_out_of}", f"files left out of {left_out_of}")
    for problem in problems:
        groups.setdefault(_GROUPS.get(problem.kind, left_out), []).append(readable(problem.path))
    order = [left_out, *_GROUPS.values()]
    parts = [_part(names, paths) for names in order if (paths := groups.get(names))]
    count = len(problems)
    where = f" {reasons_in} gives the reason for each." if reasons_in else ""
    return f"The dataset scan found {count} problem{'s' if count != 1 else ''}: {'; '.join(parts)}.{where}"


def files_left_out(problems: Sequence) -> int:
    """How many of ``problems`` are files the scan left out (the rest are notes about folders, classes and
    images it kept: a duplicate, a class of one image)."""
    return sum(problem.kind not in _GROUPS for problem in problems)


def _part(names: tuple[str, str], paths: list[str]) -> str:
    shown = ", ".join(paths[:EXAMPLES])
    more = f" and {len(paths) - EXAMPLES} more" if len(paths) > EXAMPLES else ""
    return f"{len(paths)} {names[0] if len(paths) == 1 else names[1]} ({shown}{more})"
